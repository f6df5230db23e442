"""One apply at a time per host: a lock file in the repository's .git on that host.

The lock lives on the host, not the controller, so two operators (or two controllers) cannot
change the same machine at once. It holds who took it, with this installation's id (a random
id kept in the state directory: hostnames repeat, a Termux controller is always `localhost`);
while held, a heartbeat refreshes its mtime every few minutes. A lock whose holder is gone
(this installation, dead pid) or that no heartbeat touched for ``stale_after_s`` is stale and
broken. Every conflict and every break is in the audit log.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import CommandFailed, HostError, HostLocked
from miyabi_ctl.remote import Script, key_values, run_script
from miyabi_ctl.state import install_id

LOCK_SCRIPT = Script("phase0", "lock.sh")
HEARTBEAT_S = 300.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: ``user@controller pid=N action=…``."""

    text: str

    @property
    def controller(self) -> str:
        return self.text.split()[0].split("@")[-1] if self.text else ""

    @property
    def install(self) -> str | None:
        for word in self.text.split():
            if word.startswith("install="):
                return word[8:]
        return None

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
        """True when the holder is this installation and its process no longer exists (an
        older holder without an install id: this controller's hostname)."""
        mine = self.install == install_id() if self.install else \
            self.controller == socket.gethostname()
        if not mine or self.pid is None:
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
    return (f"{user}@{socket.gethostname()} install={install_id()} pid={os.getpid()} "
            f"action={action}")


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
            audit.record(host.name, "lock.break", result="ok", path=repo_path, wanted=action,
                         before={"holder": holder.text, "age_s": age})
            continue
        audit.record(host.name, "lock", result="locked", path=repo_path, wanted=action,
                     error=f"held by {holder.text or 'unknown'} for {age}s")
        raise HostLocked(host.name, holder.text or "unknown", age)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            # A failure here: the apply itself meets the same trouble and says so.
            with contextlib.suppress(HostError):
                run_script(host, LOCK_SCRIPT, repo_path, "beat", owner, timeout=30)

    heart = threading.Thread(target=beat, name=f"lock-heartbeat-{host.name}", daemon=True)
    heart.start()
    try:
        yield owner
    finally:
        stop.set()
        # A host that went away keeps its lock file: this installation breaks it next time (its
        # holder is gone), others once it is stale. The apply's own outcome (and audit entry)
        # must not be lost to a failed release.
        with contextlib.suppress(HostError):
            run_script(host, LOCK_SCRIPT, repo_path, "release", owner, timeout=30)
