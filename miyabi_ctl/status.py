"""Look at the whole fleet once: probe every host in parallel and judge what came back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from miyabi_ctl.errors import HostError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.health import HostStatus, evaluate, worst
from miyabi_ctl.probe import ProbeParseError, ProbeReport, parse_probe, probe_command, probe_script
from miyabi_ctl.transport import Host


@dataclass
class FleetStatus:
    generated_at: datetime
    hosts: list[HostStatus]
    implicit: bool = False

    @property
    def level(self) -> str:
        return worst(h.level for h in self.hosts)


def probe_host(host: Host, fleet: Fleet) -> ProbeReport:
    """One round trip: send the probe, parse the answer."""
    git_timeout = max(1.0, fleet.settings.command_timeout * 0.6)
    command = probe_command(host.spec, fleet.inventory, git_timeout)
    result = host.run(command, stdin=probe_script())
    try:
        return parse_probe(result.stdout, fleet.inventory)
    except ProbeParseError as exc:
        detail = result.stderr.strip().splitlines()[-1:] or [""]
        raise HostError(host.name, f"probe failed (exit {result.exit_code}): {exc}"
                                   + (f"; {detail[0]}" if detail[0] else "")) from None


def collect_status(fleet: Fleet, *, keep_connections: bool = True) -> FleetStatus:
    """Probe every host of ``fleet`` and evaluate each against the thresholds.

    ``keep_connections=False`` closes each connection once its host has answered (one look);
    ``status --watch`` keeps them for the next refresh.
    """
    outcomes = fleet.map(lambda host: probe_host(host, fleet), close_after=not keep_connections)
    statuses = []
    for spec, outcome in zip(fleet.specs, outcomes, strict=True):
        status = HostStatus(spec=spec, report=outcome.value, error=outcome.error)
        if outcome.value is not None:
            status.findings = evaluate(spec, outcome.value, fleet.inventory)
        statuses.append(status)
    return FleetStatus(datetime.now(UTC), statuses, fleet.inventory.implicit)
