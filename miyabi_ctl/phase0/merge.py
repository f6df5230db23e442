"""Merge the feature branch into main on the host with the newest code, never in the agents' tree.

``plan_merge`` asks every host (in parallel, read-only: ``git ls-remote``, no fetch) where its
copy of ``--from`` stands against the remote's, picks the host whose copy is most commits ahead
and says why. ``apply_merge`` fetches there, runs the same decision on fresh facts, and in one
script merges ``--no-ff`` in a temporary detached worktree based on ``--into``, runs the check
there, pushes that commit and verifies it. The working tree where agents work is not used: its
files, index and HEAD stay as they are whatever happens (a conflict, a failed check, a rejected
push, a lost connection), and nothing a check writes reaches it. The local ``--into`` then moves
to the merge by fast-forward only where that is safe. ``--sync`` fast-forwards the other hosts
that sit on ``--into`` with a clean tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import HostError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.remote import Script, key_values, run_script

CHECK_TIMEOUT_S = 1800.0
GIT_TIMEOUT_S = 300.0  # a fetch, ls-remote or push over a slow link


MERGE_SCRIPT = Script("phase0", "merge.sh")


@dataclass
class BranchState:
    """Where one host's repository stands for this merge."""

    host: str
    error: str | None = None
    head: str | None = None
    branch: str | None = None
    top: str | None = None
    dirty: int = 0
    busy: str | None = None
    from_local: str | None = None
    from_remote: str | None = None
    into_local: str | None = None
    into_remote: str | None = None
    into_at: str | None = None  # the worktree that has --into checked out, if any
    from_ahead: int = 0
    from_relation: str = "none"  # ahead, same, behind, diverged, none (no local branch)
    remote_error: str | None = None
    from_merged: bool = False  # FROM is already in the remote's INTO
    way: list[str] = field(default_factory=list)  # on INTO: untracked/ignored files FROM adds


@dataclass
class SyncStep:
    host: str
    action: str  # fast-forward, skip
    reason: str = ""
    ok: bool = True
    before: str | None = None
    after: str | None = None


@dataclass
class MergePlan:
    from_: str
    into: str
    remote: str
    action: str  # merge, refuse, nothing
    host: str | None = None
    source: str | None = None  # the commit to merge
    source_name: str = ""
    why: str = ""
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    states: dict[str, BranchState] = field(default_factory=dict)
    sync: list[SyncStep] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.from_, "into": self.into, "remote": self.remote, "action": self.action,
            "host": self.host, "source": self.source, "source_name": self.source_name,
            "why": self.why, "reason": self.reason, "notes": self.notes,
            "hosts": {name: vars(s) for name, s in self.states.items()},
            "sync": [vars(s) for s in self.sync],
        }


@dataclass
class MergeOutcome:
    plan: MergePlan
    ok: bool
    message: str
    merged: str | None = None
    pushed: bool = False
    local: str | None = None  # the local --into: fast-forwarded, updated, created, none, or None
    conflicts: list[str] = field(default_factory=list)
    check_output: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sync: list[SyncStep] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "host": self.plan.host,
                "merged": self.merged, "pushed": self.pushed, "local": self.local,
                "conflicts": self.conflicts, "check_output": self.check_output,
                "notes": self.notes, "sync": [vars(s) for s in self.sync],
                "plan": self.plan.to_json()}


# -- facts and decision -----------------------------------------------------------------------

def _multi(text: str, key: str) -> list[str]:
    prefix = key + "="
    return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]


def read_state(host: Host, path: str, remote: str, from_: str, into: str, *,
               fetch: bool) -> BranchState:
    result = run_script(host, MERGE_SCRIPT, "facts", path, remote, from_, into,
                        "1" if fetch else "0", timeout=GIT_TIMEOUT_S)
    v = key_values(result.stdout)
    state = BranchState(host.name)
    state.error = v.get("refuse") or v.get("error") or (
        None if result.exit_code == 0 else (result.stderr.strip().splitlines() or ["?"])[-1])
    state.head, state.branch = v.get("head") or None, v.get("branch") or None
    state.top, state.into_at = v.get("top") or None, v.get("into_at") or None
    state.dirty = int(v.get("dirty", "0") or 0)
    state.busy = v.get("busy")
    state.from_local, state.from_remote = v.get("from_local") or None, v.get("from_remote") or None
    state.into_local, state.into_remote = v.get("into_local") or None, v.get("into_remote") or None
    state.from_ahead = int(v.get("from_ahead", "0") or 0)
    state.from_relation = v.get("from_relation", "none")
    state.remote_error = v.get("remote_error")
    state.from_merged = v.get("from_merged") == "1"
    state.way = _multi(result.stdout, "way")
    return state


