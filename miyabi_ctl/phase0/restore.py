"""``phase0 restore``: put a backup's files (and its staged versions) back on a host."""

from __future__ import annotations

from dataclasses import dataclass

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.phase0.backup import BACKUP_SCRIPT, PUSH_TIMEOUT_S, _last_line
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.remote import key_values, run_script


@dataclass
class RestoreOutcome:
    host: str
    ref: str
    ok: bool
    message: str
    commit: str | None = None
    files: int = 0
    index_restored: bool = False


def restore_backup(host: Host, path: str, ref: str, *, remote: str | None) -> RestoreOutcome:
    """Put a backup's files (and its staged versions) back into a clean work tree at its parent."""
    check_branch(ref, "backup branch")
    if remote:
        check_remote(remote)
    audit.ensure_writable()
    result = run_script(host, BACKUP_SCRIPT, "restore", path, "restore", remote or "", ref,
                        timeout=PUSH_TIMEOUT_S)
    values = key_values(result.stdout)
    out = RestoreOutcome(host.name, ref, ok=values.get("restored") == "1",
                         message="", commit=values.get("commit"),
                         files=int(values.get("files", "0") or 0),
                         index_restored=values.get("index") == "restored")
    if out.ok:
        out.message = (f"restored {out.files} changed files from {ref}"
                       + (" and the staged versions" if out.index_restored else ""))
        audit.record(host.name, "restore", result="ok", after={"ref": ref, "commit": out.commit,
                                                              "files": out.files}, path=path)
    else:
        out.message = (values.get("refuse") or values.get("norepo") or values.get("error")
                       or _last_line(result.stderr) or f"exit {result.exit_code}")
        audit.record(host.name, "restore", result="refused" if "refuse" in values else "failed",
                     error=out.message, path=path, ref=ref)
    return out


def restore_on(host: Host, inventory: Inventory, ref: str) -> RestoreOutcome:
    """Restore ``ref`` in the fleet's repository on ``host``, under the host's lock."""
    path = host.spec.repo_path_or(inventory.repo)
    with host_lock(host, path, "phase0 restore"):
        return restore_backup(host, path, ref, remote=inventory.repo.remote)
