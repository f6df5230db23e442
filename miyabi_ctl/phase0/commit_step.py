"""What backup.sh's ``commit`` step did (create, push, verify, clean), read from its output: the
outcome in words, and each step in the audit log as it happened — ``unknown`` where its end was
not seen (the connection closed: a dead host, or a controller stopped by Ctrl-C), for the host's
clean journal to settle on the next apply (journal.py)."""

from __future__ import annotations

from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import RunResult
from miyabi_ctl.phase0.backup_model import BackupOutcome, BackupPlan, last_line
from miyabi_ctl.remote import key_values

UNSEEN = ("the connection closed before the clean's end was seen (the host went away, or the "
          "controller was stopped): the host's journal settles it on the next apply")


def record_unseen_clean(host: str, branch: str | None, head: str | None, error: str, *,
                        journal: str | None = None, **where: Any) -> None:
    """A clean whose end the controller did not see: ``unknown`` until the journal says."""
    audit.record(host, "backup.clean", result="unknown", before={"head": head},
                 error=f"{error}; {UNSEEN}", backup=branch, journal=journal, **where)


def judge_commit(host: str, plan: BackupPlan, outcome: BackupOutcome, result: RunResult, *,
                 push: bool, clean: bool, where: dict[str, Any]) -> BackupOutcome:
    snap = plan.snapshot
    assert snap is not None
    values = key_values(result.stdout)
    outcome.commit = values.get("commit") or values.get("created")
    outcome.created = "created" in values
    outcome.pushed = values.get("pushed") == "1"
    outcome.verified = values.get("remote_verified" if push else "local_verified") == "1"
    outcome.cleaned = values.get("cleaned") == "1"
    before = {"head": snap.head, "branch": snap.branch, "tree": snap.tree,
              "files": plan.files}
    if outcome.created:
        audit.record(host, "backup.create", result="ok", before=before,
                     after={"branch": plan.branch, "commit": outcome.commit}, **where)
    if "recreated" in values:
        audit.record(host, "backup.recreate", result="ok",
                     after={"branch": plan.branch, "commit": values["recreated"]}, **where)
    # No exit status: the connection closed before the script ended (the host went away, or
    # the controller is stopping).
    vanished = result.exit_code == -1
    error = values.get("error") or (None if result.exit_code == 0 else
                                    last_line(result.stderr) or
                                    ("the host went away before the step finished: its outcome "
                                     "is unknown" if vanished else f"exit {result.exit_code}"))
    if push:
        audit.record(host, "backup.push",
                     result="ok" if outcome.verified else "unknown" if vanished else "failed",
                     after={"branch": plan.branch, "remote": snap.remote, "commit": outcome.commit,
                            "remote_tree": values.get("remote_tree")},
                     error=None if outcome.verified else error or "no verification", **where)
    there = f"{snap.remote}/{plan.branch}" if push else f"{plan.branch} (local only)"
    if not outcome.verified:
        outcome.ok = False
        outcome.message = f"backup not verified: {error or 'no verification'}"
        if clean:
            outcome.message += "; nothing was cleaned"  # a clean runs only after verification
        return outcome
    verb = "backed up" if outcome.created else "already backed up"
    outcome.message = f"{verb} and verified on {there}"
    if "recreated" in values:
        outcome.message += " (its deleted local branch recreated)"
    if not clean:
        if error:
            outcome.ok = False
            outcome.message += f"; then: {error}"
        return outcome
    if vanished and not outcome.cleaned and "refuse" not in values:
        outcome.ok = False
        record_unseen_clean(host, plan.branch, snap.head, error or "no exit status",
                            journal=values.get("journal_id"), **where)
        outcome.message += f"; the clean's outcome is unknown: {UNSEEN}"
        return outcome
    if "window_ms" in values:  # the clean's read-tree ran: files were changed
        audit.record(host, "backup.clean", result="ok" if outcome.cleaned else "failed",
                     before=before,
                     after={"head": snap.head, "left": _int(values.get("left"))},
                     error=None if outcome.cleaned else error, backup=plan.branch,
                     journal=values.get("journal_id"), window_ms=_int(values.get("window_ms")),
                     **where)
        outcome.message += "; working tree reset to HEAD"
        left = _int(values.get("left")) or 0
        if left:
            outcome.message += (f" ({left} paths the backup does not hold were left as they "
                                "were: see git status)")
        if not outcome.cleaned:
            outcome.ok = False
            outcome.message += f", but: {error or 'the clean did not finish'}"
    else:
        outcome.ok = False
        reason = values.get("refuse") or error or "clean did not run"
        audit.record(host, "backup.clean", result="refused" if "refuse" in values else "failed",
                     error=reason, journal=values.get("journal_id"), **where)
        outcome.message += f"; not cleaned: {reason}"
    return outcome


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
