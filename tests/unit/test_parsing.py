"""Parsing the probe's pieces: ps elapsed times, ps lines (Linux and macOS), agent detection,
porcelain v2, a whole probe document, and the judgement of thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from miyabi_ctl.inventory import DEFAULT_AGENTS, HostSpec, parse_inventory
from miyabi_ctl.probe.agents import ProcessFacts, agent_of, find_sessions, parse_etime, parse_ps_line
from miyabi_ctl.probe.parse import ProbeParseError, apply_porcelain_v2, parse_probe
from miyabi_ctl.probe.report import RepoState
from miyabi_ctl.status.health import evaluate

INV = parse_inventory("hosts: {mac: {max_sessions: 8}}\n", Path("fleet.yaml"))


@pytest.mark.parametrize(("text", "seconds"), [
    ("00:07", 7), ("05:32", 332), ("1:05:32", 3932), ("01:05:32", 3932),
    ("3-01:05:32", 3 * 86400 + 3932), ("12-00:00:00", 12 * 86400), ("  59:59 ", 3599),
])
def test_etime(text: str, seconds: int) -> None:
    assert parse_etime(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "1-2", "a:b", "1:2:3:4"])
def test_etime_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_etime(text)


# `ps -axo pid=,ppid=,stat=,etime=,args=` as macOS prints it (paths with spaces, long names).
MACOS_PS = """\
  612     1 S    2-03:14:07 /Users/op/.local/bin/claude --resume
  988   612 S      01:02:03 /bin/zsh -c npm test
 1201     1 S       45:10 /opt/homebrew/Cellar/node/22.1.0/bin/node /opt/homebrew/lib/node_modules/@anthropic-ai/claude-code/cli.js
 1202     1 Ss      00:12 /Applications/Visual Studio Code.app/Contents/MacOS/Electron /Users/op/.claude/x
 1300     1 S       10:00 /opt/homebrew/bin/node /opt/homebrew/lib/node_modules/@openai/codex/bin/codex.js
 1301  1300 S       09:59 /opt/homebrew/lib/node_modules/@openai/codex/vendor/aarch64-apple-darwin/codex/codex
 1400  1399 S+      00:00 grep claude
 1500     1 Z       00:03 (claude)
