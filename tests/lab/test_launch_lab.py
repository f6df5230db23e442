"""What the default launch templates really pass to the agent, on a real lab host: fake `claude`
and `codex` CLIs on the login PATH record their argv, working directory, MIYABI_* environment
and whether they have a terminal, for an issue whose title is `Fix C:\\ [/api] $(x) 'q' "dq"`
with a newline and whose body is 100 KB. Then `runs` on sessions that end without commits and
on an interactive one that waits for an answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from miyabi_ctl.dispatch.launch import prompt_text
from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for an agent CLI: records what it was given beside the run, then behaves as told by
# FAKE_MODE (in the environment of the template): idle like a long headless session; exit at once
# (status 3) as an agent that could not work; or, on a terminal, ask a question and wait.
FAKE_AGENT = r"""#!/bin/bash
out=$MIYABI_RUN_DIR/$(basename "$0")
printf '%s\0' "$@" >"$out-argv"
pwd >"$out-cwd"
for name in ${!MIYABI_*}; do printf '%s=%s\0' "$name" "${!name}"; done >"$out-env"
tty=; [ -t 0 ] && tty="stdin-tty "; [ -t 1 ] && tty="${tty}stdout-tty"
echo "$tty" >"$out-tty"
case ${FAKE_MODE:-idle} in
  exit) echo "cannot work here"; exit 3 ;;
  ask) printf 'Do you want to make this edit to lambda.tf? (y/n) '; read -r answer
       echo "got $answer"; exec sleep 100000 ;;
  *) exec -a "$(basename "$0")" /bin/sleep 100000 ;;