def decide_merge(from_: str, into: str, remote: str, states: dict[str, BranchState],
                 on: str | None = None, *, cleaned: frozenset[str] = frozenset()) -> MergePlan:
    """Choose the host and the commit to merge, or refuse with the reason. Used by plan and apply.

    ``cleaned``: hosts whose uncommitted work a step before the merge (``phase0 run --clean``)
    saves and removes; their working trees count as clean for --sync and the local fast-forward.
    """
    plan = MergePlan(from_, into, remote, action="refuse", states=states)

    def dirty(s: BranchState) -> int:
        return 0 if s.host in cleaned else s.dirty

    usable = {n: s for n, s in states.items() if not s.error and not s.remote_error}
    for name, s in states.items():
        if s.error or s.remote_error:
            plan.notes.append(f"{name}: {s.error or 'cannot reach ' + remote + ': ' + str(s.remote_error)}")
    if on is not None:
        if on not in usable:
            plan.reason = f"{on}: {states[on].error or states[on].remote_error}" if on in states \
                else f"{on} is not in the fleet selection"
            return plan
        chosen = usable[on]
        plan.why = f"chosen with --on ({_describe(chosen, from_, remote)})"
    else:
        if not usable:
            plan.reason = "no host could be asked"
            return plan
        order = list(states)
        chosen = max(usable.values(), key=lambda s: (s.from_ahead, s.from_local is not None,
                                                      -order.index(s.host)))
        if chosen.from_ahead:
            plan.why = f"its {from_} is {chosen.from_ahead} commits ahead of {remote}'s, the most"
        else:
            plan.why = f"no host has unpushed commits on {from_}: {remote}'s copy is the newest"
        for other in usable.values():
            if other is not chosen and other.from_ahead:
                plan.notes.append(f"{other.host} also has {other.from_ahead} unpushed commits on "
                                  f"{from_} that this merge will not include")
    plan.host = chosen.host
    if chosen.from_relation == "diverged":
        plan.reason = (f"{chosen.host}'s {from_} and {remote}'s have diverged: reconcile them "
                       "by hand first")
        return plan
    if chosen.from_relation in ("ahead", "same"):
        plan.source, plan.source_name = chosen.from_local, f"{chosen.host}'s {from_}"
    elif chosen.from_remote:
        plan.source, plan.source_name = chosen.from_remote, f"{remote}/{from_}"
    else:
        plan.reason = f"no {from_} branch on {chosen.host} or on {remote}"
        return plan
    if not chosen.into_remote:
        plan.reason = f"{remote} has no {into} branch"
        return plan
    if chosen.busy:
        # A rebase of --from in progress: the branch is about to be rewritten under the merge.
        plan.reason = f"{chosen.host}: a merge, rebase or cherry-pick is in progress ({chosen.busy})"
        return plan
    if plan.source == chosen.into_remote:
        plan.action, plan.reason = "nothing", f"{from_} is the same commit as {remote}/{into}"
        return plan
    if chosen.from_merged:
        plan.action = "nothing"
        plan.reason = f"{plan.source_name} is already merged into {remote}/{into}"
        return plan
    plan.action = "merge"
    plan.reason = (f"merge {plan.source_name} ({plan.source[:12]}) into {into} on {chosen.host}, "
                   "in a temporary worktree")
    if dirty(chosen):
        plan.notes.append(f"{chosen.host} has {chosen.dirty} uncommitted changes: they are not "
                          f"part of the merge (only commits are) and its working tree is not touched")
    if chosen.into_at and chosen.into_at != chosen.top:
        plan.notes.append(f"{chosen.host}'s {into} is checked out in {chosen.into_at}: it will "
                          f"not be fast-forwarded there")
    elif chosen.into_at and (dirty(chosen) or chosen.busy):
        plan.notes.append(f"{chosen.host}'s working tree is on {into} and not clean: its {into} "
                          "will not be fast-forwarded")
    elif chosen.into_at and chosen.way:
        plan.notes.append(f"{chosen.host}'s {into} will not be fast-forwarded: {_way(chosen)}")
    for name, s in states.items():
        if name == chosen.host:
            continue
        if s.error:
            plan.sync.append(SyncStep(name, "skip", s.error, ok=False))
        elif s.branch != into:
            plan.sync.append(SyncStep(name, "skip", f"on {s.branch or 'a detached HEAD'}, not {into}"))
        elif dirty(s) or s.busy:
            plan.sync.append(SyncStep(name, "skip", "working tree not clean"))
        elif s.way:
            # What the apply's fast-forward would refuse, said now.
            plan.sync.append(SyncStep(name, "skip", _way(s)))
        else:
            plan.sync.append(SyncStep(name, "fast-forward", f"{into} is checked out and clean",
                                      before=s.head))
    return plan


