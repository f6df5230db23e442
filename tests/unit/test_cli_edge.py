"""The CLI's edge, run as the operator and cron run it (a subprocess, no lab): check's own
failures, the documented option forms, stderr without library noise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miyabi_ctl.cli.edge import with_watch_default


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def local_fleet(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(f"repo: {{path: {tmp_path}}}\nhosts:\n  me: {{transport: local}}\n")
    return path


@pytest.mark.parametrize("args, words", [
    (["--timeout", "abc"], "Invalid value for '--timeout'"),
    (["--bogus"], "No such option: --bogus"),
    (["--forks", "0"], "--forks"),
    (["no-such-host"], "unknown host 'no-such-host'"),
])
def test_check_usage_errors_are_unknown_not_critical(local_fleet: Path, args: list[str],
                                                     words: str) -> None:
    """Click exits 2 on a usage error, which Nagios reads as CRITICAL: check says UNKNOWN (3)."""
    proc = cli("check", "--fleet", str(local_fleet), *args)
    assert proc.returncode == 3, proc
    assert proc.stdout.startswith("MIYABI UNKNOWN - ") and words in proc.stdout
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


@pytest.mark.parametrize("content", [b"hosts:\n  a: \xff\xfe\n", b"hosts: [\n  a\n", b""])
def test_check_on_a_bad_fleet_file_is_one_unknown_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(content)
    proc = cli("check", "--fleet", str(path))
    assert (proc.returncode, proc.stderr) == (3, "")
    assert proc.stdout.startswith(f"MIYABI UNKNOWN - {path}:") and proc.stdout.count("\n") == 1
    assert "|" not in proc.stdout


def test_check_without_a_fleet_file_does_not_check_this_machine(tmp_path: Path) -> None:
    """cron must name a fleet; the local-only fallback of `status` is not a monitoring target."""
    env = {k: v for k, v in os.environ.items() if k != "MIYABI_FLEET"}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    proc = cli("check", cwd=tmp_path, env=env)
    assert (proc.returncode, proc.stderr) == (3, "")
    assert proc.stdout.startswith("MIYABI UNKNOWN - no fleet.yaml found") and "--fleet" in proc.stdout
    doc = json.loads(cli("check", "--json", cwd=tmp_path, env=env).stdout)
    assert doc["state"] == "UNKNOWN" and doc["exit_code"] == 3


def test_check_help_still_exits_0() -> None:
    proc = cli("check", "--help")
    assert proc.returncode == 0 and "monitoring-plugins" in proc.stdout


def test_check_json_usage_error_is_the_documented_unknown_document(local_fleet: Path) -> None:
    proc = cli("check", "--json", "--timeout", "abc", "--fleet", str(local_fleet))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 3 and doc["state"] == "UNKNOWN" and doc["exit_code"] == 3
    assert doc["line"].startswith("MIYABI UNKNOWN - ") and "--timeout" in doc["error"]


def test_check_on_a_local_host_is_ok(local_fleet: Path) -> None:
    proc = cli("check", "--fleet", str(local_fleet))
    assert proc.stderr == "" and proc.stdout.startswith("MIYABI ")
    assert "'me_sessions'=" in proc.stdout


@pytest.mark.parametrize("args, expected", [
    (["status", "--watch"], ["status", "--watch", "2"]),
    (["status", "-w"], ["status", "-w", "2"]),
    (["status", "--watch", "5"], ["status", "--watch", "5"]),
    (["status", "-w", "0.5", "mugen"], ["status", "-w", "0.5", "mugen"]),
    (["status", "--watch", "mugen"], ["status", "--watch", "2", "mugen"]),
    (["status", "--watch", "--json"], ["status", "--watch", "2", "--json"]),
    (["status", "--watch=3"], ["status", "--watch=3"]),
    (["sessions", "-w"], ["sessions", "-w"]),
])
def test_watch_gets_its_default_only_when_no_number_follows(args: list[str],
                                                            expected: list[str]) -> None:
    assert with_watch_default(args) == expected


@pytest.mark.parametrize("args, every", [(["--watch"], "2s"), (["--watch", "5"], "5s"),
                                         (["-w"], "2s"), (["-w", "0.4"], "0.4s")])
def test_every_documented_watch_form_runs(local_fleet: Path, args: list[str], every: str) -> None:
    """The real CLI with the installed typer (0.29 dropped optional option values)."""
    proc = subprocess.Popen([sys.executable, "-m", "miyabi_ctl", "status", *args, "--fleet",
                             str(local_fleet)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    time.sleep(2.5)
    assert proc.poll() is None, proc.communicate()  # still refreshing, not refused
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and err == ""
    assert f"every {every}" in out and "me" in out


@pytest.fixture
def silent_host(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A loopback listener that accepts TCP and never speaks SSH (a hung sshd)."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text("")
    fleet = tmp_path / "silent.yaml"
    fleet.write_text(f"ssh: {{config: null, known_hosts: {known}, connect_timeout: 1}}\nhosts:\n"
                     + "".join(f"  hung{i}: {{ssh: 'root@127.0.0.1:{port}'}}\n" for i in range(3)))
    yield fleet
    listener.close()
    for conn in accepted:
        conn.close()


@pytest.mark.parametrize("command", ["status", "check", "sessions"])
def test_a_host_that_never_speaks_ssh_leaves_stderr_empty(silent_host: Path, command: str) -> None:
    """paramiko logs a traceback per failed banner from its reader thread; cron would mail them."""
    proc = cli(command, "--fleet", str(silent_host))
    # status adds its own first-run hint (no SSH host answered); nothing from a library
    assert proc.stderr == "" or (command == "status" and proc.stderr.startswith("No SSH host")
                                 and "Traceback" not in proc.stderr
                                 and "paramiko" not in proc.stderr)
    assert "hung0" in proc.stdout and "handshake" in proc.stdout


def test_debug_shows_the_library_log_and_no_closed_descriptor(silent_host: Path) -> None:
    """With --debug the log is there (so the quiet default is a choice, not an accident); the
    socket is never closed under paramiko's reader thread (no 'Bad file descriptor')."""
    for _ in range(3):
        proc = cli("--debug", "check", "--fleet", str(silent_host))
        assert "paramiko.transport" in proc.stderr
        assert "Bad file descriptor" not in proc.stderr