"""


def test_macos_ps_lines_become_sessions() -> None:
    procs = [p for p in map(parse_ps_line, MACOS_PS.splitlines()) if p]
    assert len(procs) == 8
    assert procs[0].age_s == 2 * 86400 + 3 * 3600 + 14 * 60 + 7
    sessions = find_sessions(procs, DEFAULT_AGENTS, {612: ProcessFacts(cwd="/Users/op/miyabi-private")})
    assert [(s.pid, s.agent) for s in sessions] == [(612, "claude"), (1201, "claude"),
                                                    (1300, "codex")]
    assert sessions[0].cwd == "/Users/op/miyabi-private" and sessions[1].cwd is None


@pytest.mark.parametrize(("args", "agent"), [
    ("claude", "claude"),
    ("claude --dangerously-skip-permissions", "claude"),
    ("/root/.local/bin/claude -p fix the bug", "claude"),
    ("node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --resume", "claude"),
    ("node --max-old-space-size=4096 /x/node_modules/@anthropic-ai/claude-code/cli.js", "claude"),
    ("bun /x/node_modules/@anthropic-ai/claude-code/cli.js", "claude"),
    ("codex exec fix it", "codex"),
    ("node /usr/lib/node_modules/@openai/codex/bin/codex.js", "codex"),
    ("grep claude", None),
    ("grep -c [c]laude", None),
    ("tmux new-session -d -s claude-build", None),
    ("vim /root/.claude/settings.json", None),
    ("less /root/notes/codex-review.txt", None),
    ("[claude] <defunct>", None),
    ("sh -s -- ~/miyabi-private origin main claude\ncodex 18", None),
    ("claude-build --watch", None),
    ("node /srv/app/server.js claude", None),
    ("python3 -m claude", None),
    ("", None),
])
def test_agent_of(args: str, agent: str | None) -> None:
    assert agent_of(args, DEFAULT_AGENTS.values()) == agent


def test_zombie_named_claude_is_not_a_session() -> None:
    (proc,) = [parse_ps_line("  77   70 Z    00:05 claude")]
    assert proc is not None
    assert find_sessions([proc], DEFAULT_AGENTS) == []


PORCELAIN = """\
# branch.oid 8bf7e09cf0000000000000000000000000000000
# branch.head feat/miyabi-society-reconstruction
# branch.upstream origin/feat/miyabi-society-reconstruction
# branch.ab +3 -1
1 M. N... 100644 100644 100644 aaa bbb src/staged.rs
1 .M N... 100644 100644 100644 aaa bbb src/unstaged.rs
1 MM N... 100644 100644 100644 aaa bbb src/both.rs
1 D. N... 100644 000000 000000 aaa 000 src/deleted.rs
2 R. N... 100644 100644 100644 aaa bbb R100 src/new name.rs\tsrc/old.rs
u UU N... 100644 100644 100644 100644 a b c conflicted.rs
? "weird\\nname.txt"
? untracked.txt
"""


def test_porcelain_v2_counts() -> None:
    repo = RepoState(path="/r")
    apply_porcelain_v2(repo, PORCELAIN.splitlines())
    assert repo.branch == "feat/miyabi-society-reconstruction"
    assert repo.head == "8bf7e09cf0000000000000000000000000000000"
    assert repo.upstream == "origin/feat/miyabi-society-reconstruction"
    assert (repo.ahead, repo.behind) == (3, 1)
    assert (repo.staged, repo.unstaged, repo.conflicted, repo.untracked) == (4, 2, 1, 2)
    assert repo.uncommitted == 8


def test_porcelain_v2_detached_and_initial() -> None:
    repo = RepoState(path="/r")
    apply_porcelain_v2(repo, ["# branch.oid (initial)", "# branch.head (detached)"])
    assert repo.branch is None and repo.head is None and repo.uncommitted == 0


def document(ps: str = "", status: str = "", rc: int = 0, repo_extra: str = "") -> str:
    return (
        "motd noise before the probe\n@@miyabi-probe 1\n@@system\nhostname=mugen\n"
        "os=Linux 6.1\nnow=1764100000\nuptime_s=86400\nload=17.40 15.20 12.80\ncpus=16\n"
        "mem_total=68719476736\nmem_available=34359738368\n"
        f"@@ps\n{ps}@@cwd\np101\nn/root/miyabi-private\n"
        f"@@repo\npath=/root/miyabi-private\nhead=abc\nhead_time=1764000000\n"
        f"head_subject=web-api Axum 0.8\nmain_ab=1 2\nstashes=1\nworktrees=2\n{repo_extra}"
        f"@@status\n{status}@@status_rc {rc}\n@@end\n")


def test_whole_document() -> None:
    ps = ("  101     1 Sl   3-00:00:00 claude\n  102     1 S    00:10 grep claude\n"
          "  103     1 S    00:20 node /x/@openai/codex/bin/codex.js\n"
          "  104   103 S    00:19 /x/@openai/codex/vendor/codex/codex\n")
    status = ("# branch.oid abc\n# branch.head feat/x\n# branch.upstream origin/feat/x\n"
              "# branch.ab +0 -0\n? a\n? b\n")
    report = parse_probe(document(ps, status), INV)
    assert report.hostname == "mugen" and report.cpu_count == 16
    assert report.load_avg == (17.4, 15.2, 12.8) and report.load_per_core == 1.09
    assert report.mem_available == 32 * 2**30
    assert [(s.pid, s.agent, s.cwd) for s in report.sessions] == [
        (101, "claude", "/root/miyabi-private"), (103, "codex", None)]
    repo = report.repo
    assert repo is not None and repo.branch == "feat/x" and repo.uncommitted == 2
    assert (repo.main_ahead, repo.main_behind, repo.stashes, repo.worktrees) == (1, 2, 1, 2)
    assert repo.head_subject == "web-api Axum 0.8" and repo.head_time == 1764000000


def test_slow_git_status_is_a_field_error_not_a_dead_host() -> None:
    report = parse_probe(document(rc=124), INV)
    assert report.repo is not None and report.repo.uncommitted is None
    assert report.repo_error == "git status timed out"
    assert report.load_avg is not None


def test_cut_short_or_foreign_output_is_refused() -> None:
    with pytest.raises(ProbeParseError, match="cut short"):
        parse_probe(document().replace("@@end\n", ""), INV)
    with pytest.raises(ProbeParseError, match="no probe output"):
        parse_probe("sh: 1: not found\n", INV)


def test_thresholds_and_words() -> None:
    ps = "".join(f"  {200 + i}     1 S    00:10 claude\n" for i in range(32))
    report = parse_probe(document(ps, "# branch.oid abc\n# branch.head feat/x\n"), INV)
    findings = evaluate(HostSpec("mac", max_sessions=8), report, INV)
    by_code = {f.code: f for f in findings}
    assert by_code["sessions"].level == "critical"
    assert by_code["sessions"].message == "32 claude sessions, max 8"
    assert by_code["load"].level == "warning" and by_code["load"].message == (
        "load 17.4 = 1.09/core")
    assert by_code["diverged"].message == "on feat/x, main is 2 commits ahead"
    assert findings[0].level == "critical"  # most severe first
    nine = parse_probe(document("".join(f"  {300 + i}     1 S 00:10 claude\n" for i in range(9))),
                       INV)
    (f,) = [f for f in evaluate(HostSpec("mac", max_sessions=8), nine, INV) if f.code == "sessions"]
    assert f.level == "warning" and f.message == "9 claude sessions, max 8"
    eight = parse_probe(document("".join(f"  {300 + i}     1 S 00:10 claude\n" for i in range(8))),
                        INV)
    assert not [f for f in evaluate(HostSpec("mac", max_sessions=8), eight, INV)
                if f.code == "sessions"]
