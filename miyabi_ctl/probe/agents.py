"""Recognise agent sessions in a process list, precisely.

``ps aux | grep -c claude`` counts the grep, a tmux session named ``claude-build``, an editor open
on ``~/.claude/settings.json`` and zombies. Here a process is a session only when its *executable*
is the agent (``claude``, ``codex``) or it is a script interpreter running the agent's package
(``node …/@anthropic-ai/claude-code/cli.js``); zombies never count, and a session's own helper
process of the same agent (codex's node wrapper and its native child) counts once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from miyabi_ctl.inventory import AgentSpec

INTERPRETERS = frozenset({"node", "nodejs", "bun", "deno"})
_ETIME_RE = re.compile(r"^(?:(?:(?P<d>\d+)-)?(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


@dataclass(frozen=True)
class ProcessLine:
    """One line of ``ps -axo pid=,ppid=,stat=,etime=,args=``."""

    pid: int
    ppid: int
    stat: str
    age_s: int
    args: str


@dataclass(frozen=True)
class AgentSession:
    pid: int
    ppid: int
    agent: str
    age_s: int
    cwd: str | None
    cmd: str


def parse_etime(text: str) -> int:
    """``[[dd-]hh:]mm:ss`` (ps's elapsed time, on Linux, macOS and toybox) to seconds."""
    match = _ETIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a ps elapsed time: {text!r}")
    days, hours = int(match["d"] or 0), int(match["h"] or 0)
    return ((days * 24 + hours) * 60 + int(match["m"])) * 60 + int(match["s"])


def parse_ps_line(line: str) -> ProcessLine | None:
    """Parse one ps line; None for anything malformed (a line cut short, a header)."""
    parts = line.split(None, 4)
    if len(parts) < 5:
        return None
    pid, ppid, stat, etime, args = parts
    try:
        return ProcessLine(int(pid), int(ppid), stat, parse_etime(etime), args)
    except ValueError:
        return None


def _basename(word: str) -> str:
    return word.rstrip("/").rsplit("/", 1)[-1]


def agent_of(args: str, agents: Iterable[AgentSpec]) -> str | None:
    """Which agent this command line is a session of, if any."""
    argv = args.split()
    if not argv:
        return None
    exe = _basename(argv[0])
    specs = list(agents)
    for spec in specs:
        if exe in spec.executables:
            return spec.name
    if exe in INTERPRETERS:
        script = next((a for a in argv[1:] if not a.startswith("-")), "")
        for spec in specs:
            if any(pattern in script for pattern in spec.scripts):
                return spec.name
    return None


def find_sessions(processes: Iterable[ProcessLine], agents: Mapping[str, AgentSpec],
                  cwds: Mapping[int, str] | None = None) -> list[AgentSession]:
    """The agent sessions among ``processes``, oldest first."""
    cwds = cwds or {}
    matched: dict[int, tuple[ProcessLine, str]] = {}
    for proc in processes:
        if "Z" in proc.stat:  # a zombie is a dead session nobody reaped, not a session
            continue
        agent = agent_of(proc.args, agents.values())
        if agent:
            matched[proc.pid] = (proc, agent)
    sessions = []
    for proc, agent in matched.values():
        parent = matched.get(proc.ppid)
        if parent and parent[1] == agent:  # a helper process of the same session
            continue
        sessions.append(AgentSession(proc.pid, proc.ppid, agent, proc.age_s, cwds.get(proc.pid),
                                     proc.args))
    return sorted(sessions, key=lambda s: (-s.age_s, s.pid))


def keywords(agents: Mapping[str, AgentSpec]) -> list[str]:
    """Substrings that any session's ps line must contain: the remote probe's coarse filter."""
    words: list[str] = []
    for spec in agents.values():
        words.extend(spec.executables)
        words.extend(spec.scripts)
    return sorted(set(words))
