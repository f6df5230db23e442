"""Recognise agent sessions in a process list, precisely, in every way they are installed.

``ps aux | grep -c claude`` counts the grep, a tmux session named ``claude-build``, an editor open
on ``~/.claude/settings.json`` and zombies. Here a process is a session only when its *executable*
is the agent, in any of the forms the agents really run as (docs/platforms.md):

- the native binary by name or path: ``claude``, ``~/.local/bin/claude``, and the installer's
  ``~/.local/share/claude/versions/2.1.37`` itself;
- a script interpreter (node, bun, deno) running the agent's package or its npm bin link:
  ``node …/@anthropic-ai/claude-code/cli.js``, ``node /opt/homebrew/bin/claude``,
  ``node $PREFIX/bin/claude``, ``deno run npm:@anthropic-ai/claude-code``;
- a process whose title was rewritten to the agent's bare version (``2.1.37``, Claude Code ≥ 2.1):
  only when the host says what really runs it — ``/proc/PID/exe`` on Linux, the program text
  lsof lists on macOS — so an unrelated program that calls itself ``1.2.3`` is never counted;
- npm's native build (Claude Code >= 2.1.113): ``…/@anthropic-ai/claude-code/bin/claude.exe``, the
  name it has on every platform.

Zombies never count, and a session's own helper process of the same agent (codex's node wrapper
and its native child) counts once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from miyabi_ctl.inventory import AgentSpec

INTERPRETERS = frozenset({"node", "nodejs", "bun", "deno"})
# Words an interpreter takes before the script: `deno run`, `bun run`, `bun x`.
_SUBCOMMANDS = frozenset({"run", "x", "exec"})
# The native installer's background processes (a pool of spares, a pty host): not sessions.
_HELPER_FLAGS = ("--bg-spare", "--bg-pty-host")
_ETIME_RE = re.compile(r"^(?:(?:(?P<d>\d+)-)?(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")
# busybox ps: ` 0:05` (m:ss), ` 2h03` (h, min), ` 3d02` (days, hours), `123d` (days)
_BUSYBOX_ETIME_RE = re.compile(r"^(?:(?P<h>\d+)h(?P<hm>\d\d)|(?P<d>\d+)d(?P<dh>\d\d)?)$")
VERSION_TITLE_RE = re.compile(r"^\d+\.\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.]+)?$")


@dataclass(frozen=True)
class ProcessLine:
    """One line of ``ps -axo pid=,ppid=,stat=,etime=,args=`` (or its toybox/busybox twin).

    ``age_exact`` is False when ps printed a rounded elapsed time (busybox ``2h03``).
    """

    pid: int
    ppid: int
    stat: str
    age_s: int
    args: str
    age_exact: bool = True


@dataclass(frozen=True)
class ProcessFacts:
    """What the probe read about one process beyond its ps line (each None when unreadable)."""

    cwd: str | None = None
    exe: str | None = None          # what really runs (/proc/PID/exe, macOS lsof's txt)
    launcher: str | None = None     # the path the shell started ($_ of its environment)
    start_ticks: int | None = None  # /proc/PID/stat starttime, clock ticks after boot
    cpu_ticks: int | None = None    # utime + stime
    tty: bool | None = None         # has a controlling terminal
    mine: bool | None = None        # the login user's own process
    grandparent: int | None = None  # its parent's parent (a tmux pane's shell, say)


@dataclass(frozen=True)
class AgentSession:
    pid: int
    ppid: int
    agent: str
    age_s: int
    cwd: str | None
    cmd: str
    # What the session is doing (docs/platforms.md); None where it cannot be read.
    last_activity_s: int | None = None  # seconds since its transcript was last written
    activity_source: str | None = None  # transcript, or None
    attached: bool | None = None        # a terminal or an attached tmux client is on it
    branch: str | None = None           # the git branch of its cwd
    mine: bool | None = None            # the login user's own (None: unknown, e.g. macOS)


def parse_etime(text: str) -> int:
    """``[[dd-]hh:]mm:ss`` (ps's elapsed time, on Linux, macOS and toybox) to seconds."""
    match = _ETIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a ps elapsed time: {text!r}")
    days, hours = int(match["d"] or 0), int(match["h"] or 0)
    return ((days * 24 + hours) * 60 + int(match["m"])) * 60 + int(match["s"])


def parse_busybox_etime(text: str) -> int:
    """busybox's own rounded forms (``2h03``, ``3d02``, ``123d``) to seconds, at their precision."""
    match = _BUSYBOX_ETIME_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a busybox elapsed time: {text!r}")
    if match["h"]:
        return int(match["h"]) * 3600 + int(match["hm"]) * 60
    return int(match["d"]) * 86400 + int(match["dh"] or 0) * 3600


def parse_ps_line(line: str) -> ProcessLine | None:
    """Parse one ps line; None for anything malformed (a line cut short, a header)."""
    parts = line.split(None, 4)
    if len(parts) < 5:
        return None
    pid, ppid, stat, etime, args = parts
    try:
        return ProcessLine(int(pid), int(ppid), stat, parse_etime(etime), args)
    except ValueError:
        pass
    try:
        age = 0 if etime == "-" else parse_busybox_etime(etime)  # `-`: ps has no etime
        return ProcessLine(int(pid), int(ppid), stat, age, args, age_exact=False)
    except ValueError:
        return None


def _basename(word: str) -> str:
    return word.rstrip("/").rsplit("/", 1)[-1]


def _argv(args: str) -> list[str]:
    argv = args.split()
    # busybox prints `{comm} argv…` when comm is not argv[0]'s basename.
    if len(argv) > 1 and argv[0].startswith("{") and argv[0].endswith("}"):
        argv = argv[1:]
    return argv


def is_version_title(args: str) -> bool:
    """The command line is a bare version (``2.1.37``): a rewritten process title."""
    argv = _argv(args)
    return bool(argv) and VERSION_TITLE_RE.match(argv[0]) is not None


def _native(path: str, spec: AgentSpec) -> bool:
    """``claude``, ``/x/bin/claude``, npm's ``…/bin/claude.exe`` or the installer's
    ``…/claude/versions/2.1.37``."""
    if _basename(path).removesuffix(".exe") in spec.executables:
        return True
    return any(f"/{exe}/versions/" in path for exe in spec.executables)


def _package(spec: AgentSpec) -> list[str]:
    return [p.rstrip("/") for p in spec.scripts if p.startswith("@")]


def _runs_script(script: str, spec: AgentSpec) -> bool:
    """An interpreter's script is the agent: its package, or its npm bin link (``bin/claude``)."""
    if any(pattern in script for pattern in spec.scripts):
        return True
    if _basename(script) in spec.executables:
        return True
    name = script.removeprefix("npm:")
    return any(name == pkg or name.startswith(pkg + "@") for pkg in _package(spec))


def _script_of(argv: list[str]) -> str:
    words = [a for a in argv[1:] if not a.startswith("-")]
    while words and words[0] in _SUBCOMMANDS:
        words = words[1:]
    return words[0] if words else ""


def agent_of(args: str, agents: Iterable[AgentSpec], *, exe: str | None = None,
             launcher: str | None = None) -> str | None:
    """Which agent this command line is a session of, if any.

    ``exe`` (what really runs) and ``launcher`` (what the shell started) are only consulted when
    the command line is a rewritten title, a bare version.
    """
    argv = _argv(args)
    if not argv:
        return None
    specs = list(agents)
    if any(flag in argv for flag in _HELPER_FLAGS):
        return None
    if VERSION_TITLE_RE.match(argv[0]):
        return _agent_of_title(exe, launcher, specs)
    for spec in specs:
        if _native(argv[0], spec):
            return spec.name
    if _basename(argv[0]) in INTERPRETERS:
        script = _script_of(argv)
        for spec in specs:
            if script and _runs_script(script, spec):
                return spec.name
    return None


def _agent_of_title(exe: str | None, launcher: str | None, specs: list[AgentSpec]) -> str | None:
    if not exe:
        return None
    exe = exe.removesuffix(" (deleted)")  # the installer replaced the version it runs
    for spec in specs:
        if _native(exe, spec):
            return spec.name
    if _basename(exe) in INTERPRETERS and launcher:
        for spec in specs:
            if _runs_script(launcher, spec):
                return spec.name
    return None


def find_sessions(processes: Iterable[ProcessLine], agents: Mapping[str, AgentSpec],
                  facts: Mapping[int, ProcessFacts] | None = None) -> list[AgentSession]:
    """The agent sessions among ``processes``, oldest first."""
    facts = facts or {}
    matched: dict[int, tuple[ProcessLine, str]] = {}
    for proc in processes:
        if "Z" in proc.stat:  # a zombie is a dead session nobody reaped, not a session
            continue
        fact = facts.get(proc.pid, ProcessFacts())
        agent = agent_of(proc.args, agents.values(), exe=fact.exe, launcher=fact.launcher)
        if agent:
            matched[proc.pid] = (proc, agent)
    sessions = []
    for proc, agent in matched.values():
        parent = matched.get(proc.ppid)
        if parent and parent[1] == agent:  # a helper process of the same session
            continue
        fact = facts.get(proc.pid, ProcessFacts())
        # Without /proc (macOS) ps's `+` still says it is in the foreground of a terminal.
        tty = fact.tty if fact.tty is not None else (True if "+" in proc.stat else None)
        sessions.append(AgentSession(proc.pid, proc.ppid, agent, proc.age_s, fact.cwd, proc.args,
                                     attached=tty, mine=fact.mine))
    return sorted(sessions, key=lambda s: (-s.age_s, s.pid))


def keywords(agents: Mapping[str, AgentSpec]) -> list[str]:
    """Substrings that any session's ps line must contain: the remote probe's coarse filter.
    (Lines that are a bare version, a rewritten title, are passed on as well.)"""
    words: list[str] = []
    for spec in agents.values():
        words.extend(spec.executables)
        words.extend(spec.scripts)
        words.extend(_package(spec))
    return sorted(set(words))
