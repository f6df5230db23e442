"""What fleet.yaml describes, as frozen values: the repo, SSH settings, thresholds, agents, hosts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miyabi_ctl.errors import InventoryError

HOST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
STRICT_CHOICES = ("yes", "accept-new", "no")
TRANSPORTS = ("ssh", "local")
CLIENTS = ("paramiko", "openssh")  # how an ssh host is reached: the library, or the ssh program


@dataclass(frozen=True)
class RepoSpec:
    """The one repository every host works on."""

    path: str = "~/miyabi-private"
    main: str = "main"
    remote: str = "origin"
    feature: str | None = None


@dataclass(frozen=True)
class SSHSettings:
    """Fleet-wide SSH behaviour; per-host values come from the host entry and ~/.ssh/config."""

    config: str | None = "~/.ssh/config"
    known_hosts: str = "~/.ssh/known_hosts"
    strict_host_keys: str = "yes"
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    max_parallel: int = 32
    client: str = "paramiko"
    control_persist: float = 60.0  # client: openssh keeps a master connection this long; 0: none


@dataclass(frozen=True)
class Thresholds:
    """(warning, critical) pairs. ``sessions_over_max``: warn when sessions exceed max_sessions by
    the first value or more; critical when they reach the second value times max_sessions."""

    load_per_core: tuple[float, float] = (1.0, 2.0)
    uncommitted: tuple[float, float] = (10, 100)
    sessions_over_max: tuple[float, float] = (1, 2)


@dataclass(frozen=True)
class AgentSpec:
    """How one kind of agent session is recognised in a process list, and how it is launched.

    A process is a session of this agent when the basename of its executable (argv[0]) is one of
    ``executables``, or when it is a script interpreter (node, bun, deno) whose first
    script argument contains one of ``scripts``. ``follow_up`` starts it again in the same
    worktree, continuing its conversation, with ``{prompt_file}`` holding the operator's
    message (``tell``).
    """

    name: str
    executables: tuple[str, ...]
    scripts: tuple[str, ...] = ()
    launch: str | None = None
    follow_up: str | None = None
    like: str | None = None  # a launch profile: runs this agent's program; its sessions are that agent's


DEFAULT_AGENTS: dict[str, AgentSpec] = {
    "claude": AgentSpec(
        "claude",
        executables=("claude",),
        scripts=("@anthropic-ai/claude-code/",),
        # Unattended in a worktree: file edits accepted, git allowed, the repo's test command
        # too when dispatch.test_command names it; anything else is denied, never asked about.
        # The prompt precedes --allowedTools, which is variadic and would swallow it as a tool.
        launch=('claude -p "$(cat {prompt_file})" --permission-mode acceptEdits '
                '--allowedTools "Bash(git:*)" {test_tool}'),
        # `claude -c -p "query"`: continue the most recent conversation in this directory (the
        # worktree), headless; the permissions are given again (Claude Code's CLI reference).
        follow_up=('claude -p --continue "$(cat {prompt_file})" --permission-mode acceptEdits '
                   '--allowedTools "Bash(git:*)" {test_tool}'),
    ),
    "codex": AgentSpec(
        "codex",
        executables=("codex",),
        scripts=("@openai/codex/",),
        # workspace-write sandbox (edits in the worktree, no network), no approval prompts.
        launch='codex exec --full-auto "$(cat {prompt_file})"',
        # `codex exec resume --last "…"`: only the conversation is kept, flags go before
        # `resume` (Codex's docs/exec.md, "Resuming non-interactive sessions").
        follow_up='codex exec --full-auto resume --last "$(cat {prompt_file})"',
    ),
}


@dataclass(frozen=True)
class HostSpec:
    """One machine of the fleet as the inventory describes it."""

    name: str
    transport: str = "ssh"
    ssh: str | None = None
    role: str | None = None
    max_sessions: int | None = None
    tags: tuple[str, ...] = ()
    repo_path: str | None = None
    identity_file: str | None = None
    proxy_jump: str | None = None
    client: str | None = None  # None: the fleet's ssh.client
    line: int | None = None

    def repo_path_or(self, repo: RepoSpec) -> str:
        return self.repo_path or repo.path


@dataclass(frozen=True)
class Inventory:
    """The whole fleet: where it came from, its repo, SSH settings, thresholds, agents, hosts."""

    source: Path | None
    hosts: tuple[HostSpec, ...]
    repo: RepoSpec = RepoSpec()
    ssh: SSHSettings = SSHSettings()
    thresholds: Thresholds = Thresholds()
    agents: dict[str, AgentSpec] = field(default_factory=lambda: dict(DEFAULT_AGENTS))
    backlog: dict[str, Any] = field(default_factory=dict)
    dispatch: dict[str, Any] = field(default_factory=dict)
    notify: tuple[str, ...] = ()  # Apprise URLs told what changed (miyabi_ctl/notify)
    profiles: dict[str, AgentSpec] = field(default_factory=dict)  # agents with ``like:``
    schedule: dict[str, Any] = field(default_factory=dict)  # hours_per_day, default_estimate

    @property
    def launchers(self) -> dict[str, AgentSpec]:
        """Every agent dispatch can launch by name: the session kinds and the profiles."""
        return {**self.agents, **self.profiles}

    @property
    def implicit(self) -> bool:
        """True when no fleet.yaml was found and the fleet is this machine alone."""
        return self.source is None

    @property
    def scope(self) -> str:
        """What this controller files the fleet's runs and audit entries under: its fleet file
        (resolved), or for the implicit fleet the repository it looks at. One controller may
        serve several fleets (several repositories); none sees another's."""
        if self.source is not None:
            return f"fleet:{Path(self.source).expanduser().resolve()}"
        return f"local:{self.repo.path}"

    def select(self, names: list[str] | None) -> list[HostSpec]:
        """The hosts named on the command line (all when none), in inventory order."""
        if not names:
            return list(self.hosts)
        known = {h.name: h for h in self.hosts}
        unknown = [n for n in names if n not in known]
        if unknown:
            where = self.source or "the implicit local fleet"
            raise InventoryError(
                f"unknown host {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(known) or 'none'}) in {where}"
            )
        wanted = set(names)
        return [h for h in self.hosts if h.name in wanted]
