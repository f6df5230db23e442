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

from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.remote import key_values, run_script
from miyabi_ctl.transport import Host

LOCK_SCRIPT = r"""
repo=$1 mode=$2 owner=$3
case $repo in "~") repo=$HOME ;; "~/"*) repo=$HOME/${repo#"~/"} ;; esac
cd "$repo" 2>/dev/null || { echo "error=no such directory: $repo"; exit 3; }
dir=$(git rev-parse --git-common-dir 2>/dev/null) || { echo "error=not a git repository: $repo"; exit 3; }
lock=$dir/miyabi-ctl.lock
case $mode in
  acquire)
    if (set -C; printf '%s\n' "$owner" >"$lock") 2>/dev/null; then echo acquired; exit 0; fi
    now=$(date +%s)
    mtime=$(stat -c %Y "$lock" 2>/dev/null || stat -f %m "$lock" 2>/dev/null || echo "$now")
    echo "age=$((now - mtime))"
    echo "held=$(cat "$lock" 2>/dev/null)"
    exit 75 ;;
  release|break)
    [ "$(cat "$lock" 2>/dev/null)" = "$owner" ] && rm -f "$lock"
    exit 0 ;;
esac
"""


class HostLocked(MiyabiError):
    """Another apply holds this host."""

    exit_code = 75

    def __init__(self, host: str, holder: str, age_s: int):
        self.host, self.holder, self.age_s = host, holder, age_s
        super().__init__(f"{host}: another apply is running there (lock held by {holder}, "
                         f"for {age_s}s); try again when it has finished")


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
            raise MiyabiError(f"{host.name}: cannot lock: {values.get('error') or result.stderr}")
        holder, age = Holder(values.get("held", "")), int(values.get("age", "0") or 0)
        if _attempt == 0 and (holder.gone() or age > stale_after_s):
            run_script(host, LOCK_SCRIPT, repo_path, "break", holder.text)  # stale: break it
            continue
        raise HostLocked(host.name, holder.text or "unknown", age)
    try:
        yield owner
    finally:
        run_script(host, LOCK_SCRIPT, repo_path, "release", owner)
