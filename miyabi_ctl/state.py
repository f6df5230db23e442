"""Where miyabi-ctl keeps what it must remember on the controller (audit log, assignments).

``$MIYABI_STATE_DIR`` if set (tests point it at a temporary directory), else
``$XDG_STATE_HOME/miyabi-ctl``, else ``~/.local/state/miyabi-ctl``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def state_dir() -> Path:
    explicit = os.environ.get("MIYABI_STATE_DIR")
    if explicit:
        path = Path(explicit).expanduser()
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base).expanduser() / "miyabi-ctl"
    path.mkdir(parents=True, exist_ok=True)
    return path


def install_id(directory: Path | None = None) -> str:
    """This installation's id, made once and kept in the state directory (``install-id``).

    It names this controller in host locks and in claims. Not the hostname: a Termux
    controller's hostname is ``localhost``, and two state directories on one machine are two
    controllers."""
    path = (directory or state_dir()) / "install-id"
    try:
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    fresh = uuid.uuid4().hex
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another command made it first: use theirs
        return path.read_text(encoding="utf-8").strip() or fresh
    except OSError:
        return fresh
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(fresh + "\n")
    return fresh
