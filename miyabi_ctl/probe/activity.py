"""What each agent session is doing: its branch, its last activity, whether someone is attached.

Read in the probe's one round trip (``probe.sh``'s ``@@activity`` and ``@@tmux`` sections):

- last activity: the newest write to the session's transcripts — Claude Code's
  ``~/.claude/projects/<slug of its cwd>/*.jsonl``, Codex's ``~/.codex/sessions/…/rollout-*.jsonl``
  whose first line names its cwd (written in the last week). A session that has not written since it
  started has been idle since it started. Several sessions in one directory share its newest write,
  so one busy session keeps its neighbours "active": activity is over-, never under-stated. No
  transcript at all: unknown, which ``phase0 prune --idle-for`` never counts as idle.
- attached: a tmux client is attached to the session of the pane it runs in (or its parent's or
  grandparent's pane); outside tmux, it has a controlling terminal (Linux ``tty_nr``).
- branch: ``HEAD`` of the git work tree holding its cwd, read as git does, without git.
"""

from __future__ import annotations

import dataclasses
import re

from miyabi_ctl.probe.agents import AgentSession, ProcessFacts


def add_activity(sessions: list[AgentSession], facts: dict[int, ProcessFacts],
                 activity: list[str], tmux: list[str], now: int | None) -> list[AgentSession]:
    """Each session's branch, last activity and attachment from the ``@@activity`` and
    ``@@tmux`` sections (docs/platforms.md says where each comes from)."""
    heads: dict[str, str] = {}
    mtimes: dict[str, int] = {}
    codex_file: dict[str, str] = {}
    cwd: str | None = None
    rollout: str | None = None
    for line in activity:
        tag, value = line[:1], line[1:]
        if tag == "d":
            cwd = value
        elif tag == "h" and cwd is not None:
            heads[cwd] = value
        elif tag == "k":
            rollout = value
        elif tag == "w" and rollout is not None:
            codex_file[rollout] = value
        elif tag == "m":
            stamp, _, path = value.partition(" ")
            if stamp.isdigit():
                mtimes[path] = int(stamp)
    claude_last: dict[str, int] = {}
    codex_last: dict[str, int] = {}
    for path, stamp in mtimes.items():
        if path in codex_file:
            key, table = codex_file[path], codex_last
        else:
            key, table = path.rsplit("/", 2)[-2] if path.count("/") >= 2 else "", claude_last
        table[key] = max(stamp, table.get(key, 0))
    panes: dict[int, bool] = {}
    for line in tmux:
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            panes[int(parts[0])] = int(parts[1]) > 0
    out = []
    for s in sessions:
        fact = facts.get(s.pid, ProcessFacts())
        branch = None
        head = heads.get(s.cwd or "")
        if head and head.startswith("ref: refs/heads/"):
            branch = head[len("ref: refs/heads/"):]
        last = None
        stamp = None
        if s.cwd:
            stamp = (codex_last.get(s.cwd) if s.agent == "codex"
                     else claude_last.get(claude_slug(s.cwd)))
        if stamp is not None and now is not None:
            last = max(0, min(now - stamp, s.age_s))  # no write since it started: idle since then
        attached = fact.tty
        for pid in (s.pid, s.ppid, fact.grandparent):
            if pid in panes:
                attached = panes[pid]
                break
        out.append(dataclasses.replace(s, branch=branch, last_activity_s=last,
                                       activity_source="transcript" if last is not None else None,
                                       attached=attached))
    return out


def claude_slug(cwd: str) -> str:
    """Claude Code's project directory name for a working directory: every character that is not
    an ASCII letter or digit becomes ``-`` (anthropics/claude-code#70076)."""
    return re.sub(r"[^a-zA-Z0-9]", "-", cwd)