def _way(s: BranchState) -> str:
    return ("the fast-forward would write over untracked or ignored files: "
            + " ".join(s.way) + " - move them away first")


def _describe(s: BranchState, from_: str, remote: str) -> str:
    if s.from_relation == "none":
        return f"no local {from_}"
    return f"its {from_} is {s.from_relation}" + (f" by {s.from_ahead}" if s.from_ahead else "") \
        + f" vs {remote}'s"


def _deadline(fleet: Fleet, script_s: float, quick_commands: int = 0) -> float:
    """The fleet deadline for a step: connect, the script's own timeout, and ``quick_commands``
    other round trips (lock, release) at the fleet's command timeout, with a little slack."""
    settings = fleet.settings
    return settings.connect_timeout + script_s + quick_commands * settings.command_timeout + 10.0


def plan_merge(fleet: Fleet, *, from_: str, into: str, on: str | None = None,
               cleaned: frozenset[str] = frozenset()) -> MergePlan:
    """Read-only: ask every host where it stands (ls-remote, no fetch) and decide."""
    inv = fleet.inventory
    check_branch(from_, "--from")
    check_branch(into, "--into")
    check_remote(inv.repo.remote)
    outcomes = fleet.map(lambda h: read_state(h, h.spec.repo_path_or(inv.repo), inv.repo.remote,
                                              from_, into, fetch=False),
                         deadline_s=_deadline(fleet, GIT_TIMEOUT_S))
    states = {o.host: o.value if o.value else BranchState(o.host, error=str(o.error))
              for o in outcomes}
    return decide_merge(from_, into, inv.repo.remote, states, on, cleaned=cleaned)


# -- applying ---------------------------------------------------------------------------------

def apply_merge(fleet: Fleet, plan: MergePlan, *, check: str | None = None, push: bool = True,
                sync: bool = False, check_timeout: float = CHECK_TIMEOUT_S) -> MergeOutcome:
    """Fetch on the chosen host, decide again on fresh facts, merge in a temporary worktree."""
    if plan.action != "merge" or plan.host is None:
        if plan.action == "refuse":
            record_refusal(plan)
        return MergeOutcome(plan, ok=plan.action == "nothing", message=plan.reason)
    audit.ensure_writable()
    inv = fleet.inventory
    host = fleet.host(plan.host)
    path = host.spec.repo_path_or(inv.repo)
    with host_lock(host, path, "phase0 merge"):
        fresh = read_state(host, path, plan.remote, plan.from_, plan.into, fetch=True)
        states = {**plan.states, plan.host: fresh}
        plan = decide_merge(plan.from_, plan.into, plan.remote, states, plan.host)
        if plan.action != "merge":
            audit.record(host.name, "merge", result="refused", error=plan.reason)
            return MergeOutcome(plan, ok=plan.action == "nothing", message=plan.reason)
        assert plan.source
        try:
            result = run_script(host, MERGE_SCRIPT, "merge", path, plan.remote, plan.from_,
                                plan.into, plan.source, check or "", str(int(check_timeout)),
                                "1" if push else "0", timeout=check_timeout + 3 * GIT_TIMEOUT_S,
                                end_on_timeout=True)
        except HostError as exc:
            # Timed out (the host's watchdog ends the script) or the host went: whether the
            # push landed is unknown.
            audit.record(host.name, "merge", result="unknown", error=exc.message,
                         source=plan.source)
            raise
    v = key_values(result.stdout)
    out = MergeOutcome(plan, ok=v.get("done") == "1", message="", merged=v.get("merged"),
                       pushed=v.get("pushed") == "1", local=v.get("local"),
                       conflicts=_multi(result.stdout, "conflict"),
                       check_output=_multi(result.stdout, "check_out"),
                       notes=_multi(result.stdout, "note"))
    before = {"branch": fresh.branch, "head": fresh.head, "into": fresh.into_local,
              "remote_into": fresh.into_remote}
    if out.ok and v.get("already_merged"):
        out.message = (f"{plan.source_name} is already merged into {plan.into} "
                       f"({v['already_merged'][:12]}): nothing to do")
        audit.record(host.name, "merge", result="skipped", before=before,
                     error="already merged", source=plan.source)
    elif out.ok:
        where = f"pushed to {plan.remote}/{plan.into}" if out.pushed else "not pushed (--no-push)"
        local = {"fast-forwarded": f"; the working tree's {plan.into} fast-forwarded",
                 "updated": f"; the local {plan.into} fast-forwarded",
                 "created": f"; the local {plan.into} created there"}.get(out.local or "", "")
        out.message = f"merged {plan.source_name} into {plan.into} as {out.merged}, {where}{local}"
        audit.record(host.name, "merge", result="ok", before=before,
                     after={"into": out.merged, "pushed": out.pushed, "local": out.local},
                     source=plan.source, notes=out.notes)
    elif result.exit_code == -1:
        # The connection closed before the script's end (the host went away): whether the
        # push landed is unknown, the temporary worktree goes with the next merge there.
        error = v.get("error") or "the host went away before the merge finished"
        out.message = (f"{error}: whether {plan.remote}/{plan.into} got the merge is unknown"
                       + (f" (it WAS pushed: {out.merged})" if out.pushed else "")
                       + "; the host's working tree, index and HEAD were not touched")
        audit.record(host.name, "merge", result="unknown", before=before, error=error,
                     source=plan.source, pushed=out.pushed, merged=out.merged)
    else:
        error = v.get("refuse") or v.get("error") or result.stderr.strip() or f"exit {result.exit_code}"
        if out.pushed:
            out.message = f"{error} (the merge {out.merged} WAS pushed to {plan.remote}/{plan.into})"
        else:
            out.message = (f"{error}; nothing was pushed, and the host's working tree, index and "
                           "HEAD were not touched")
        audit.record(host.name, "merge", result="failed", before=before, error=error,
                     conflicts=out.conflicts, pushed=out.pushed, notes=out.notes)
    if out.ok and sync:
        if out.pushed and out.merged:
            out.sync = sync_hosts(fleet, plan, out.merged)
        else:
            out.sync = [SyncStep(s.host, "skip", "nothing was pushed") for s in plan.sync]
        out.ok = all(s.ok for s in out.sync)
    return out


