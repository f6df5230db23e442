"""The probe's document (``probe.sh``'s output) parsed into a ``ProbeReport``.

Missing pieces — no git, no repo, a slow ``git status`` — are reported per field, never as a
dead host. Pure: tested on captured outputs without a host.
"""

from __future__ import annotations

from miyabi_ctl.inventory import Inventory
from miyabi_ctl.probe.agents import find_sessions, parse_ps_line
from miyabi_ctl.probe.report import ProbeReport, RepoState
from miyabi_ctl.remote import key_values

PROBE_FORMAT = "1"


class ProbeParseError(ValueError):
    """The host answered, but not with a probe document (a login banner, a broken shell)."""


def parse_probe(text: str, inventory: Inventory) -> ProbeReport:
    """Parse the probe's document into a ProbeReport."""
    sections = _split_sections(text)
    report = ProbeReport()
    _fill_system(report, key_values("\n".join(sections.get("system", []))))
    processes = [p for p in map(parse_ps_line, sections.get("ps", [])) if p is not None]
    report.sessions = find_sessions(processes, inventory.agents, _parse_cwds(sections.get("cwd", [])))
    _fill_repo(report, sections)
    return report


def _split_sections(text: str) -> dict[str, list[str]]:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("@@miyabi-probe ")), None)
    if start is None:
        snippet = text.strip().splitlines()[:1]
        raise ProbeParseError("no probe output" + (f" (got {snippet[0][:80]!r})" if snippet else ""))
    version = lines[start].split()[1]
    if version != PROBE_FORMAT:
        raise ProbeParseError(f"probe format {version}, expected {PROBE_FORMAT}")
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    ended = False
    for line in lines[start + 1:]:
        if line.startswith("@@"):
            name, _, rest = line[2:].partition(" ")
            if name == "end":
                ended = True
                break
            current = sections.setdefault(name, [])
            if rest:
                current.append(rest)
        else:
            current.append(line)
    if not ended:
        raise ProbeParseError("probe output was cut short")
    return sections


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _fill_system(report: ProbeReport, values: dict[str, str]) -> None:
    report.hostname = values.get("hostname") or None
    report.os = values.get("os") or None
    report.now = _int(values.get("now"))
    report.uptime_s = _int(values.get("uptime_s"))
    report.cpu_count = _int(values.get("cpus"))
    report.mem_total = _int(values.get("mem_total"))
    report.mem_available = _int(values.get("mem_available"))
    try:
        one, five, fifteen = (float(x) for x in values.get("load", "").split())
        report.load_avg = (one, five, fifteen)
    except ValueError:
        report.load_avg = None


def _parse_cwds(lines: list[str]) -> dict[int, str]:
    """``lsof -F``-shaped lines: ``p<pid>`` then ``n<path>``."""
    cwds: dict[int, str] = {}
    pid: int | None = None
    for line in lines:
        if line.startswith("p"):
            pid = _int(line[1:])
        elif line.startswith("n") and pid is not None:
            cwds[pid] = line[1:]
    return cwds


def _fill_repo(report: ProbeReport, sections: dict[str, list[str]]) -> None:
    values = key_values("\n".join(sections.get("repo", [])))
    if "error" in values:
        report.repo_error = values["error"]
        return
    repo = RepoState(path=values.get("path", ""))
    repo.head = values.get("head") or None
    repo.head_subject = values.get("head_subject")
    repo.head_time = _int(values.get("head_time"))
    repo.stashes = _int(values.get("stashes"))
    repo.worktrees = _int(values.get("worktrees"))
    if values.get("main_ab"):
        ahead, behind = (int(x) for x in values["main_ab"].split())
        repo.main_ahead, repo.main_behind = ahead, behind
    report.repo = repo
    status = sections.get("status", [])
    rc = _int((sections.get("status_rc") or ["0"])[0])
    if rc in (124, 142):
        report.repo_error = "git status timed out"
    elif rc:
        report.repo_error = f"git status failed (exit {rc})"
    if not report.repo_error:
        apply_porcelain_v2(repo, status)


def apply_porcelain_v2(repo: RepoState, lines: list[str]) -> None:
    """Fill branch, upstream and counts from ``git status --porcelain=v2 --branch`` lines."""
    staged = unstaged = untracked = conflicted = entries = 0
    for line in lines:
        if line.startswith("# branch.head "):
            head = line[len("# branch.head "):]
            repo.branch = None if head == "(detached)" else head
        elif line.startswith("# branch.oid "):
            oid = line[len("# branch.oid "):]
            repo.head = None if oid == "(initial)" else oid
        elif line.startswith("# branch.upstream "):
            repo.upstream = line[len("# branch.upstream "):]
        elif line.startswith("# branch.ab "):
            ahead, behind = line[len("# branch.ab "):].split()
            repo.ahead, repo.behind = int(ahead), -int(behind)
        elif line[:2] in ("1 ", "2 "):
            entries += 1
            xy = line[2:4]
            staged += xy[0] != "."
            unstaged += xy[1] != "."
        elif line.startswith("u "):
            entries += 1
            conflicted += 1
        elif line.startswith("? "):
            entries += 1
            untracked += 1
    repo.staged, repo.unstaged = staged, unstaged
    repo.untracked, repo.conflicted, repo.uncommitted = untracked, conflicted, entries
