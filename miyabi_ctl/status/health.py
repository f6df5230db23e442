"""Judge a probe against the thresholds: small checks that each produce findings, not strings.

A finding has a level (warning / critical), a stable code scripts can match, and words for
people ("32 claude sessions, max 8"). A host's status is its worst finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from miyabi_ctl.errors import HostError
from miyabi_ctl.inventory import HostSpec, Inventory
from miyabi_ctl.probe.report import ProbeReport

LEVELS = ("ok", "warning", "critical", "unreachable")
_RANK = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True)
class Finding:
    level: str
    code: str
    message: str


@dataclass
class HostStatus:
    """One host as `status` shows it: its spec, what the probe saw (or why it could not look)."""

    spec: HostSpec
    report: ProbeReport | None = None
    error: HostError | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def reachable(self) -> bool:
        return self.report is not None

    @property
    def level(self) -> str:
        if self.report is None:
            return "unreachable"
        return worst(f.level for f in self.findings)

    @property
    def problems(self) -> list[str]:
        if self.error is not None:
            return [self.error.message]
        return [f.message for f in self.findings]


def worst(levels: object) -> str:
    return max(levels, key=lambda lv: _RANK[lv], default="ok")  # type: ignore[arg-type]


def _level(value: float, pair: tuple[float, float]) -> str | None:
    warn, crit = pair
    if value >= crit:
        return "critical"
    if value >= warn:
        return "warning"
    return None


def evaluate(spec: HostSpec, report: ProbeReport, inventory: Inventory) -> list[Finding]:
    """Every finding for one reachable host, most severe first."""
    findings: list[Finding] = []
    for check in (_unknown, _load, _sessions, _repo):
        findings.extend(check(spec, report, inventory))
    return sorted(findings, key=lambda f: -_RANK[f.level])


def _load(spec: HostSpec, report: ProbeReport, inventory: Inventory) -> list[Finding]:
    per_core = report.load_per_core
    if per_core is None or report.load_avg is None:
        return []
    level = _level(per_core, inventory.thresholds.load_per_core)
    if not level:
        return []
    return [Finding(level, "load", f"load {report.load_avg[0]:g} = {per_core:.2f}/core")]


def _unknown(spec: HostSpec, report: ProbeReport, inventory: Inventory) -> list[Finding]:
    """A figure the host would not give is said, never taken as fine (docs/platforms.md)."""
    return [Finding("warning", "unknown", f"{figure} unknown: {why}")
            for figure, why in report.unknown.items()]


def session_limits(max_sessions: int, inventory: Inventory) -> tuple[float, float]:
    """(warning, critical) session counts for a host: ``sessions_over_max`` [W, C] means warn
    at max_sessions + W, critical at C × max_sessions (never below the warning)."""
    over_by, times = inventory.thresholds.sessions_over_max
    warn = max_sessions + over_by
    return warn, max(times * max_sessions, warn)


def _sessions(spec: HostSpec, report: ProbeReport, inventory: Inventory) -> list[Finding]:
    if spec.max_sessions is None:
        return []
    counts = {k: v for k, v in report.session_counts(list(inventory.agents)).items() if v}
    total = sum(counts.values())
    limit = spec.max_sessions
    level = _level(total, session_limits(limit, inventory)) if total > limit else None
    if not level:
        return []
    if len(counts) == 1:
        (agent, n), = counts.items()
        what = f"{n} {agent} sessions"
    else:
        what = f"{total} agent sessions (" + ", ".join(f"{n} {a}" for a, n in counts.items()) + ")"
    return [Finding(level, "sessions", f"{what}, max {limit}")]


def _repo(spec: HostSpec, report: ProbeReport, inventory: Inventory) -> list[Finding]:
    main = inventory.repo.main
    remote_main = f"{inventory.repo.remote}/{main}"
    repo = report.repo
    if repo is None:
        return [Finding("warning", "repo", f"repo {spec.repo_path_or(inventory.repo)}: "
                                           f"{report.repo_error or 'unknown state'}")]
    out: list[Finding] = []
    if report.repo_error:
        out.append(Finding("warning", "repo", report.repo_error))
    if repo.conflicted:
        out.append(Finding("critical", "conflicts", f"{repo.conflicted} conflicted files"))
    if repo.uncommitted:
        level = _level(repo.uncommitted, inventory.thresholds.uncommitted)
        if level:
            out.append(Finding(level, "uncommitted", f"{repo.uncommitted} uncommitted files"))
    if repo.detached:
        out.append(Finding("warning", "detached", f"detached HEAD at {(repo.head or '')[:9]}"))
    elif repo.branch and repo.branch != main and repo.main_behind:
        out.append(Finding("warning", "diverged", f"on {repo.branch}, {main} is "
                                                  f"{_commits(repo.main_behind)} ahead"))
    elif repo.branch == main and repo.main_behind:
        out.append(Finding("warning", "behind", f"{main} is {_commits(repo.main_behind)} "
                                                f"behind {remote_main}"))
    if repo.ahead:
        out.append(Finding("warning", "unpushed", f"{_commits(repo.ahead)} on {repo.branch} "
                                                  f"not pushed to {repo.upstream}"))
    return out


def _commits(n: int) -> str:
    return f"{n} commit" + ("" if n == 1 else "s")
