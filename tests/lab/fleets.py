"""Fleet files for lab hosts, and the reference fleet (docs/reference-fleet.md) rebuilt on the lab."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.lab.harness import Lab, LabHost

# -- the plan's fleet (docs/reference-fleet.md) ----------------------------------------------
#
# Read-only: tests that change hosts (repairs, dispatch) must add lab hosts of their own, so
# the figures asserted here stay true whatever order tests run in.

FEATURE = "feat/miyabi-society-reconstruction"


@dataclass
class PlanFleet:
    lab: Lab
    fleet_file: Path
    pixel_repo: Path
    hosts: dict[str, LabHost]
    decoys: list[int]


def write_fleet(path: Path, lab: Lab, hosts: dict[str, dict], *, extra: str = "",
                strict: str = "yes", known_hosts: Path | None = None) -> Path:
    """A fleet.yaml for lab hosts; ``hosts`` maps a name to its host entry."""
    import yaml

    doc = {
        "repo": {"path": "~/miyabi-private", "main": "main", "remote": "origin",
                 "feature": FEATURE},
        "ssh": {"config": str(lab.ssh_config()), "known_hosts": str(known_hosts or lab.known_hosts),
                "strict_host_keys": strict, "connect_timeout": 3, "command_timeout": 20,
                "max_parallel": 16},
        "hosts": hosts,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False) + extra)
    return path


def ssh_entry(host: LabHost, lab: Lab, **more: object) -> dict:
    """A host entry reaching a lab host as root@address with the lab's key."""
    return {"ssh": f"root@{host.address}", "identity_file": str(lab.client_key), **more}


