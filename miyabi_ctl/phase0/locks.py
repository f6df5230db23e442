"""One apply at a time per host: a lock file in the repository's .git on that host.

The lock lives on the host, not the controller, so two operators (or two controllers) cannot
change the same machine at once. It holds who took it; a lock whose holder is gone (same
controller, dead pid) or that is older than ``stale_after_s`` is reported as stale and broken.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import CommandFailed, HostLocked
from miyabi_ctl.remote import Script, key_values, run_script

LOCK_SCRIPT = Script("phase0", "lock.sh")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: ``user@controller pid=N action=…``."""

    text: str

    @property
    def controller(self) -> str:
        return self.text.split()[0].split("@")[-1] if self.text else ""

    @property
    def pid(self) -> int | None:
        for word in self.text.split():
            if word.startswith("pid="):
                try:
                    return int(word[4:])
                except ValueError:
                    return None
        return None

    def gone(self) -> bool:
        """True when the holder ran on this controller and its process no longer exists."""
        if self.controller != socket.gethostname() or self.pid is None:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def owner_text(action: str) -> str:
    user = os.environ.get("USER") or "unknown"
    return f"{user}@{socket.gethostname()} pid={os.getpid()} action={action}"


@contextmanager
def host_lock(host: Host, repo_path: str, action: str, *,
              stale_after_s: int = 3600) -> Iterator[str]:
    """Hold the host's lock for the duration of the block; raise HostLocked if it is taken."""
    owner = owner_text(action)
    for _attempt in range(2):
        result = run_script(host, LOCK_SCRIPT, repo_path, "acquire", owner)
        if result.exit_code == 0:
            break
        values = key_values(result.stdout)
        if result.exit_code != 75:
            raise CommandFailed(host.name, f"cannot lock: {values.get('error') or result.stderr}",
                                result)
        holder, age = Holder(values.get("held", "")), int(values.get("age", "0") or 0)
        if _attempt == 0 and (holder.gone() or age > stale_after_s):
            run_script(host, LOCK_SCRIPT, repo_path, "break", holder.text)  # stale: break it
            continue
        raise HostLocked(host.name, holder.text or "unknown", age)
    try:
        yield owner
    finally:
        run_script(host, LOCK_SCRIPT, repo_path, "release", owner)
