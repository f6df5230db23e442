"""What one probe saw on one host, as plain values. A figure is None when it could not be read."""

from __future__ import annotations

from dataclasses import dataclass, field

from miyabi_ctl.probe.agents import AgentSession


@dataclass
class WorktreeState:
    """One linked worktree of the repository (``git worktree add``, the agents' ``issue/N``)."""

    name: str
    path: str = ""
    branch: str | None = None
    head: str | None = None  # the commit of a detached HEAD
    locked: str | None = None  # the lock's reason ("" when it gives none)
    missing: bool = False  # its directory is gone (moved, deleted, not mounted)
    uncommitted: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, object]:
        return dict(vars(self))


@dataclass
class RepoState:
    """The git state of the fleet's repository on one host. Counts are None when unknown."""

    path: str
    branch: str | None = None
    head: str | None = None
    head_subject: str | None = None
    head_time: int | None = None
    upstream: str | None = None
    ahead: int | None = None
    behind: int | None = None
    main_ahead: int | None = None
    main_behind: int | None = None
    staged: int | None = None
    unstaged: int | None = None
    untracked: int | None = None
    conflicted: int | None = None
    uncommitted: int | None = None
    stashes: int | None = None
    worktrees: int | None = None
    worktree_list: list[WorktreeState] = field(default_factory=list)  # the linked ones

    @property
    def worktrees_uncommitted(self) -> int:
        """Uncommitted files in the linked worktrees, all together (those that could be read)."""
        return sum(w.uncommitted or 0 for w in self.worktree_list)

    @property
    def detached(self) -> bool:
        return self.branch is None and self.head is not None


@dataclass
class ProbeReport:
    """What one probe saw on one host."""

    hostname: str | None = None
    os: str | None = None
    now: int | None = None
    uptime_s: int | None = None
    uptime_f: float | None = None      # /proc/uptime's exact figure, where readable
    uptime_approx: bool = False        # read from `uptime`'s words: to the minute
    load_avg: tuple[float, float, float] | None = None
    cpu_count: int | None = None
    mem_total: int | None = None
    mem_available: int | None = None
    sessions: list[AgentSession] = field(default_factory=list)
    repo: RepoState | None = None
    repo_error: str | None = None
    # Figures that could not be read, with why: load, uptime, cpus, memory (docs/platforms.md).
    unknown: dict[str, str] = field(default_factory=dict)

    @property
    def load_per_core(self) -> float | None:
        if self.load_avg is None or not self.cpu_count:
            return None
        return round(self.load_avg[0] / self.cpu_count, 2)

    def session_counts(self, agent_names: list[str]) -> dict[str, int]:
        counts = dict.fromkeys(agent_names, 0)
        for session in self.sessions:
            counts[session.agent] = counts.get(session.agent, 0) + 1
        return counts
