"""Where fleet.yaml is: --fleet, $MIYABI_FLEET, ./fleet.yaml, $XDG_CONFIG_HOME/miyabi-ctl/fleet.yaml;
with none, the fleet is this machine alone."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory.model import HostSpec, Inventory, RepoSpec
from miyabi_ctl.inventory.parse import parse_inventory


def find_fleet_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--fleet, else $MIYABI_FLEET, else ./fleet.yaml, else $XDG_CONFIG_HOME/miyabi-ctl/fleet.yaml."""
    for named, origin in ((explicit, "--fleet"), (os.environ.get("MIYABI_FLEET"), "MIYABI_FLEET")):
        if named:
            path = Path(named).expanduser()
            if not path.is_file():
                raise InventoryError(f"{path}: no such fleet file (from {origin})")
            return path
    local = Path("fleet.yaml")
    if local.is_file():
        return local
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    user = xdg / "miyabi-ctl" / "fleet.yaml"
    return user if user.is_file() else None


def load_inventory(explicit: str | os.PathLike[str] | None = None) -> Inventory:
    """Find and parse the fleet; with no file at all, the fleet is this machine alone."""
    path = find_fleet_file(explicit)
    if path is None:
        return local_only_inventory()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise InventoryError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                             f"{exc.start})", path=path, line=line) from None
    except OSError as exc:
        raise InventoryError(f"cannot read the fleet file: {exc.strerror or exc}",
                             path=path) from None
    return parse_inventory(text, path)


def local_only_inventory() -> Inventory:
    """A one-host fleet: the controller itself, looking at the git repository it stands in."""
    name = socket.gethostname().split(".")[0] or "localhost"
    return Inventory(
        source=None,
        hosts=(HostSpec(name=name, transport="local", role="local"),),
        repo=RepoSpec(path=_enclosing_repo(Path.cwd())),
    )


def _enclosing_repo(start: Path) -> str:
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return str(candidate)
    return str(start)
