"""`status`, `check` and `sessions` against the plan's fleet on real sshd, git and processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.status.collect import collect_status
from tests.lab.fleets import FEATURE, PlanFleet, ssh_entry, write_fleet
from tests.lab.harness import Lab, LabHost


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def plan_json(plan_fleet: PlanFleet) -> dict:
    proc = cli("status", "--json", "--fleet", str(plan_fleet.fleet_file))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    return {h["name"]: h for h in doc["hosts"]} | {"_doc": doc}


def test_json_has_documented_fields(plan_json: dict) -> None:
    doc = plan_json["_doc"]
    assert doc["generated_at"].endswith("+00:00")
    for name in ("pixel", "macbook", "mugen", "majin"):
        host = plan_json[name]
        for key in ("name", "reachable", "error", "status", "load_avg", "cpu_count",
                    "load_per_core", "memory", "sessions", "session_list", "repo", "problems"):
            assert key in host, (name, key)
        assert host["reachable"] is True and host["error"] is None, host
        assert set(host["memory"]) >= {"total_bytes", "available_bytes"}
        assert host["memory"]["total_bytes"] > host["memory"]["available_bytes"] > 0
        for key in ("path", "branch", "head", "head_subject", "head_time", "upstream", "ahead",
                    "behind", "main_ahead", "main_behind", "staged", "unstaged", "untracked",
                    "conflicted", "uncommitted", "stashes", "worktrees"):
            assert key in host["repo"], (name, key)


def test_macbook_has_exactly_32_claude_sessions_decoys_excluded(plan_json: dict,
                                                                plan_fleet: PlanFleet) -> None:
    mac = plan_json["macbook"]
    assert mac["sessions"] == {"claude": 32, "codex": 0}
    assert len(mac["session_list"]) == 32
    pids = {s["pid"] for s in mac["session_list"]}
    assert not pids & set(plan_fleet.decoys)
    assert {s["agent"] for s in mac["session_list"]} == {"claude"}
    node = [s for s in mac["session_list"] if s["cmd"].startswith("node ")]
    assert len(node) == 16 and all("@anthropic-ai/claude-code/cli.js" in s["cmd"] for s in node)
    in_repo = [s for s in mac["session_list"] if s["cwd"] == "/root/miyabi-private"]
    assert len(in_repo) == 4
    assert all(isinstance(s["age_s"], int) and s["age_s"] >= 0 for s in mac["session_list"])
    assert mac["status"] == "critical"
    assert "32 claude sessions, max 8" in mac["problems"]
    assert mac["repo"]["branch"] == FEATURE
    assert f"on {FEATURE}, main is 2 commits ahead" in mac["problems"]


def test_mugen_load_17_4_on_16_cores(plan_json: dict) -> None:
    mugen = plan_json["mugen"]
    assert mugen["load_avg"] == [17.4, 15.2, 12.8]
    assert mugen["cpu_count"] == 16
    assert mugen["load_per_core"] == pytest.approx(1.09, abs=0.005)
    assert "load 17.4 = 1.09/core" in mugen["problems"]
    assert mugen["sessions"] == {"claude": 2, "codex": 1}
    assert mugen["status"] == "warning"
    assert mugen["repo"]["main_ahead"] == 1 and mugen["repo"]["main_behind"] == 2


def test_majin_300_uncommitted_on_main(plan_json: dict) -> None:
    majin = plan_json["majin"]
    repo = majin["repo"]
    assert repo["branch"] == "main"
    assert repo["uncommitted"] == 300 and repo["untracked"] == 300
    assert repo["staged"] == 0 and repo["unstaged"] == 0 and repo["conflicted"] == 0
    assert majin["status"] == "critical"
    assert "300 uncommitted files" in majin["problems"]
    assert majin["sessions"] == {"claude": 0, "codex": 0}


def test_pixel_is_the_local_controller(plan_json: dict, plan_fleet: PlanFleet) -> None:
    pixel = plan_json["pixel"]
    assert pixel["role"] == "maestro"
    assert pixel["repo"]["path"] == str(plan_fleet.pixel_repo)
    assert pixel["repo"]["branch"] == "main" and pixel["repo"]["uncommitted"] == 0
    assert pixel["repo"]["upstream"] == "origin/main"
    assert pixel["repo"]["ahead"] == 0 and pixel["repo"]["behind"] == 0
    assert pixel["repo"]["head_subject"] == "plan"
    # The controller's load is this machine's real load, busy or not: only the repo is asserted.
    assert [f for f in pixel["findings"] if f["code"] != "load"] == []


def test_table_names_each_problem_on_its_host(plan_fleet: PlanFleet) -> None:
    proc = cli("status", "--fleet", str(plan_fleet.fleet_file), env={"NO_COLOR": "1",
                                                                     "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:] if line.strip()}
    assert "\x1b[" not in proc.stdout
    assert "32 claude sessions, max 8" in rows["macbook"]
    assert "load 17.4 = 1.09/core" in rows["mugen"]
    assert "300 uncommitted files" in rows["majin"]
    assert rows["pixel"].split()[1:3] == ["maestro", "main"]


def test_check_is_critical_and_says_why(plan_fleet: PlanFleet) -> None:
    proc = cli("check", "--fleet", str(plan_fleet.fleet_file))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("MIYABI CRITICAL - ")
    summary, perf = line.split(" | ")
    assert "macbook CRITICAL: 32 claude sessions, max 8" in summary
    assert "majin CRITICAL: 300 uncommitted files" in summary
    assert "mugen WARNING: load 17.4 = 1.09/core" in summary
    # thresholds as Nagios ranges reach check's state (tests/unit/test_check.py)
    assert "'mugen_load'=17.4;;;0;" in perf.split()
    assert "'mugen_load_per_core'=1.09;@1:;@2:;0;" in perf.split()
    assert "'macbook_sessions'=32;8;15;0;" in perf.split()
    assert "'majin_uncommitted'=300;9;99;0;" in perf.split()


def test_check_on_healthy_host_is_ok(lab: Lab, tmp_path: Path) -> None:
    calm = lab.add_host("st-calm", load=(0.5, 0.4, 0.3), cpus=2)
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"calm": ssh_entry(calm, lab)})
    proc = cli("check", "--fleet", str(fleet_file))
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout == ("MIYABI OK - calm ok | 'calm_load'=0.5;;;0; "
                           "'calm_load_per_core'=0.25;@1:;@2:;0; 'calm_sessions'=0;;;0; "
                           "'calm_uncommitted'=0;9;99;0;\n")


def test_sessions_lists_every_session(plan_fleet: PlanFleet) -> None:
    proc = cli("sessions", "--json", "--fleet", str(plan_fleet.fleet_file), "macbook", "mugen")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    by_host: dict[str, list[dict]] = {}
    for s in doc["sessions"]:
        by_host.setdefault(s["host"], []).append(s)
    assert len(by_host["macbook"]) == 32
    assert sorted(s["agent"] for s in by_host["mugen"]) == ["claude", "claude", "codex"]
    assert all(s["cwd"] == "/root/miyabi-private" for s in by_host["mugen"])
    ages = [s["age_s"] for s in by_host["macbook"]]
    assert ages == sorted(ages, reverse=True)  # oldest first: what a prune looks at first


def test_killed_host_is_unreachable_others_unaffected(lab: Lab, tmp_path: Path) -> None:
    doomed, steady = lab.add_host("st-doomed"), lab.add_host("st-steady")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "doomed": ssh_entry(doomed, lab), "steady": ssh_entry(steady, lab)})
    inventory = load_inventory(fleet_file)
    with Fleet(inventory) as fleet:
        first = {h.name: h for h in collect_status(fleet).hosts}
        assert first["doomed"].reachable and first["steady"].reachable
        doomed.kill()  # mid-run: the connection is open and reused, then the host dies
        started = time.monotonic()
        second = {h.name: h for h in collect_status(fleet).hosts}
        took = time.monotonic() - started
    assert took < inventory.ssh.connect_timeout
    assert second["doomed"].level == "unreachable"
    assert second["doomed"].error is not None and second["doomed"].error.kind == "unreachable"
    assert second["steady"].level == "ok" and second["steady"].report is not None


def test_silent_host_is_reported_within_connect_timeout(lab: Lab, tmp_path: Path) -> None:
    """A host that accepts TCP but never speaks SSH (hung sshd) costs one connect timeout."""
    steady = lab.add_host("st-steady2")
    listener = socket.socket()
    listener.bind((f"127.0.{lab.net}.254", 22))
    listener.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    try:
        fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
            "hung": {"ssh": f"root@127.0.{lab.net}.254", "identity_file": str(lab.client_key)},
            "steady": ssh_entry(steady, lab)})
        with Fleet(load_inventory(fleet_file), connect_timeout=1.0) as fleet:
            started = time.monotonic()
            hosts = {h.name: h for h in collect_status(fleet).hosts}
            took = time.monotonic() - started
    finally:
        listener.close()
        for conn in accepted:
            conn.close()
    assert hosts["hung"].level == "unreachable"
    assert hosts["hung"].error is not None and "handshake" in hosts["hung"].error.message
    assert hosts["steady"].level == "ok"
    assert 1.0 <= took < 1.0 + 1.5  # one connect timeout (plus slack for a busy machine), not 30 s


def test_unknown_host_key_is_refused_with_instructions(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-unknown-key")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)},
                             known_hosts=empty)
    proc = cli("status", "--json", "--fleet", str(fleet_file))
    h = json.loads(proc.stdout)["hosts"][0]
    assert h["status"] == "unreachable" and h["error_kind"] == "hostkey"
    assert "unknown host key" in h["error"] and "SHA256:" in h["error"]
    assert "ssh-keyscan" in h["error"] and "accept-new" in h["error"]
    assert empty.read_text() == ""  # nothing trusted silently


def test_changed_host_key_is_refused_even_with_accept_new(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-changed-key")
    other = lab.add_host("st-other-key")
    forged = tmp_path / "known_hosts"
    forged.write_text(f"{host.address} {other.host_pub}\n")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)},
                             known_hosts=forged, strict="accept-new")
    h = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert h["error_kind"] == "hostkey" and "HOST KEY CHANGED" in h["error"]
    assert f"`ssh-keygen -f {forged} -R {host.address}`" in h["error"]  # names the file


def test_accept_new_trusts_and_records_a_new_key(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-accept-new")
    known = tmp_path / "known_hosts"
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)},
                             known_hosts=known, strict="accept-new")
    h = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert h["reachable"], h["error"]
    assert known.read_text().split()[:2] == [host.address, "ssh-ed25519"]
    assert known.read_text().split()[2] == host.host_pub.split()[1]


def test_refused_key_is_an_auth_error(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-wrong-key")
    wrong = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "h": {"ssh": f"root@{host.address}", "identity_file": str(wrong)}})
    h = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert h["error_kind"] == "auth" and str(wrong) in h["error"]


def test_proxy_jump_reaches_a_host_through_another(lab: Lab, tmp_path: Path) -> None:
    jump = lab.add_host("st-jump")
    inner = lab.add_host("st-inner", load=(3.0, 2.0, 1.0))
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "inner": ssh_entry(inner, lab, proxy_jump="st-jump")})
    inner_sshd_log_before = jump.sh("ls /proc | wc -l").stdout
    proc = cli("status", "--json", "--fleet", str(fleet_file))
    h = json.loads(proc.stdout)["hosts"][0]
    assert h["reachable"], h["error"]
    assert h["load_avg"][0] == 3.0
    assert inner_sshd_log_before  # the jump host was up throughout


def test_hostile_repo_path_is_data_not_code(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-hostile")
    path = "~/x'; touch /root/pwned; echo '$(touch /root/pwned2)`touch /root/pwned3`"
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "h": ssh_entry(host, lab, repo_path=path)})
    h = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert h["reachable"], h["error"]
    assert h["repo"] is None and "no such directory" in h["repo_error"]
    assert not any((host.home / f).exists() for f in ("pwned", "pwned2", "pwned3"))


def test_missing_repo_is_reported_per_field(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-norepo", clone=False)
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)})
    h = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert h["reachable"] and h["load_avg"] is not None and h["repo"] is None
    assert h["repo_error"].startswith("no such directory")
    assert h["status"] == "warning"


def test_watch_refreshes_in_place_reusing_connections(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-watch")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)})
    inventory = load_inventory(fleet_file)
    with Fleet(inventory) as fleet:
        collect_status(fleet)
        transport = fleet.hosts[0]._transport  # type: ignore[attr-defined]
        host.set_load(9.0, 1.0, 1.0)
        again = collect_status(fleet)
        assert fleet.hosts[0]._transport is transport  # type: ignore[attr-defined]
    assert again.hosts[0].report is not None and again.hosts[0].report.load_avg == (9.0, 1.0, 1.0)


def test_check_counts_an_unreachable_host_as_critical(lab: Lab, tmp_path: Path) -> None:
    gone, fine = lab.add_host("st-check-gone"), lab.add_host("st-check-fine")
    gone.kill()
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "gone": ssh_entry(gone, lab), "fine": ssh_entry(fine, lab)})
    proc = cli("check", "--fleet", str(fleet_file))
    assert proc.returncode == 2
    assert proc.stdout.startswith("MIYABI CRITICAL - gone CRITICAL: cannot connect to ")
    assert "'fine_load'=" in proc.stdout and "'gone_load'" not in proc.stdout


def test_watch_in_a_terminal_redraws_with_new_figures(lab: Lab, tmp_path: Path) -> None:
    """The real CLI in a real terminal (tmux): the table refreshes in place."""
    host = lab.add_host("st-tty-watch", load=(4.25, 1.0, 1.0))
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"watched": ssh_entry(host, lab)})
    socket_name = f"miyabi-test-{host.address}"
    tmux = ["tmux", "-L", socket_name]
    # env -u: a COLUMNS inherited from the test runner would override the terminal's real width.
    command = (f"env -u COLUMNS -u LINES {sys.executable} -m miyabi_ctl status --watch 0.3 "
               f"--fleet {fleet_file}")
    subprocess.run([*tmux, "new-session", "-d", "-x", "220", "-y", "15", command], check=True)

    def screen_until(text: str) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p"], capture_output=True,
                                    text=True).stdout
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared:\n{screen}")

    try:
        first = screen_until("4.25")
        assert "watched" in first and "Ctrl-C to stop" in first
        host.set_load(7.75, 1.0, 1.0)
        second = screen_until("7.75")
        assert "4.25" not in second  # redrawn in place, not appended below
        assert second.count("watched") == 1
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


def test_ssh_agent_keys_are_used(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("st-agent")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        env = {"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": str(sock), "HOME": str(tmp_path)}
        subprocess.run(["ssh-add", "-q", str(lab.client_key)], env=env, check=True,
                       capture_output=True)
        fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
            "h": {"ssh": f"root@{host.address}"}})  # no identity_file: only the agent has the key
        h = json.loads(cli("status", "--json", "--fleet", str(fleet_file),
                           env={**env, "PYTHONPATH": ":".join(sys.path)}).stdout)["hosts"][0]
        assert h["reachable"], h["error"]
        no_agent = json.loads(cli("status", "--json", "--fleet", str(fleet_file),
                                  env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                       "PYTHONPATH": ":".join(sys.path)}).stdout)["hosts"][0]
        assert no_agent["error_kind"] == "auth"
    finally:
        agent.terminate()
        agent.wait(5)


def _freeze(host: LabHost, sig: signal.Signals) -> None:
    """Signal every process of a lab host from outside (SIGSTOP: a hung machine, no TCP reset)."""
    ns = os.readlink(f"/proc/{host.init_pid}/ns/pid")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{entry}/ns/pid") == ns:
                    os.kill(int(entry), sig)


def test_a_hung_host_costs_one_command_timeout_not_forever(lab: Lab, tmp_path: Path) -> None:
    hung, fine = lab.add_host("st-frozen"), lab.add_host("st-unfrozen")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "hung": ssh_entry(hung, lab), "fine": ssh_entry(fine, lab)})
    with Fleet(load_inventory(fleet_file), command_timeout=2.0) as fleet:
        assert all(h.reachable for h in collect_status(fleet).hosts)  # connections now open
        _freeze(hung, signal.SIGSTOP)
        try:
            started = time.monotonic()
            second = {h.name: h for h in collect_status(fleet).hosts}
            took = time.monotonic() - started
        finally:
            _freeze(hung, signal.SIGCONT)
    # It hangs while opening the channel (connect timeout) or running the probe (command
    # timeout); either way it is reported, bounded, and the other host is unaffected.
    assert second["hung"].error is not None and second["hung"].error.kind in ("timeout",
                                                                             "unreachable")
    assert second["fine"].level == "ok"
    assert took < 3.0 + 1.0 + 2.0  # connect timeout + watchdog slack + a busy machine


def test_a_bad_ssh_config_block_fails_only_its_host(lab: Lab, tmp_path: Path) -> None:
    good, bad = lab.add_host("st-cfg-good"), lab.add_host("st-cfg-bad")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host badport\n  HostName {bad.address}\n  Port 22x\n"
                      f"Host slowtimeout\n  HostName {good.address}\n  ConnectTimeout 2s\n")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {
        "bad": {"ssh": "root@badport", "identity_file": str(lab.client_key)},
        "good": {"ssh": "root@slowtimeout", "identity_file": str(lab.client_key)}},
        extra="")
    text = fleet_file.read_text().replace(str(lab.ssh_config()), str(config))
    fleet_file.write_text(text)
    hosts = {h["name"]: h for h in json.loads(cli("status", "--json", "--fleet",
                                                  str(fleet_file)).stdout)["hosts"]}
    assert hosts["good"]["reachable"], hosts["good"]["error"]
    assert hosts["bad"]["status"] == "unreachable"
    assert "ssh config: Port '22x' is not a port number" in hosts["bad"]["error"]
