"""Notifications on real hosts: lab hosts going critical, unreachable and back under cron's
`check`, and dispatched stand-in agents that commit and end, end without commits, ask a question
or fail to start — each change arriving once, as one message per command, at a local HTTP server
acting as the Apprise json:// target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]

# A stand-in agent: fails at once (FAKE_MODE=exit, a launch that does not start), else waits
# for the test's go-file, then commits and ends, ends without a commit, or asks and waits.
AGENT = r"""#!/bin/bash
[ "$FAKE_MODE" = exit ] && { echo "cannot work here"; exit 3; }
while [ ! -e "$HOME/go-$MIYABI_ISSUE" ]; do sleep 0.2; done
case $FAKE_MODE in
  commit) echo "work" >>notes.txt && git add notes.txt && git commit -qm "work on #$MIYABI_ISSUE"
          exit 0 ;;
  empty) exit 0 ;;
  ask) printf 'Do you want to make this edit to lambda.tf? (y/n) '; read -r answer
       exec sleep 100000 ;;
esac
"""
HOSTILE = "Fix C:\\ [/api] $(x) <b>'q'</b> \"dq\"\nsecond line"


def cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=180, env=env, stdin=subprocess.DEVNULL)


def test_hosts_worse_and_back_each_told_once(lab: Lab, tmp_path: Path) -> None:
    a, b = lab.add_host("nt-a", cpus=4), lab.add_host("nt-b", cpus=4)
    with Receiver() as target:
        fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
            "nt-a": ssh_entry(a, lab), "nt-b": ssh_entry(b, lab)},
            extra=yaml.safe_dump({"notify": [target.url]}))

        def check(*hosts: str) -> int:
            proc = cli("check", *hosts, "--fleet", str(fleet), state=tmp_path)
            assert proc.stderr == "" and proc.stdout.startswith("MIYABI "), proc
            return proc.returncode

        assert check() == 0 and target.messages == []  # the baseline
        a.set_load(9.0, 8.0, 7.0)  # 2.25 per core on 4 CPUs
        assert check() == 2
        assert check() == 2  # cron, a minute later: nothing new
        b.kill()
        assert check() == 2
        a.set_load(0.1, 0.1, 0.1)
        assert check("nt-a") == 0  # looks at nt-a only: nt-b is not "recovered"
        b.restart()
        proc = cli("status", "--json", "--fleet", str(fleet), state=tmp_path)
        assert proc.returncode == 0 and proc.stderr == ""
        assert check() == 0
    bodies = target.bodies()
    assert len(bodies) == 4, bodies
    assert bodies[0] == ["nt-a: ok → critical: load 9 = 2.25/core"]
    assert len(bodies[1]) == 1 and bodies[1][0].startswith("nt-b: ok → unreachable: "), bodies
    assert bodies[2] == ["nt-a: critical → ok"]
    assert bodies[3] == ["nt-b: unreachable → ok"]
    assert [m["title"] for m in target.messages] == [
        "miyabi-ctl: nt-a critical", "miyabi-ctl: nt-b unreachable", "miyabi-ctl: nt-a ok",
        "miyabi-ctl: nt-b ok"]
    assert target.messages[3]["message"].endswith(f"(seen by miyabi-ctl status; fleet {fleet})")


def _wait(what: str, done: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.2)


def _session_gone(host: LabHost, issue: int) -> bool:
    return host.sh(f"tmux has-session -t =miyabi-{issue}", check=False).returncode != 0


def test_runs_ending_waiting_and_failing_each_told_once(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("nt-runs", cpus=4)
    for name in ("committer", "quitter", "asker", "dud"):
        exe = host.home / ".local" / "bin" / name
        exe.write_text(AGENT)
        exe.chmod(0o755)
    (host.home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 901, "title": "Commits", "priority": "P0"},
        {"number": 902, "title": "Quits", "priority": "P0"},
        {"number": 903, "title": HOSTILE, "priority": "P0"},
        {"number": 904, "title": "Duds", "priority": "P0"}]}))
    agents = {
        "committer": {"launch": 'FAKE_MODE=commit committer -p "$(cat {prompt_file})"'},
        "quitter": {"launch": 'FAKE_MODE=empty quitter -p "$(cat {prompt_file})"'},
        "asker": {"launch": 'FAKE_MODE=ask asker "$(cat {prompt_file})" </dev/tty >/dev/tty 2>&1'},
        "dud": {"launch": 'FAKE_MODE=exit dud -p "$(cat {prompt_file})"'}}
    with Receiver() as target:
        fleet = write_fleet(tmp_path / "fleet.yaml", lab, {
            "nt-runs": ssh_entry(host, lab, max_sessions=6)},
            extra=yaml.safe_dump({"agents": agents, "notify": [target.url]}))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return cli(*args, "--fleet", str(fleet), state=tmp_path)

        for issue, agent in ((901, "committer"), (902, "quitter"), (903, "asker")):
            proc = run("assign", str(issue), "nt-runs", "--agent", agent, "--apply", "--yes",
                       "--backlog", str(backlog))
            assert proc.returncode == 0 and proc.stderr == "", proc
        proc = run("runs", "--json")
        assert proc.returncode == 0 and proc.stderr == "", proc
        assert {r["issue"] for r in json.loads(proc.stdout)["runs"]} >= {901, 902, 903}
        assert target.messages == []  # the runs' baseline: all running

        for issue in (901, 902, 903):
            (host.home / f"go-{issue}").touch()
        _wait("901 and 902 ending", lambda: _session_gone(host, 901) and _session_gone(host, 902))
        _wait("903 asking", lambda: "(y/n)" in host.sh(
            "tmux capture-pane -p -t =miyabi-903:", check=False).stdout)
        for _ in range(2):  # the second look finds nothing new
            proc = run("runs")
            assert proc.returncode == 0 and proc.stderr == "", proc
        assert target.bodies() == [[
            '#901 "Commits" on nt-runs: running → ended with 1 commit (ready to land)',
            '#902 "Quits" on nt-runs: running → ended without commits',
            '#903 "Fix C:\\ [/api] $(x) <b>\'q\'</b> "dq"\\nsecond line" on nt-runs: '
            "running → waiting for input",
        ]]
        assert target.messages[0]["title"] == "miyabi-ctl: #901 ended, #902 ended-empty, " \
                                              "#903 waiting"

        proc = run("assign", "904", "nt-runs", "--agent", "dud", "--apply", "--yes",
                   "--backlog", str(backlog))
        assert proc.returncode == 1 and proc.stderr == "", proc
        assert target.bodies()[1:] == [['#904 "Duds" on nt-runs: launch failed']]

        host.sh("tmux kill-server", check=False)
        host.kill()
        proc = run("runs")  # the host does not answer: its runs are not looked at (nor the
        assert proc.returncode == 1, proc  # claims, read through it: said on stderr)
        assert "warning" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
        assert len(target.messages) == 2  # no "ended", nothing "recovered"
        proc = run("issues", "--backlog", str(backlog))
        assert proc.returncode == 0 and "notification" not in proc.stderr, proc
        assert len(target.messages) == 2
        host.restart()  # back, without the asking agent's session (killed with the tmux server)
        proc = run("runs")
        assert proc.returncode == 0 and proc.stderr == "", proc
    assert target.bodies()[2:] == [[  # 901 and 902 are not told again
        '#903 "Fix C:\\ [/api] $(x) <b>\'q\'</b> "dq"\\nsecond line" on nt-runs: '
        "waiting for input → ended without commits"]]
