"""The fleet inventory: what fleet.yaml describes (``model``), how it is read and validated node by
node (``parse``: every error names file, line, host and key), and where it is found
(``discover``). Everything is importable from here."""

from miyabi_ctl.inventory.discover import find_fleet_file, load_inventory, local_only_inventory
from miyabi_ctl.inventory.model import (
    CLIENTS,
    DEFAULT_AGENTS,
    HOST_NAME_RE,
    STRICT_CHOICES,
    TRANSPORTS,
    AgentSpec,
    HostSpec,
    Inventory,
    RepoSpec,
    SSHSettings,
    Thresholds,
)
from miyabi_ctl.inventory.parse import parse_inventory

__all__ = [
    "CLIENTS", "DEFAULT_AGENTS", "HOST_NAME_RE", "STRICT_CHOICES", "TRANSPORTS", "AgentSpec", "HostSpec",
    "Inventory", "RepoSpec", "SSHSettings", "Thresholds", "find_fleet_file", "load_inventory",
    "local_only_inventory", "parse_inventory",
]
