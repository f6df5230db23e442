"""The probe's document (``probe.sh``'s output) parsed into a ``ProbeReport``.

Missing pieces — no git, no repo, a slow ``git status`` — are reported per field, never as a
dead host. Pure: tested on captured outputs without a host.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from miyabi_ctl.inventory import Inventory
from miyabi_ctl.probe.activity import add_activity
from miyabi_ctl.probe.agents import ProcessFacts, ProcessLine, find_sessions, parse_ps_line
from miyabi_ctl.probe.report import ProbeReport, RepoState, WorktreeState
from miyabi_ctl.remote import key_values

PROBE_FORMAT = "1"


class ProbeParseError(ValueError):
    """The host answered, but not with a probe document (a login banner, a broken shell)."""


def parse_probe(text: str, inventory: Inventory) -> ProbeReport:
    """Parse the probe's document into a ProbeReport."""
    sections = _split_sections(text)
    report = ProbeReport()
    system = sections.get("system", [])
    _fill_system(report, key_values("\n".join(system)),
                 [line[7:] for line in system if line.startswith("denied=")])
    facts = parse_facts(sections.get("proc", []) + sections.get("cwd", []))
    processes = [p for p in map(parse_ps_line, sections.get("ps", [])) if p is not None]
    processes = [_exact_age(p, facts.get(p.pid), report.uptime_f) for p in processes]
    report.sessions = find_sessions(processes, inventory.agents, facts)
    report.sessions = add_activity(report.sessions, facts, sections.get("activity", []),
                                   sections.get("tmux", []), report.now)
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


USER_HZ = 100  # the clock tick of /proc/PID/stat on every Linux a developer carries
_UP_RE = re.compile(r"\bup\s+(?P<up>.*?),\s+(?:\d+\s+users?,|load average)")
_LOAD_RE = re.compile(r"load averages?:\s*([\d.]+),?\s+([\d.]+),?\s+([\d.]+)")
_UP_PART_RE = re.compile(r"(\d+)\s*(day|hr|min|sec)s?|(\d+):(\d\d)")
_UNIT_S = {"day": 86400, "hr": 3600, "min": 60, "sec": 1}


def parse_uptime_text(text: str) -> tuple[int | None, tuple[float, float, float] | None]:
    """Uptime (seconds, to the minute) and load from what ``uptime`` prints: procps
    (`` 21:36:10 up 21:10,  load average: 32.12, 34.45, 36.66``), toybox, busybox and macOS
    (``14:30  up 1 day,  2:45, 3 users, load averages: 1.52 1.43 1.41``)."""
    up: int | None = None
    match = _UP_RE.search(text)
    if match:
        parts = _UP_PART_RE.findall(match["up"])
        if parts:
            up = 0
            for n, unit, hours, minutes in parts:
                up += int(n) * _UNIT_S[unit] if unit else int(hours) * 3600 + int(minutes) * 60
    load_match = _LOAD_RE.search(text)
    load = None
    if load_match:
        load = (float(load_match[1]), float(load_match[2]), float(load_match[3]))
    return up, load


