"""``phase0 restore``: put a backup's files (its staged versions and index flags too) back on a
host, into the repository's main work tree or one of its linked worktrees.

It works on what a ``--clean`` leaves (restore.sh): only the paths the backup changed are
written, where the disk holds nothing, what a checkout of HEAD writes (with the repository's eol
rules), or the backup's bytes already; anything else there is named and nothing is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import UsageError
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.phase0.backup import PUSH_TIMEOUT_S
from miyabi_ctl.phase0.backup_model import last_line
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.remote import Script, key_values, run_script

RESTORE_SCRIPT = Script("phase0", "restore.sh", uses=("snapshot.sh", "clean.sh"))
_WORKTREE_OF = re.compile(r"^backup/.+-\d{4}-\d{2}-\d{2}(?:-\d+)?-wt-(?P<name>[A-Za-z0-9_.-]+)$")


@dataclass
class RestoreOutcome:
    host: str
    ref: str
    ok: bool
    message: str
    commit: str | None = None
    files: int = 0
    index_restored: bool = False
    worktree: str | None = None
    written: int = 0
    flags_restored: bool = False
    embedded: list[str] = field(default_factory=list)


def worktree_of(ref: str) -> str | None:
    """The linked worktree a backup branch was taken in, by its name (``…-wt-issue-12``)."""
    match = _WORKTREE_OF.match(ref)
    return match["name"] if match else None


def restore_backup(host: Host, path: str, ref: str, *, remote: str | None,
                   worktree: str | None = None) -> RestoreOutcome:
    """Put a backup's files (and its staged versions and flags) back into the work tree at
    ``path``, or its linked worktree ``worktree``, at the backup's parent commit."""
    check_branch(ref, "backup branch")
    if remote:
        check_remote(remote)
    if worktree is not None and not re.fullmatch(r"[^/\0\n]+", worktree):
        raise UsageError(f"--worktree {worktree!r} is not a worktree's name (its directory's "
                         "name in .git/worktrees)")
    audit.ensure_writable()
    result = run_script(host, RESTORE_SCRIPT, path, "restore", remote or "", worktree or "", ref,
                        timeout=PUSH_TIMEOUT_S, end_on_timeout=True)
    values = key_values(result.stdout)
    out = RestoreOutcome(host.name, ref, ok=values.get("restored") == "1",
                         message="", commit=values.get("commit"),
                         files=int(values.get("files", "0") or 0),
                         index_restored=values.get("index") == "restored", worktree=worktree,
                         written=int(values.get("written", "0") or 0),
                         flags_restored=values.get("flags") == "restored",
                         embedded=[line[9:] for line in result.stdout.splitlines()
                                   if line.startswith("embedded=")])
    where = {"path": path, **({"worktree": worktree} if worktree else {})}
    if out.ok:
        out.message = (f"restored {out.files} changed files from {ref}"
                       + (f" into worktree {worktree}" if worktree else "")
                       + (f" ({out.files - out.written} were already there)"
                          if out.written < out.files else "")
                       + (" and the staged versions" if out.index_restored else "")
                       + (" and the index's flags" if out.flags_restored else ""))
        if out.embedded:
            out.message += ("; embedded repositories the backup holds only as a commit id are "
                            "not there: " + ", ".join(out.embedded))
        audit.record(host.name, "restore", result="ok", after={"ref": ref, "commit": out.commit,
                                                              "files": out.files}, **where)
    else:
        out.message = (values.get("refuse") or values.get("norepo") or values.get("error")
                       or (f"the worktree's directory {values['missing']} is gone"
                           if "missing" in values else "")
                       or last_line(result.stderr) or f"exit {result.exit_code}")
        audit.record(host.name, "restore", result="refused" if "refuse" in values else "failed",
                     error=out.message, ref=ref, **where)
    return out


def restore_on(host: Host, inventory: Inventory, ref: str,
               worktree: str | None = None) -> RestoreOutcome:
    """Restore ``ref`` in the fleet's repository on ``host`` (in its linked worktree
    ``worktree``, by default the one the branch's name says; ``""``: the main work tree), under
    the host's lock."""
    path = host.spec.repo_path_or(inventory.repo)
    chosen = worktree if worktree is not None else worktree_of(ref)
    with host_lock(host, path, "phase0 restore"):
        return restore_backup(host, path, ref, remote=inventory.repo.remote,
                              worktree=chosen or None)