esac
"""

TITLE = "Fix C:\\ [/api] $(x) 'q' \"dq\"\nsecond line of the title"
BODY = "".join(f"line {i}: $(touch /root/pwned) `id` 'q' \"dq\" \\ {'x' * 60}\n"
               for i in range(950))  # 100 KB
assert 100_000 <= len(BODY.encode()) < 128 * 1024  # under Linux's 128 KiB per argument


def install_fake_agents(host: LabHost) -> None:
    for name in ("claude", "codex"):
        exe = host.home / ".local" / "bin" / name
        exe.write_text(FAKE_AGENT)
        exe.chmod(0o755)
    (host.home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


def recorded(host: LabHost, issue: int, agent: str) -> dict:
    run_dir = host.home / f".miyabi/worktrees/.runs/issue-{issue}"
    for _ in range(50):  # the session starts the agent a moment after launch returns
        if (run_dir / f"{agent}-tty").exists():
            break
        time.sleep(0.1)
    env = (run_dir / f"{agent}-env").read_text().split("\0")[:-1]
    return {"argv": (run_dir / f"{agent}-argv").read_text().split("\0")[:-1],
            "cwd": (run_dir / f"{agent}-cwd").read_text().strip(),
            "env": dict(item.split("=", 1) for item in env),
            "tty": (run_dir / f"{agent}-tty").read_text().split()}


def test_default_templates_pass_exactly_the_issue(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("ln-default", load=(0.1, 0.1, 0.1), cpus=4)
    install_fake_agents(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 801, "title": TITLE, "body": BODY, "priority": "P0"},
        {"number": 802, "title": TITLE, "body": BODY, "priority": "P1"}]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "ln-default": ssh_entry(host, lab, max_sessions=4)},
        extra=yaml.safe_dump({"dispatch": {"test_command": "pytest -q"}}))
    for issue, agent in ((801, "claude"), (802, "codex")):
        proc = cli("assign", str(issue), "ln-default", "--agent", agent, "--apply", "--yes",
                   "--fleet", str(fleet), "--backlog", str(backlog), state=tmp_path)
        assert proc.returncode == 0, proc.stderr + proc.stdout

    for issue, agent in ((801, "claude"), (802, "codex")):
        wt = f"/root/.miyabi/worktrees/issue-{issue}"
        prompt = prompt_text(issue, TITLE, BODY, f"issue/{issue}").rstrip("\n")
        seen = recorded(host, issue, agent)
        assert seen["argv"] == (
            ["-p", prompt, "--permission-mode", "acceptEdits", "--allowedTools", "Bash(git:*)",
             "Bash(pytest -q:*)"] if agent == "claude" else ["exec", "--full-auto", prompt])
        assert seen["cwd"] == wt
        run_dir = f"/root/.miyabi/worktrees/.runs/issue-{issue}"
        assert seen["env"] == {
            "MIYABI_ISSUE": str(issue), "MIYABI_TITLE": TITLE, "MIYABI_WORKTREE": wt,
            "MIYABI_BRANCH": f"issue/{issue}", "MIYABI_RUN_DIR": run_dir,
            "MIYABI_PROMPT_FILE": f"{run_dir}/prompt.md", "MIYABI_TEST_COMMAND": "pytest -q",
            "MIYABI_TEST_TOOL": "Bash(pytest -q:*)"}
        # Headless: output goes to the log; stdin stays the pane's terminal, so an agent that
        # does ask can be answered by attaching.
        assert seen["tty"] == ["stdin-tty"]
    assert not (host.home / "pwned").exists() and not Path("/root/pwned").exists()
    host.sh("tmux kill-server", check=False)


def test_runs_tells_ended_without_commits_and_waiting_for_input(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("ln-runs", load=(0.1, 0.1, 0.1), cpus=4)
    install_fake_agents(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 811, "title": "Quits", "priority": "P0"},
        {"number": 812, "title": "Asks", "priority": "P0"},
        {"number": 813, "title": "Works", "priority": "P0"}]}))
    fleet_doc = {"agents": {
        "claude": {"launch": 'FAKE_MODE=ask claude "$(cat {prompt_file})" '
                             "</dev/tty >/dev/tty 2>&1"},  # the documented interactive form
        "codex": {"launch": 'FAKE_MODE=exit codex exec --full-auto "$(cat {prompt_file})"'},
        "idle": {"launch": 'claude -p "$(cat {prompt_file})"'}}}
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "ln-runs": ssh_entry(host, lab, max_sessions=4)}, extra=yaml.safe_dump(fleet_doc))
    for issue, agent in ((812, "claude"), (813, "idle")):
        proc = cli("assign", str(issue), "ln-runs", "--agent", agent, "--apply", "--yes",
                   "--fleet", str(fleet), "--backlog", str(backlog), state=tmp_path)
        assert proc.returncode == 0, proc.stderr + proc.stdout
    # An agent that gives up at once fails the launch's one-second check; one that gives up a
    # little later is a launched run that ended without doing anything.
    fleet_doc["agents"]["codex"]["launch"] = (
        'sleep 2; FAKE_MODE=exit codex exec --full-auto "$(cat {prompt_file})"')
    fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
        "ln-runs": ssh_entry(host, lab, max_sessions=4)}, extra=yaml.safe_dump(fleet_doc))
    proc = cli("assign", "811", "ln-runs", "--agent", "codex", "--apply", "--yes",
               "--fleet", str(fleet), "--backlog", str(backlog), state=tmp_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert recorded(host, 812, "claude")["tty"] == ["stdin-tty", "stdout-tty"]
    deadline = time.monotonic() + 20
    while host.sh("tmux has-session -t =miyabi-811", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the quitting agent did not quit"
        time.sleep(0.2)

    proc = cli("runs", "--json", "--fleet", str(fleet), state=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = {r["issue"]: r for r in json.loads(proc.stdout)["runs"]}
    assert (runs[811]["session_alive"], runs[811]["condition"], runs[811]["exit_status"]) == (
        False, "ended without commits", 3)
    assert (runs[812]["session_alive"], runs[812]["condition"]) == (True, "waiting for input")
    assert (runs[813]["session_alive"], runs[813]["condition"]) == (True, "unknown")
    table = cli("runs", "--fleet", str(fleet), state=tmp_path).stdout
    assert "miyabi-811 gone, ended without commits (exit 3)" in table
    assert "miyabi-812 alive, waiting for input" in table

    # Answered, the interactive session is no longer waiting.
    host.sh("tmux send-keys -t =miyabi-812: y Enter")
    time.sleep(0.5)
    runs = {r["issue"]: r for r in json.loads(
        cli("runs", "--json", "--fleet", str(fleet), state=tmp_path).stdout)["runs"]}
    assert runs[812]["condition"] == "unknown"
    host.sh("tmux kill-server", check=False)