def _boot_uptime(boot_text: str, now: int | None) -> int | None:
    """``uptime -s``'s boot time (``2026-11-29 10:00:00``) with the host's ``date +%z``."""
    try:
        boot = dt.datetime.strptime(boot_text.strip(), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return None
    return None if now is None else now - int(boot.timestamp())


def _fill_system(report: ProbeReport, values: dict[str, str], denied: list[str]) -> None:
    report.hostname = values.get("hostname") or None
    report.os = values.get("os") or None
    report.now = _int(values.get("now"))
    report.uptime_s = _int(values.get("uptime_s"))
    report.uptime_f = _float(values.get("uptime_f"))
    report.cpu_count = _int(values.get("cpus"))
    report.mem_total = _int(values.get("mem_total"))
    report.mem_available = _int(values.get("mem_available"))
    try:
        one, five, fifteen = (float(x) for x in values.get("load", "").split())
        report.load_avg = (one, five, fifteen)
    except ValueError:
        report.load_avg = None
    text = values.get("uptime_text", "")
    text_up, text_load = parse_uptime_text(text)
    if report.uptime_s is None:
        report.uptime_s = _boot_uptime(values.get("boot_text", ""), report.now)
        if report.uptime_s is None and text_up is not None:
            report.uptime_s, report.uptime_approx = text_up, True
    if report.load_avg is None:
        report.load_avg = text_load
    why = ", ".join(d.replace(": ", " ") if ":" in d else f"{d} permission denied"
                    for d in denied)
    tried = f" ({why})" if why else ""
    if report.load_avg is None:
        report.unknown["load"] = ("no /proc/loadavg, sysctl vm.loadavg or uptime load average "
                                  "could be read" + tried)
    if report.uptime_s is None:
        report.unknown["uptime"] = ("no /proc/uptime, sysctl kern.boottime or uptime output "
                                    "could be read" + tried)
    if not report.cpu_count:
        report.unknown["cpus"] = "no /sys/devices/system/cpu/online, getconf, sysctl hw.ncpu or nproc"
    if report.mem_total is None or report.mem_available is None:
        report.unknown["memory"] = "no /proc/meminfo, or sysctl hw.memsize and vm_stat"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def parse_facts(lines: list[str]) -> dict[int, ProcessFacts]:
    """The ``@@proc`` section: ``p<pid>`` then a line per fact (``n`` cwd, ``e`` executable,
    ``l`` launcher, ``t`` start ticks, ``c`` CPU ticks, ``y`` tty, ``o`` ours); ``lsof -F``
    lines too."""
    found: dict[int, dict[str, object]] = {}
    pid: int | None = None
    keys = {"n": "cwd", "e": "exe", "l": "launcher", "t": "start_ticks", "c": "cpu_ticks",
            "y": "tty", "o": "mine", "g": "grandparent"}
    for line in lines:
        tag, value = line[:1], line[1:]
        if tag == "p":
            pid = _int(value)
            if pid is not None:
                found.setdefault(pid, {})
        elif tag in keys and pid is not None:
            key = keys[tag]
            if key in ("start_ticks", "cpu_ticks", "grandparent"):
                found[pid][key] = _int(value)
            elif key == "tty":
                found[pid][key] = _int(value) not in (None, 0)
            elif key == "mine":
                found[pid][key] = value == "1"
            else:
                found[pid][key] = value
    return {p: ProcessFacts(**f) for p, f in found.items()}  # type: ignore[arg-type]


def _exact_age(proc: ProcessLine, fact: ProcessFacts | None, uptime_f: float | None) -> ProcessLine:
    """busybox rounds its elapsed times (``2h03``): /proc's start time gives the exact age."""
    if proc.age_exact or fact is None or fact.start_ticks is None or uptime_f is None:
        return proc
    return dataclasses.replace(proc, age_s=int(uptime_f - fact.start_ticks / USER_HZ),
                               age_exact=True)


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
    repo.worktree_list = parse_worktrees(sections.get("worktrees", []))
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


def parse_worktrees(lines: list[str]) -> list[WorktreeState]:
    """The ``@@worktrees`` section: ``w<name>`` then ``p`` path, ``h`` HEAD, ``l`` lock reason,
    ``x`` (gone), ``u`` uncommitted files, ``e`` status's exit code (124, 142: timed out)."""
    found: list[WorktreeState] = []
    for line in lines:
        tag, value = line[:1], line[1:]
        if tag == "w":
            found.append(WorktreeState(value))
        elif not found:
            continue
        wt = found[-1]
        if tag == "p":
            wt.path = value
        elif tag == "h":
            if value.startswith("ref: refs/heads/"):
                wt.branch = value.removeprefix("ref: refs/heads/")
            elif not value.startswith("ref: "):
                wt.head = value
        elif tag == "l":
            wt.locked = value
        elif tag == "x":
            wt.missing = True
        elif tag == "u":
            wt.uncommitted = _int(value)
        elif tag == "e":
            wt.error = "git status timed out" if value in ("124", "142") \
                else f"git status failed (exit {value})"
    return found
