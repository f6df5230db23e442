"""`tell` on a lab host: a session waiting for input gets the message as typed input (the text
as data: quotes, `$( )` and backslashes arrive as they are, nothing runs); an ended headless run
is started again in its worktree with the agent's follow-up template (Claude Code `-p
--continue`, Codex `exec … resume --last`), the message as its prompt, and `runs` follows it;
a session that is working and does not ask is refused."""

from __future__ import annotations

import json
import time

import pytest

from miyabi_ctl.inventory.model import DEFAULT_AGENTS
from tests.lab.harness import Lab
from tests.lab.landing import LandLab, git, land_lab
from tests.lab.test_json_contract_lab import validate

TYPED = "yes — but keep C:\\ $(touch /root/pwned) `id` 'q' \"dq\" as they are"
MESSAGE = ("The check failed:\n  $(touch /root/pwned) `id` 'q' \"dq\" \\ %s\n"
           "Fix it, then commit.\n")
BACKLOG = [{"number": n, "title": f"Issue {n}"} for n in (931, 932, 933, 934)]


@pytest.fixture(scope="module")
def tl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> LandLab:
    return land_lab(lab, tmp_path_factory.mktemp("tell"), "ld-tell", BACKLOG)


def lifecycle(tl: LandLab, issue: int) -> str:
    doc = json.loads(tl.cli("runs", "--json").stdout)
    validate("runs", doc)
    return next(r["lifecycle"] for r in doc["runs"] if r["issue"] == issue)


def wait_for(tl: LandLab, issue: int, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (seen := lifecycle(tl, issue)) != state:
        assert time.monotonic() < deadline, f"#{issue} stayed {seen}, not {state}"
        time.sleep(0.5)


def test_a_waiting_session_gets_the_message_typed(tl: LandLab) -> None:
    tl.assign(931, "ask")
    wait_for(tl, 931, "waiting")
    proc = tl.cli("tell", "931", TYPED, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["mode"] == "typed"
    tl.wait_ended(931)
    # The agent read exactly the text, as one line of input, and committed it.
    assert git(tl.host.repo, "show", "refs/heads/issue/931:answer.txt") == TYPED
    assert not (tl.host.home / "pwned").exists()
    assert lifecycle(tl, 931) == "ended"


@pytest.mark.parametrize("issue, agent", [(932, "claude"), (933, "codex")])
def test_an_ended_run_is_started_again_with_the_follow_up(tl: LandLab, issue: int,
                                                          agent: str) -> None:
    tl.assign(issue, "fail", agent=agent)
    tl.wait_ended(issue)
    assert lifecycle(tl, issue) == "ended-empty"
    message = MESSAGE % ("x" * 2000)
    proc = tl.cli("tell", str(issue), message)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{agent} started again in" in proc.stdout
    assert lifecycle(tl, issue) == "running"
    tl.wait_ended(issue)
    first, second = tl.argv(issue, agent)
    assert any(arg.startswith(f"# Issue #{issue}: Issue {issue}") for arg in first)
    # The documented follow-up form, with the message as the prompt, byte for byte (but the
    # trailing newline, which "$(cat {prompt_file})" drops, as for the first prompt).
    prompt = message.rstrip("\n")
    assert second == ({"claude": ["-p", "--continue", prompt, "--permission-mode",
                                  "acceptEdits", "--allowedTools", "Bash(git:*)"],
                       "codex": ["exec", "--full-auto", "resume", "--last", prompt]}[agent])
    assert DEFAULT_AGENTS[agent].follow_up  # the defaults say so
    assert git(tl.host.repo, "show", f"refs/heads/issue/{issue}:followup.txt") == message.strip()
    assert lifecycle(tl, issue) == "ended"
    assert not (tl.host.home / "pwned").exists()


def test_a_working_session_is_not_typed_into(tl: LandLab) -> None:
    tl.assign(934, "idle")
    proc = tl.cli("tell", "934", "are you there?")
    assert proc.returncode == 1
    assert "is working, not visibly waiting for input" in proc.stderr
    log = (tl.run_dir(934) / "agent.log").read_text()
    assert "are you there?" not in log and not (tl.run_dir(934) / "message.md").exists()
    tl.host.sh("tmux kill-session -t =miyabi-934", check=False)
