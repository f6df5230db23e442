"""Look at one host: send the probe (``probe.sh``), parse what comes back. One round trip.

The script and its few arguments travel on stdin (``miyabi_ctl.remote``); everything — system
figures, agent sessions, git state — comes back in one sectioned document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from miyabi_ctl.errors import HostError
from miyabi_ctl.inventory import HostSpec, Inventory
from miyabi_ctl.probe.agents import keywords
from miyabi_ctl.probe.parse import ProbeParseError, parse_probe
from miyabi_ctl.probe.report import ProbeReport
from miyabi_ctl.remote import Script, run_script

if TYPE_CHECKING:
    from miyabi_ctl.connectors.base import Host

PROBE_SCRIPT = Script("probe", "probe.sh")


def probe_args(host: HostSpec, inventory: Inventory, git_timeout: float) -> list[str]:
    """The probe's arguments: REPO REMOTE MAIN KEYWORDS GIT_TIMEOUT."""
    return [
        host.repo_path_or(inventory.repo),
        inventory.repo.remote,
        inventory.repo.main,
        "\n".join(keywords(inventory.agents)),
        str(max(1, int(git_timeout))),
    ]


def probe_host(host: Host, inventory: Inventory, command_timeout: float) -> ProbeReport:
    """One round trip: send the probe, parse the answer."""
    git_timeout = max(1.0, command_timeout * 0.6)
    result = run_script(host, PROBE_SCRIPT, *probe_args(host.spec, inventory, git_timeout))
    try:
        return parse_probe(result.stdout, inventory)
    except ProbeParseError as exc:
        detail = result.stderr.strip().splitlines()[-1:] or [""]
        raise HostError(host.name, f"probe failed (exit {result.exit_code}): {exc}"
                                   + (f"; {detail[0]}" if detail[0] else "")) from None
