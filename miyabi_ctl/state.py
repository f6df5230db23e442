"""Where miyabi-ctl keeps what it must remember on the controller (audit log, assignments).

``$MIYABI_STATE_DIR`` if set (tests point it at a temporary directory), else
``$XDG_STATE_HOME/miyabi-ctl``, else ``~/.local/state/miyabi-ctl``.
"""

from __future__ import annotations

import os
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
