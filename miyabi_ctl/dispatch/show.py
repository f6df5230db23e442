"""``show``: what one run did, in one round trip to its host — its state, the commits on its branch
since the base, the files they change, the worktree's uncommitted files, the last lines of the
agent's log, the last check ``land`` ran; with ``diff``, the whole patch.

The script is runs.sh (the same look ``runs`` takes at a run: session, commits ahead, tip,
whether it waits for input) followed by show.sh, sent as one: one round trip, one definition of
what a run's state is. Text from the run (commit subjects, log lines, file names) is data: shown
verbatim, never markup; terminal escapes and control characters are dropped on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cache
from importlib.resources import files

from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.dispatch.agent_run import RUNS_SCRIPT, look_args, parse_look
from miyabi_ctl.dispatch.claims import Claim, ClaimBoard, ClaimKeeper
from miyabi_ctl.dispatch.run_views import PullStates, RunView
from miyabi_ctl.dispatch.service import read_claims
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.errors import HostError, Refused
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.remote import run_script

DIFF_MARKER = "@@miyabi-diff@@"
LOG_LINES = 20
MAX_TEXT = 500  # characters of one subject or log line


class NoSuchRun(Refused):
    """No claim for the issue, and this controller never ran it."""


@dataclass(frozen=True)
class RunTarget:
    """A run as ``show``, ``tell`` and ``land`` find it: the issue's claim on the remote
    (whoever made it), else this controller's last run of the issue."""

    assignment: Assignment
    claim: Claim | None  # None: ended (from the cache), or made before claims existed


def find_run(board: ClaimBoard, store: RunStore, issue: int) -> RunTarget:
    claim = board.claims.get(issue) if board.readable else None
    if claim is not None and not claim.malformed:
        return RunTarget(store.by_claim(claim.oid) or claim.as_assignment(), claim)
    if claim is not None:
        raise NoSuchRun(f"issue #{issue} is held by {claim.holder()}")
    mine = [a for a in store.all() if a.issue == issue]
    active = [a for a in mine if a.active and (not a.claim or not board.readable)]
    if active or mine:
        return RunTarget((active or mine)[-1], None)
    where = "" if board.readable else f" (the claims could not be read: {board.error})"
    raise NoSuchRun(f"issue #{issue} has no run: no claim on the remote, and this controller "
                    f"never dispatched it{where}")


def run_dir(a: Assignment) -> str | None:
    """The run's directory on its host (where launch put ``agent.log``), or None when the record
    names another place: ``tell`` and ``land`` write there, and a claim is written by whoever can
    push to the remote."""
    tail = f"/.runs/issue-{a.issue}/agent.log"
    if not a.log or not a.log.endswith(tail) or "/../" in a.log:
        return None
    return a.log[:-len("/agent.log")]


@dataclass(frozen=True)
class Commit:
    sha: str
    time: int | None
    subject: str


@dataclass(frozen=True)
class FileChange:
    path: str  # as git prints it (quoted when unusual)
    added: int | None  # None: binary
    deleted: int | None


@dataclass
class CheckResult:
    """The last check ``land`` ran for the run, as recorded beside its log on the host."""

    rc: int | None
    command: str = ""
    time: str = ""
    onto: str = ""  # the main commit the branch was merged onto
    tip: str = ""  # the branch's commit
    output: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.rc == 0

    def describe(self) -> str:
        verdict = "passed" if self.passed else f"FAILED (exit {self.rc})"
        onto = f" on {self.tip[:12]} merged onto main {self.onto[:12]}" if self.onto else ""
        return f"`{self.command}` {verdict}{onto}" + (f", {self.time}" if self.time else "")


@dataclass
class RunDetail:
    """One run, looked at on its host (``error`` when it could not be)."""

    target: RunTarget
    view: RunView
    base: str | None = None  # what the commits and the diff are counted from
    commit_count: int = 0
    commits: list[Commit] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    shortstat: str = ""
    branch_exists: bool = True
    worktree_exists: bool | None = None
    uncommitted: int | None = None
    uncommitted_files: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    check: CheckResult | None = None
    diff: str | None = None
    error: str | None = None
    pr_url: str | None = None