def test_an_ipv6_address_is_shown_bracketed(tmp_path: Path) -> None:
    """`::1:22` is ambiguous; OpenSSH and everyone else write `[::1]:22`."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("ssh: {config: null}\nhosts:\n  v6: {ssh: 'root@[::1]:1'}\n")
    proc = cli("status", "--json", "--fleet", str(fleet))
    host = json.loads(proc.stdout)["hosts"][0]
    assert host["error"].startswith("cannot connect to [::1]:1: ")


COMMANDS = [["status"], ["check"], ["sessions"], ["phase0", "backup"], ["phase0", "restore"],
            ["phase0", "prune"], ["phase0", "merge"], ["phase0", "run"], ["audit"], ["issues"],
            ["dispatch"], ["assign"], ["runs"], ["recall"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_placeholders_are_the_readmes(command: list[str]) -> None:
    """Options read `--keep N`, `--agent NAME`, `--from BRANCH`, as the README writes them; no
    `<str>`, `<int range>` or lowercase `{issue}` placeholders from the type."""
    out = subprocess.run([sys.executable, "-m", "miyabi_ctl", *command, "--help"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    options = [line for line in out.splitlines() if line.lstrip().startswith("-")]
    assert options and not [line for line in options if "<" in line.split("  ")[0]]
    usage = out.splitlines()[0]
    assert usage.startswith("Usage: miyabi-ctl ") and not any(c.islower() for c in
                                                               usage.split("[OPTIONS]")[1])


def test_first_run_on_the_shipped_fleet_says_what_to_do_next(tmp_path: Path) -> None:
    """The example's hosts do not exist here: after the table, stderr says what to do next."""
    root = Path(__file__).resolve().parents[2]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text((root / "fleet.yaml").read_text())
    env = {**os.environ, "HOME": str(tmp_path)}  # no ~/.ssh/config: the aliases are unknown
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--timeout", "2"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0
    assert [line.split()[0] for line in proc.stdout.splitlines()[1:]] == [
        "pixel", "macbook", "mugen", "majin"]
    assert "No SSH host of fleet.yaml could be reached" in proc.stderr
    assert "docs/fleet.md" in proc.stderr and "ssh-keyscan -p PORT HOST >> " in proc.stderr
    quiet = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "--timeout",
                            "2"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                           env=env, stdin=subprocess.DEVNULL)
    assert quiet.stderr == "" and json.loads(quiet.stdout)["hosts"][1]["reachable"] is False


def test_an_internal_error_in_check_is_unknown_not_a_traceback(
        local_fleet: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A bug (any exception that is not one of ours) is UNKNOWN (3), one line, no traceback."""
    import miyabi_ctl.status.collect
    from miyabi_ctl.cli.app import main

    def broken(*_args: object, **_kw: object) -> None:
        raise RuntimeError("boom | with a pipe\nand a newline")

    monkeypatch.setattr(miyabi_ctl.status.collect, "collect_status", broken)
    with pytest.raises(SystemExit) as exited:
        main(["check", "--fleet", str(local_fleet)])
    out = capsys.readouterr()
    assert exited.value.code == 3 and out.err == ""
    assert out.out == "MIYABI UNKNOWN - internal error: RuntimeError: boom ¦ with a pipe and a newline\n"
