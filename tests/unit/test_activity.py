"""What each session is doing (issue 8, item 4): transcripts, tmux, branch; prune --idle-for."""

from __future__ import annotations

from miyabi_ctl.phase0.prune import Selection, choose
from miyabi_ctl.probe.activity import add_activity, claude_slug
from miyabi_ctl.probe.agents import AgentSession, ProcessFacts

NOW = 1_800_000_000
SLUG = "-root-miyabi-private"
ACTIVITY = [
    "d/root/miyabi-private", "href: refs/heads/feat/x",
    "d/root", "h0123456789abcdef0123456789abcdef01234567",
    "k/root/.codex/sessions/2026/11/29/rollout-2026-11-29T10-00-00-abc.jsonl", "w/root",
    f"m{NOW - 7200} /root/.claude/projects/{SLUG}/a.jsonl",
    f"m{NOW - 30} /root/.claude/projects/-srv-busy/b.jsonl",
    f"m{NOW - 9000} /root/.codex/sessions/2026/11/29/rollout-2026-11-29T10-00-00-abc.jsonl",
]


def _s(pid: int, agent: str, cwd: str | None, age: int = 50_000, ppid: int = 1) -> AgentSession:
    return AgentSession(pid, ppid, agent, age, cwd, agent)


def test_slug_is_every_non_alphanumeric_as_a_dash() -> None:
    assert claude_slug("/Users/me/.agents") == "-Users-me--agents"
    assert claude_slug("/root/my repo_x") == "-root-my-repo-x"


def test_activity_branch_and_attachment() -> None:
    sessions = [_s(1, "claude", "/root/miyabi-private"), _s(2, "claude", "/srv/busy", ppid=40),
                _s(3, "codex", "/root"), _s(4, "claude", "/nowhere"),
                _s(5, "claude", "/root/miyabi-private", age=600)]
    facts = {1: ProcessFacts(tty=True), 2: ProcessFacts(tty=True), 3: ProcessFacts(grandparent=77),
             4: ProcessFacts()}
    out = {s.pid: s for s in add_activity(sessions, facts, ACTIVITY, ["40 0", "77 2"], NOW)}
    assert out[1].last_activity_s == 7200 and out[1].branch == "feat/x"
    assert out[1].activity_source == "transcript" and out[1].attached is True
    assert out[2].last_activity_s == 30 and out[2].attached is False  # its tmux pane: detached
    assert out[3].last_activity_s == 9000 and out[3].branch is None  # detached HEAD
    assert out[3].attached is True  # grandparent's pane has two clients
    assert out[4].last_activity_s is None and out[4].attached is None
    assert out[5].last_activity_s == 600  # no write since it started 10 minutes ago


def test_idle_for_never_takes_unknown_for_idle() -> None:
    sessions = [AgentSession(1, 1, "claude", 90_000, "/a", "claude", last_activity_s=10_000),
                AgentSession(2, 1, "claude", 90_000, "/b", "claude", last_activity_s=60),
                AgentSession(3, 1, "claude", 90_000, "/c", "claude"),
                AgentSession(4, 1, "codex", 3_000, "/d", "codex", last_activity_s=3_000)]
    acts = {a.pid: a for a in choose(sessions, Selection(idle_for_s=7200), NOW)}
    assert {p for p, a in acts.items() if a.action == "kill"} == {1}
    assert acts[2].reason == "active 1m00s ago"
    assert acts[3].reason == "activity unknown: never counted as idle"
    assert acts[4].reason.startswith("active 50m")
    both = {a.pid: a for a in choose(sessions, Selection(idle_for_s=60, older_than_s=50_000), NOW)}
    assert {p for p, a in both.items() if a.action == "kill"} == {1, 2}
    assert both[4].reason == "too recent"