def record_refusal(plan: MergePlan) -> None:
    """An --apply that its plan refused is in the audit log too (nothing changed)."""
    audit.ensure_writable()
    audit.record(plan.host or "-", "merge", result="refused", error=plan.reason, planned=True,
                 source=plan.source)


def sync_hosts(fleet: Fleet, plan: MergePlan, target: str) -> list[SyncStep]:
    """Fast-forward every other host on ``into`` with a clean tree, in parallel."""
    planned = {s.host: s for s in plan.sync}
    inv = fleet.inventory

    def one(host: Host) -> SyncStep:
        step = planned.get(host.name)
        if step is None:
            return SyncStep(host.name, "skip", "the merge host")
        if step.action != "fast-forward":
            return step
        path = host.spec.repo_path_or(inv.repo)
        with host_lock(host, path, "phase0 merge --sync"):
            result = run_script(host, MERGE_SCRIPT, "sync", path, plan.remote, plan.from_,
                                plan.into, target, timeout=GIT_TIMEOUT_S, end_on_timeout=True)
        v = key_values(result.stdout)
        if v.get("done") != "1" and result.exit_code == -1:
            audit.record(host.name, "merge.sync", result="unknown",
                         error="the host went away before the fast-forward finished",
                         before={"head": v.get("before")})
            return SyncStep(host.name, "skip", "the host went away: the fast-forward's outcome "
                            "is unknown", ok=False)
        if v.get("done") == "1":
            audit.record(host.name, "merge.sync", result="ok", before={"head": v.get("before")},
                         after={"head": v.get("after")})
            return SyncStep(host.name, "fast-forward", f"{plan.into} now at {target[:12]}",
                            before=v.get("before"), after=v.get("after"))
        reason = v.get("refuse") or v.get("error") or result.stderr.strip() or "failed"
        audit.record(host.name, "merge.sync", result="skipped" if "refuse" in v else "failed",
                     error=reason)
        return SyncStep(host.name, "skip", reason, ok="refuse" in v)

    steps = []
    for outcome in fleet.map(one, deadline_s=_deadline(fleet, GIT_TIMEOUT_S, quick_commands=2)):
        if outcome.host == plan.host:
            continue
        steps.append(outcome.value if outcome.value else
                     SyncStep(outcome.host, "skip", str(outcome.error), ok=False))
    return steps