def show_run(inventory: Inventory, store: RunStore, keeper: ClaimKeeper, issue: int, *,
             diff: bool = False, log_lines: int = LOG_LINES,
             pulls: PullStates | None = None) -> RunDetail:
    """``show ISSUE``: the claims read (which run, whose), then one round trip to its host — over
    the keeper's connection when the claims were read through that host; with ``pulls``, where
    its pull request stands."""
    known = [a.host for a in store.active() if a.issue == issue]  # read through it, if ours
    target = find_run(read_claims(keeper, store, known), store, issue)
    a, claim = target.assignment, target.claim
    detail = RunDetail(target, RunView(a, claim=claim),
                       error=f"host {a.host} is not in the fleet")
    if a.host in {h.name for h in inventory.hosts}:
        try:
            detail = keeper.on_host(a.host, lambda host: look_run(
                host, inventory, target, diff=diff, log_lines=log_lines))
        except HostError as exc:
            detail = RunDetail(target, RunView(a, claim=claim, error=exc.message),
                               error=exc.message)
    if claim is not None and claim.pr:
        if pulls is not None:
            detail.view = replace(detail.view, pr_state=pulls({issue: int(claim.pr)}).get(issue))
        if claim.land == "pr-open" and claim.land_note.startswith("http"):
            detail.pr_url = claim.land_note
    return detail


@cache
def show_script() -> str:
    """runs.sh, then show.sh (without the library a second time): one script, one round trip."""
    tail = files("miyabi_ctl.dispatch").joinpath("show.sh").read_text(encoding="utf-8")
    return RUNS_SCRIPT.text() + "\n" + tail


def look_run(host: Host, inventory: Inventory, target: RunTarget, *, diff: bool = False,
             log_lines: int = LOG_LINES) -> RunDetail:
    """One round trip to the run's host."""
    a = target.assignment
    args = look_args(inventory, host, [(a.issue, a.branch, a.base or "", a.log or "")])
    result = run_script(host, show_script(), *args, a.worktree, "1" if diff else "0",
                        str(log_lines), timeout=120)
    return parse_detail(target, result)


def parse_detail(target: RunTarget, result: RunResult) -> RunDetail:
    head, marker, patch = result.stdout.partition(f"\n{DIFF_MARKER}\n")
    facts = parse_look(result.host, replace(result, stdout=head)).get(target.assignment.issue)
    if facts is None:
        raise HostError(result.host, "no answer for this run")
    view = RunView(target.assignment, alive=facts.alive, ahead=facts.ahead, merged=facts.merged,
                   last_activity=facts.last_activity, condition=facts.condition,
                   exit_status=facts.exit_status, claim=target.claim, tip=facts.tip)
    detail = RunDetail(target, view, diff=patch if marker else None)
    check: dict[str, str] = {}
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "commit":
            sha, _, rest = value.partition(" ")
            when, _, subject = rest.partition(" ")
            detail.commits.append(Commit(sha, int(when) if when.isdigit() else None,
                                         subject[:MAX_TEXT]))
        elif key == "file":
            added, _, rest = value.partition("\t")
            deleted, _, path = rest.partition("\t")
            detail.files.append(FileChange(path, _int(added), _int(deleted)))
        elif key == "log":
            detail.log.append(value[:MAX_TEXT])
        elif key == "dirty_file":
            detail.uncommitted_files.append(value[:MAX_TEXT])
        elif key == "check_out":
            check.setdefault("output", "")
            check["output"] += value[:MAX_TEXT] + "\n"
        elif key.startswith("check."):
            check.setdefault(key[6:], value)
        elif key == "from":
            detail.base = value or None
        elif key == "commit_count" and value.isdigit():
            detail.commit_count = int(value)
        elif key == "shortstat":
            detail.shortstat = value
        elif key == "branch_missing":
            detail.branch_exists = False
        elif key == "worktree":
            detail.worktree_exists = value == "yes"
        elif key == "dirty" and value.isdigit():
            detail.uncommitted = int(value)
    if "rc" in check:
        detail.check = CheckResult(_int(check["rc"]), check.get("command", ""),
                                   check.get("time", ""), check.get("onto", ""),
                                   check.get("tip", ""), check.get("output", "").splitlines())
    return detail


def _int(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None
