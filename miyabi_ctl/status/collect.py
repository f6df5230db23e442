"""Look at the whole fleet once: probe every host in parallel and judge what came back.

Every feature that needs the fleet's state (status, check, sessions, prune, dispatch) starts here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.probe.look import probe_host
from miyabi_ctl.status.health import HostStatus, evaluate, worst


@dataclass
class FleetStatus:
    generated_at: datetime
    hosts: list[HostStatus]
    implicit: bool = False

    @property
    def level(self) -> str:
        return worst(h.level for h in self.hosts)


def collect_status(fleet: Fleet, *, keep_connections: bool = True) -> FleetStatus:
    """Probe every host of ``fleet`` and evaluate each against the thresholds.

    ``keep_connections=False`` closes each connection once its host has answered (one look);
    ``status --watch`` keeps them for the next refresh.
    """
    outcomes = fleet.map(lambda host: probe_host(host, fleet.inventory, fleet.settings.command_timeout),
                         close_after=not keep_connections)
    statuses = []
    for spec, outcome in zip(fleet.specs, outcomes, strict=True):
        status = HostStatus(spec=spec, report=outcome.value, error=outcome.error)
        if outcome.value is not None:
            status.findings = evaluate(spec, outcome.value, fleet.inventory)
        statuses.append(status)
    return FleetStatus(datetime.now(UTC), statuses, fleet.inventory.implicit)
