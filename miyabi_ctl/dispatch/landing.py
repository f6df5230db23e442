"""``land --apply``: carry out a ``land`` plan, run by run, each host's runs under its lock.

For each run, under the host's lock: look again and decide again (anything that changed since the
plan — a follow-up started, a file edited — refuses it, changing nothing); fetch; merge issue/N
onto the remote's main in a temporary worktree and run the check there (``phase0/merge.sh``);
then push main and issue/N together (file backlog), or push issue/N and open the pull request
(GitHub backlog). A conflict or a failed check pushes nothing: it is recorded on the claim (every
controller's ``runs`` shows it) and beside the run's log (``show``). After a merge, the clean-up is
``recall``'s own (``apply_recall``: stop, back up, remove the worktree, release the claim), and
the run ends as ``landed``. Every step is in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.claims import Claim, ClaimKeeper, update_claim
from miyabi_ctl.dispatch.github import GitHubSource
from miyabi_ctl.dispatch.land import LANDS, LandItem, LandPlan, decide
from miyabi_ctl.dispatch.pulls import PullError, fenced, open_pull, pull_body
from miyabi_ctl.dispatch.recall import Discard, RecallOutcome, RecallTarget, apply_recall
from miyabi_ctl.dispatch.show import RunDetail, look_run, run_dir
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.dispatch.worktree import inspect_worktree
from miyabi_ctl.errors import ExitCode, HostError, HostLocked, MiyabiError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.names import check_branch
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.phase0.merge import CHECK_TIMEOUT_S, GIT_TIMEOUT_S, MERGE_SCRIPT, _multi
from miyabi_ctl.remote import Script, key_values, run_script

LAND_SCRIPT = Script("dispatch", "land.sh")
DONE = ("landed", "pr-opened", "pr-updated", "cleaned", "left")


@dataclass
class Landed:
    """What happened to one run."""

    issue: int
    host: str
    result: str  # one of DONE, refused, failed
    message: str = ""
    merged: str | None = None
    pr: int | None = None
    pr_url: str | None = None
    conflicts: list[str] = field(default_factory=list)
    check_rc: int | None = None
    check_output: list[str] = field(default_factory=list)
    locked: bool = False

    @property
    def lifecycle(self) -> str | None:
        """The run's lifecycle key (dispatch.lifecycle) after this, when landing moved it: what
        notifications tell; None when it stayed where it was (left, or a failure to retry)."""
        if self.result in ("landed", "cleaned"):
            return "landed"
        if self.result in ("pr-opened", "pr-updated"):
            return "pr-open"
        if self.result == "refused" and self.conflicts:
            return "conflicts"
        if self.result == "refused" and self.check_rc not in (None, 0):
            return "check-failed"
        return None

    def to_json(self) -> dict[str, Any]:
        return {"issue": self.issue, "host": self.host, "result": self.result,
                "message": self.message, "merged": self.merged, "pr": self.pr,
                "pr_url": self.pr_url, "conflicts": self.conflicts, "check_rc": self.check_rc,
                "check_output": self.check_output}


@dataclass
class LandReport:
    results: list[Landed] = field(default_factory=list)

    def exit_code(self) -> int:
        """0 when every run landed or was left for later; 75 when only locked hosts failed."""
        failed = [r for r in self.results if r.result not in DONE]
        if not failed:
            return ExitCode.OK
        return ExitCode.LOCKED if all(r.locked for r in failed) else ExitCode.FAILED


def apply_land(plan: LandPlan, fleet: Fleet, store: RunStore, keeper: ClaimKeeper, *,
               github: GitHubSource | None = None,
               check_timeout: float = CHECK_TIMEOUT_S) -> LandReport:
    """Land every run the plan lands (hosts in parallel, each host's runs in turn); the runs it
    refused or left are reported as such, untouched."""
    audit.ensure_writable()
    work = [i for i in plan.items if i.action in LANDS]
    by_host: dict[str, list[LandItem]] = {}
    for item in work:
        by_host.setdefault(item.target.assignment.host, []).append(item)

    def on_host(host: Host) -> list[Landed]:
        return [_land_one(host, item, plan, fleet, store, keeper, github, check_timeout)
                for item in by_host.get(host.name, [])]

    done: dict[int, Landed] = {}
    deadline = 60 + (check_timeout + 4 * GIT_TIMEOUT_S) * max(map(len, by_host.values()),
                                                              default=1)
    if by_host:
        for outcome in fleet.map(on_host, deadline_s=deadline):
            if outcome.error is not None:
                for item in by_host.get(outcome.host, []):
                    done[item.issue] = Landed(item.issue, outcome.host, "failed",
                                              outcome.error.message)
            else:
                done.update({r.issue: r for r in outcome.value or []})
    report = LandReport()
    for item in plan.items:
        a = item.target.assignment
        if item.issue in done:
            report.results.append(done[item.issue])
        else:
            result = "left" if item.action == "leave" else "refused"
            report.results.append(Landed(item.issue, a.host, result, item.reason))
    return report


def _land_one(host: Host, item: LandItem, plan: LandPlan, fleet: Fleet, store: RunStore,
              keeper: ClaimKeeper, github: GitHubSource | None, check_timeout: float) -> Landed:
    a = item.target.assignment
    try:
        with host_lock(host, host.spec.repo_path_or(fleet.inventory.repo), "land"):
            out, claim = _merge_or_open(host, item, plan, fleet, store, keeper, github,
                                        check_timeout)
    except MiyabiError as exc:
        message = exc.message if isinstance(exc, HostError) else str(exc)
        audit.record(host.name, "land", result="failed", error=message, issue=a.issue)
        return Landed(a.issue, host.name, "failed", message, locked=isinstance(exc, HostLocked))
    if out.result != "merged":
        return out
    cleaned = clean_up(a, claim, fleet, store, keeper, out.message)
    out.result = "landed" if cleaned.ok else "failed"
    if item.action == "cleanup" and cleaned.ok:
        out.result = "cleaned"
    out.message = "; ".join(m for m in (out.message, cleaned.message) if m)
    if not cleaned.ok:
        out.message += " — the work is on main; `land` again cleans up"
    return out


def _merge_or_open(host: Host, item: LandItem, plan: LandPlan, fleet: Fleet, store: RunStore,
                   keeper: ClaimKeeper, github: GitHubSource | None, check_timeout: float
                   ) -> tuple[Landed, Claim | None]:
    """Under the host's lock. ``result`` "merged" means: clean up next."""
    inv = fleet.inventory
    a, claim = item.target.assignment, item.target.claim
    fresh = replace(item, detail=look_run(host, inv, item.target),
                    leftovers=inspect_worktree(host, inv, a.worktree))
    action, reason = decide(fresh, flow=plan.flow, named=True)
    if action not in LANDS:
        audit.record(host.name, "land", result="refused", error=reason, issue=a.issue)
        return Landed(a.issue, host.name, "refused", f"not landed, nothing changed: {reason}"), \
            claim
    if action == "cleanup":
        return Landed(a.issue, host.name, "merged", reason), claim
    detail = fresh.detail
    assert detail is not None and detail.view.tip
    tip = detail.view.tip
    check_branch(a.branch, "the run's branch")
    path = host.spec.repo_path_or(inv.repo)
    facts = run_script(host, MERGE_SCRIPT, "facts", path, inv.repo.remote, a.branch,
                       inv.repo.main, "1", timeout=GIT_TIMEOUT_S)
    if facts.exit_code != 0 or key_values(facts.stdout).get("refuse"):
        v = key_values(facts.stdout)
        error = v.get("error") or v.get("refuse") or facts.stderr.strip() or "git fetch failed"
        audit.record(host.name, "land", result="failed", error=error, issue=a.issue)
        return Landed(a.issue, host.name, "failed", error), claim
    push = "1" if action == "merge" else "check"
    result = run_script(host, MERGE_SCRIPT, "merge", path, inv.repo.remote, a.branch,
                        inv.repo.main, tip, plan.check, str(int(check_timeout)), push,
                        f"refs/heads/{a.branch}" if action == "merge" else "",
                        timeout=check_timeout + 3 * GIT_TIMEOUT_S, end_on_timeout=True)
    v = key_values(result.stdout)
    out = Landed(a.issue, host.name, "failed", merged=v.get("merged"),
                 conflicts=_multi(result.stdout, "conflict"),
                 check_rc=int(v["check_rc"]) if v.get("check_rc", "").isdigit() else None,
                 check_output=_multi(result.stdout, "check_out"))
    onto = v.get("into_base", "")
    if out.check_rc is not None:
        _record_check(host, inv.repo.remote, path, a, plan.check, out, tip, onto)
        audit.record(host.name, "land.check", result="ok" if out.check_rc == 0 else "failed",
                     issue=a.issue, command=plan.check, rc=out.check_rc, tip=tip, onto=onto)
    if out.conflicts or (out.check_rc not in (None, 0)):
        kind = "conflicts" if out.conflicts else "check-failed"
        note = (f"conflicts with {inv.repo.main} in {', '.join(out.conflicts[:10])}"
                if out.conflicts else f"the check `{plan.check}` failed (exit {out.check_rc})")
        out.result, out.message = "refused", f"not landed, nothing pushed: {note}"
        audit.record(host.name, "land.merge", result="refused", error=note, issue=a.issue,
                     tip=tip, conflicts=out.conflicts)
        return out, _record(keeper, store, claim, host.name, kind, tip, note)
    if v.get("done") != "1":
        error = v.get("error") or v.get("refuse") or result.stderr.strip() or "merge failed"
        out.message = f"{error}; nothing was pushed" if v.get("pushed") != "1" else error
        audit.record(host.name, "land.merge", result="failed", error=error, issue=a.issue)
        return out, claim
    if v.get("already_merged"):
        out.result, out.message = "merged", f"{a.branch} is already merged into {inv.repo.main}"
        return out, claim
    if action == "merge":
        out.result = "merged"
        out.message = (f"merged {a.branch} ({tip[:12]}) into {inv.repo.main} as "
                       f"{(out.merged or '?')[:12]}, pushed to {inv.repo.remote} with {a.branch}")
        audit.record(host.name, "land.merge", result="ok", issue=a.issue, tip=tip,
                     after={"main": out.merged, "pushed": True, "branch": a.branch})
        return out, _record(keeper, store, claim, host.name, "landed", tip, out.message)
    return _push_and_open(host, item, detail, plan, fleet, store, keeper, github, out, tip,
                          onto)


def _push_and_open(host: Host, item: LandItem, detail: RunDetail, plan: LandPlan, fleet: Fleet,
                   store: RunStore, keeper: ClaimKeeper, github: GitHubSource | None,
                   out: Landed, tip: str, onto: str) -> tuple[Landed, Claim | None]:
    inv = fleet.inventory
    a, claim = item.target.assignment, item.target.claim
    pushed = run_script(host, LAND_SCRIPT, host.spec.repo_path_or(inv.repo), inv.repo.remote,
                        "push", a.branch, tip, timeout=GIT_TIMEOUT_S, end_on_timeout=True)
    if pushed.exit_code != 0:
        error = key_values(pushed.stdout).get("error") or pushed.stderr.strip() or "push failed"
        audit.record(host.name, "land.push", result="failed", error=error, issue=a.issue)
        out.message = error
        return out, claim
    audit.record(host.name, "land.push", result="ok", issue=a.issue,
                 after={"branch": a.branch, "tip": tip, "remote": inv.repo.remote})
    if claim and claim.pr:  # the pull request follows its branch
        out.result, out.pr = "pr-updated", int(claim.pr)
        out.message = f"pushed {a.branch} ({tip[:12]}): pull request #{claim.pr} follows it"
        return out, _record(keeper, store, claim, host.name, "pr-open", tip, claim.land_note)
    if github is None:
        out.message = "pushed, but the backlog is not on GitHub: no pull request opened"
        return out, claim
    check = _check_words(plan.check, out.check_rc, tip, onto)
    commits = [f"{c.sha[:12]} {c.subject}" for c in detail.commits]
    files = [f"{f.path} | " + ("binary" if f.added is None else f"+{f.added} -{f.deleted}")
             for f in detail.files] + ([detail.shortstat] if detail.shortstat else [])
    summary = [f"From {a.host} ({a.agent}, tmux session {a.session}): branch {a.branch} at "
               f"{tip[:12]}, {detail.commit_count} commits.", "", "Check:", "", fenced([check])]
    try:
        pr, created = open_pull(github, head=a.branch, base=inv.repo.main, title=item.title,
                                body=pull_body(a.issue, summary, commits, files))
    except PullError as exc:
        audit.record(host.name, "land.pr", result="failed", error=str(exc), issue=a.issue)
        out.message = f"pushed {a.branch}, but {exc}"
        return out, claim
    audit.record(host.name, "land.pr", result="ok", issue=a.issue, pr=pr.number, url=pr.url,
                 created=created)
    out.result, out.pr, out.pr_url = "pr-opened", pr.number, pr.url
    out.message = (f"pushed {a.branch} ({tip[:12]}); pull request #{pr.number} "
                   f"{'opened' if created else 'was already open'}: {pr.url}")
    held = _record(keeper, store, claim, host.name, "pr-open", tip, pr.url, pr=str(pr.number))
    return out, held


def _check_words(command: str, rc: int | None, tip: str, onto: str) -> str:
    if not command:
        return "none configured (--check or dispatch.test_command)"
    verdict = "passed" if rc == 0 else f"failed (exit {rc})"
    return f"{command} — {verdict} on {tip[:12]} merged onto {onto[:12]}"


def _record_check(host: Host, remote: str, path: str, a: Assignment, command: str,
                  out: Landed, tip: str, onto: str) -> None:
    """The check's result beside the run's log, where ``show`` finds it on any controller."""
    folder = run_dir(a)
    if folder is None:
        return
    when = datetime.now(UTC).isoformat(timespec="seconds")
    values = [f"rc={out.check_rc}", f"command={' '.join(command.splitlines())}",
              f"time={when}", f"onto={onto}", f"tip={tip}"]
    run_script(host, LAND_SCRIPT, path, remote, "record", folder, *values, "--",
               *out.check_output, timeout=60)


def _record(keeper: ClaimKeeper, store: RunStore, claim: Claim | None, via: str, land: str,
            tip: str, note: str, pr: str | None = None) -> Claim | None:
    """What landing made of the run, on its claim (a swap with a lease on the claim read)."""
    if claim is None:
        return None
    new = replace(claim, land=land, land_tip=tip, land_note=note[:300],
                  pr=claim.pr if pr is None else pr)
    updated = update_claim(keeper, store, claim, new, via)
    audit.record(via, "land.claim", result="ok" if isinstance(updated, Claim) else "failed",
                 issue=claim.issue, land=land, tip=tip,
                 **({} if isinstance(updated, Claim) else {"error": updated}))
    return updated if isinstance(updated, Claim) else claim


def clean_up(a: Assignment, claim: Claim | None, fleet: Fleet, store: RunStore,
             keeper: ClaimKeeper, how: str) -> RecallOutcome:
    """The work is on main (or its pull request merged): recall's own clean-up, the run ends as
    landed — in this cache's history too when another controller launched it."""
    out = apply_recall(RecallTarget(a, claim), fleet, store, keeper, Discard(), action="land",
                       end_state="landed")
    if out.ok and not a.id:
        store.remember_ended(a, "landed", how)
    return out


def cleanup_landed(claim: Claim, fleet: Fleet, store: RunStore, keeper: ClaimKeeper
                   ) -> tuple[bool, str] | None:
    """``dispatch --apply``, for the claim of a closed issue: a run whose work landed (its pull
    request merged, or merged into main) is cleaned up as ``land`` does. None: not such a run,
    or its host is not in this fleet (the claim is then only released)."""
    if claim.malformed or not (claim.pr or claim.land == "landed"):
        return None
    if claim.host not in {h.name for h in fleet.hosts}:
        return None
    out = clean_up(store.by_claim(claim.oid) or claim.as_assignment(), claim, fleet, store,
                   keeper, "its pull request was merged")
    return out.ok, ("landed, cleaned up: " if out.ok else "landed, clean-up failed: ") + out.message

