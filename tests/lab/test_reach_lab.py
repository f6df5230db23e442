"""Every host the operator's own ssh reaches (issue 17), with both clients: each case is first put
to the real OpenSSH client (``ssh -F``) on the same config and known_hosts; what it reaches,
miyabi-ctl must reach, and what it refuses, miyabi-ctl must refuse, with the same kind of error.

The hosts (tests/lab/sshd_variants.py): one accepting the ``none`` method (Tailscale SSH's way),
one admitting only user certificates, one presenting a host certificate, and a plain one known
only through a ProxyCommand by a name no resolver knows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from miyabi_ctl.connectors.openssh import end_masters
from tests.lab.delay_proxy import DelayProxy
from tests.lab.harness import Lab, LabHost
from tests.lab.sshd_variants import (
    INNER_USER,
    HostCertSetup,
    NoneAuthSetup,
    Relay,
    UserCertSetup,
    keygen,
    masters_state,  # noqa: F401  (the fixture `state`)
    sign,
    ssh_reaches,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("paramiko", "openssh")


@dataclass
class Reach:
    lab: Lab
    dir: Path
    user_key: Path  # certified by user_ca, the certificate beside it
    bare_key: Path  # a copy of user_key with no certificate beside it
    cert: Path
    stranger_key: Path  # certified by another CA
    host_ca: Path
    other_ca: Path
    none: LabHost
    certs: LabHost
    host_cert: LabHost
    plain: LabHost
    relay: Relay


@pytest.fixture(scope="module")
def reach(lab: Lab) -> Reach:
    base = lab.path / "reach"
    base.mkdir()
    user_ca, host_ca = keygen(base / "user_ca", "user-ca"), keygen(base / "host_ca", "host-ca")
    other_ca = keygen(base / "other_ca", "other-ca")
    user_key = keygen(base / "user_key", "user")
    cert = sign(user_ca, Path(f"{user_key}.pub"), "operator", ["root"], host=False)
    (base / "bare").mkdir()
    bare_key = base / "bare" / "id"
    shutil.copy(user_key, bare_key)
    shutil.copy(f"{user_key}.pub", f"{bare_key}.pub")
    stranger_key = keygen(base / "stranger_key", "stranger")
    sign(other_ca, Path(f"{stranger_key}.pub"), "stranger", ["root"], host=False)
    none, certs, host_cert, plain = (
        lab.add_host("reach-none", setup=NoneAuthSetup()),
        lab.add_host("reach-certs", setup=UserCertSetup(user_ca)),
        lab.add_host("reach-hostcert", setup=HostCertSetup(host_ca, ["hostcert.lab.invalid"])),
        lab.add_host("reach-plain"))
    relay = Relay(base / "relay")
    relay.route("hidden.invalid", plain.address)
    return Reach(lab, base, user_key, bare_key, cert, stranger_key, host_ca, other_ca, none,
                 certs, host_cert, plain, relay)


@dataclass
class Case:
    name: str
    host: str  # attribute of Reach
    lines: list[str]  # the Host block's options; {KEY}-style fields are filled from Reach
    known: list[str] = field(default_factory=list)  # known_hosts lines, filled likewise
    expect: str | None = None  # None: reached; else the error kind, for both clients
    paramiko: str | None = "same"  # paramiko's own verdict where it cannot do what ssh does


CASES = [
    Case("none-method", "none", [f"User {INNER_USER}", "IdentityFile {lab_key}"], ["{addr} {pub}"]),
    Case("none-method-not-for-root", "none", ["User root", "IdentityFile {user_key}"],
         ["{addr} {pub}"], expect="auth"),
    Case("user-cert-beside-key", "certs", ["IdentityFile {user_key}"], ["{addr} {pub}"]),
    Case("user-cert-file", "certs", ["IdentityFile {bare_key}", "CertificateFile {cert}"],
         ["{addr} {pub}"]),
    Case("user-key-without-cert", "certs", ["IdentityFile {bare_key}"], ["{addr} {pub}"],
         expect="auth"),
    Case("user-cert-of-another-ca", "certs", ["IdentityFile {stranger_key}"], ["{addr} {pub}"],
         expect="auth"),
    Case("host-cert-by-cert-authority", "host_cert", ["IdentityFile {lab_key}"],
         ["@cert-authority * {host_ca}"], paramiko="hostkey"),
    Case("host-cert-of-another-ca", "host_cert", ["IdentityFile {lab_key}"],
         ["@cert-authority * {other_ca}"], expect="hostkey"),
    Case("host-cert-for-another-name", "host_cert",
         ["IdentityFile {lab_key}", "HostKeyAlias not-a-principal.lab.invalid"],
         ["@cert-authority * {host_ca}"], expect="hostkey"),
    Case("proxy-command-known-under-hostname", "plain",
         ["HostName hidden.invalid", "ProxyCommand {proxy}", "IdentityFile {lab_key}"],
         ["hidden.invalid {pub}"]),
    Case("proxy-command-key-under-address-only", "plain",
         ["HostName hidden.invalid", "ProxyCommand {proxy}", "IdentityFile {lab_key}"],
         ["{addr} {pub}"], expect="hostkey"),
    Case("no-proxy-command", "plain", ["HostName hidden.invalid", "IdentityFile {lab_key}"],
         ["hidden.invalid {pub}"], expect="unreachable"),
]


def fill(text: str, reach: Reach, host: LabHost) -> str:
    return text.format(
        lab_key=reach.lab.client_key, user_key=reach.user_key, bare_key=reach.bare_key,
        cert=reach.cert, stranger_key=reach.stranger_key, proxy=reach.relay.command,
        addr=host.address, pub=host.host_pub,
        host_ca=Path(f"{reach.host_ca}.pub").read_text().strip(),
        other_ca=Path(f"{reach.other_ca}.pub").read_text().strip())


def write_config(base: Path, host: LabHost, lines: list[str], known_hosts: Path,
                 strict: str = "yes") -> Path:
    """An ssh_config with one Host block ``target``: the case's lines first (first value wins)."""
    config = base / "ssh_config"
    config.write_text("\n".join([
        "Host target", *(f"    {line}" for line in lines), f"    HostName {host.address}",
        "    User root", "    IdentitiesOnly yes", f"    UserKnownHostsFile {known_hosts}",
        "    GlobalKnownHostsFile /dev/null", f"    StrictHostKeyChecking {strict}",
        "    BatchMode yes", ""]))
    return config


def write_fleet(base: Path, config: Path, known_hosts: Path, client: str, *,
                strict: str = "yes", target: str = "target", **ssh: object) -> Path:
    fleet = base / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "ssh": {"config": str(config), "known_hosts": str(known_hosts), "strict_host_keys": strict,
                "connect_timeout": 5, "command_timeout": 20, "client": client, **ssh},
        "hosts": {"h": {"ssh": target}}}))
    return fleet


def miyabi(*args: str, state: Path, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "MIYABI_STATE_DIR": str(state)})


def status_of(fleet: Path, state: Path) -> tuple[dict, subprocess.CompletedProcess[str]]:
    proc = miyabi("status", "--json", "--fleet", str(fleet), state=state)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)["hosts"][0], proc


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reaches_what_ssh_reaches(case: Case, client: str, reach: Reach, tmp_path: Path,
                                  state: Path) -> None:
    host: LabHost = getattr(reach, case.host)
    verdicts = {}
    for who in ("openssh-reference", "ours"):
        base = tmp_path / who
        base.mkdir()
        known = base / "known_hosts"
        known.write_text("".join(fill(line, reach, host) + "\n" for line in case.known))
        config = write_config(base, host, [fill(line, reach, host) for line in case.lines], known)
        if who == "openssh-reference":
            theirs = ssh_reaches(config, "target")
            verdicts[who] = None if theirs.returncode == 0 else theirs.stderr
            assert (theirs.returncode == 0) == (case.expect is None), theirs.stderr
            if case.expect is None:
                assert theirs.stdout == "reached\n"
        else:
            ours, proc = status_of(write_fleet(base, config, known, client), state)
            expect = case.paramiko if client == "paramiko" and case.paramiko != "same" \
                else case.expect
            assert ours["reachable"] == (expect is None), (ours["error"], proc.stderr)
            if expect is not None:
                assert ours["error_kind"] == expect, ours["error"]
            else:
                assert ours["repo"]["head"], ours
            assert proc.stderr == "", proc.stderr


def test_paramiko_says_why_it_cannot_check_a_host_certificate(reach: Reach, tmp_path: Path,
                                                              state: Path) -> None:
    host = reach.host_cert
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority * {Path(f'{reach.host_ca}.pub').read_text()}")
    config = write_config(tmp_path, host, [f"IdentityFile {reach.lab.client_key}"], known)
    ours, _ = status_of(write_fleet(tmp_path, config, known, "paramiko"), state)
    assert "client: openssh" in ours["error"] and "@cert-authority" in ours["error"]


@pytest.mark.parametrize("client", CLIENTS)
def test_proxy_command_gets_its_tokens_and_ends_with_the_connection(
        client: str, reach: Reach, tmp_path: Path, state: Path) -> None:
    host = reach.plain
    known = tmp_path / "known_hosts"
    known.write_text(f"hidden.invalid {host.host_pub}\n")
    config = write_config(tmp_path, host, ["HostName hidden.invalid", "User ops",
                                           f"ProxyCommand {reach.relay.command}",
                                           f"IdentityFile {reach.lab.client_key}"], known)
    before = len(reach.relay.calls())
    # user@alias: the user given in fleet.yaml is the %r the ProxyCommand sees, as with ssh.
    ours, _ = status_of(write_fleet(tmp_path, config, known, client, target="root@target"),
                        state)
    assert ours["reachable"], ours["error"]
    calls = reach.relay.calls()[before:]
    assert [c["argv"] for c in calls] == [["hidden.invalid", "22", "root"]]
    if client == "openssh":  # the master connection keeps it until it ends
        end_masters(state)
    deadline = time.monotonic() + 5
    while calls[0]["pid"] in reach.relay.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls[0]["pid"] not in reach.relay.running()


@pytest.mark.parametrize("client", CLIENTS)
def test_a_proxy_command_that_hangs_is_bounded_by_the_connect_timeout(
        client: str, reach: Reach, tmp_path: Path, state: Path) -> None:
    marker = f"miyabi-hung-proxy-{client}-{os.getpid()}"
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = write_config(tmp_path, reach.plain,
                          [f"ProxyCommand /usr/bin/python3 -c 'import time; time.sleep(60)' {marker}",
                           f"IdentityFile {reach.lab.client_key}"], known)
    fleet = write_fleet(tmp_path, config, known, client, connect_timeout=2)
    started = time.monotonic()
    ours, _ = status_of(fleet, state)
    assert time.monotonic() - started < 15
    assert not ours["reachable"] and ours["error_kind"] == "unreachable", ours["error"]
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == "", "the ProxyCommand outlived its connection"


@pytest.mark.parametrize("client", CLIENTS)
def test_an_unwritable_known_hosts_is_a_warning_in_words_as_with_ssh(
        client: str, reach: Reach, tmp_path: Path, state: Path) -> None:
    """accept-new and a known_hosts that cannot be written (immutable: EPERM even for root):
    ssh says "Failed to add the host to the list of known hosts (FILE)." and goes on; so must
    miyabi-ctl, in words naming the file, never a PermissionError (issue 18, item 10)."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = write_config(tmp_path, reach.plain, [f"IdentityFile {reach.lab.client_key}"], known,
                          strict="accept-new")
    fleet = write_fleet(tmp_path, config, known, client, strict="accept-new")
    subprocess.run(["chattr", "+i", str(known)], check=True)
    try:
        theirs = ssh_reaches(config, "target")
        assert theirs.returncode == 0 and f"known hosts ({known})" in theirs.stderr
        ours, proc = status_of(fleet, state)
    finally:
        subprocess.run(["chattr", "-i", str(known)], check=True)
    assert ours["reachable"], ours["error"]
    assert "PermissionError" not in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"miyabi-ctl: warning: h: cannot add its new host key to "
                                  f"{known}"), proc.stderr
    assert proc.stderr.count("\n") == 1  # one line, said once
    assert known.read_text() == ""


@pytest.mark.parametrize(("client", "connections"), [("openssh", 1), ("paramiko", 3)])
def test_openssh_keeps_one_connection_over_a_slow_link(client: str, connections: int,
                                                       reach: Reach, tmp_path: Path,
                                                       state: Path) -> None:
    """Three commands in a row, as cron's checks or --watch: client: openssh makes one SSH
    connection (its master) and runs the other two over it; paramiko connects each time."""
    with DelayProxy((reach.plain.address, 22), rtt=0.1) as slow:
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{slow.port} {reach.plain.host_pub}\n")
        config = write_config(tmp_path, reach.plain, [
            "HostName 127.0.0.1", f"Port {slow.port}", f"IdentityFile {reach.lab.client_key}"],
            known)
        fleet = write_fleet(tmp_path, config, known, client)
        for _ in range(3):
            ours, _ = status_of(fleet, state)
            assert ours["reachable"], ours["error"]
        assert slow.connections == connections
        assert ssh_reaches(config, "target").returncode == 0  # the link is ssh's link too


@pytest.mark.parametrize("client", CLIENTS)
def test_a_command_that_overruns_is_a_timeout_and_the_next_one_connects_afresh(
        client: str, reach: Reach, tmp_path: Path, state: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from miyabi_ctl.errors import CommandTimeout
    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.remote.runner import run_script

    monkeypatch.setenv("MIYABI_STATE_DIR", str(state))
    known = tmp_path / "known_hosts"
    known.write_text(f"{reach.plain.address} {reach.plain.host_pub}\n")
    config = write_config(tmp_path, reach.plain, [f"IdentityFile {reach.lab.client_key}"], known)
    with Fleet(load_inventory(str(write_fleet(tmp_path, config, known, client)))) as fleet:
        host = fleet.hosts[0]
        assert run_script(host, 'printf "%s|" "$@"', "a b", "it's", "$(x)").stdout == \
            "a b|it's|$(x)|"
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="timed out after 2s"):
            run_script(host, "sleep 30", timeout=2, end_on_timeout=True)
        assert time.monotonic() - started < 6
        assert run_script(host, "echo again").stdout == "again\n"


@pytest.mark.parametrize("client", CLIENTS)
def test_a_host_that_never_speaks_ssh_is_unreachable_within_the_connect_timeout(
        client: str, tmp_path: Path, state: Path) -> None:
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never says a word
    known = tmp_path / "known_hosts"
    known.write_text("")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "ssh": {"config": None, "known_hosts": str(known), "connect_timeout": 2,
                "client": client},
        "hosts": {"hung": {"ssh": f"root@127.0.0.1:{listener.getsockname()[1]}"}}}))
    started = time.monotonic()
    with listener:
        ours, proc = status_of(fleet, state)
    assert time.monotonic() - started < 10
    assert not ours["reachable"] and ours["error_kind"] == "unreachable", ours["error"]
    assert proc.stderr == ""


def test_a_warm_command_runs_one_ssh_and_a_cold_one_reads_the_config_first(
        reach: Reach, tmp_path: Path, state: Path) -> None:
    """The master's command line is kept beside its socket: the next command is one ssh (the
    mux client), no ``ssh -G``; ssh's own config decides nothing new until the master ends."""
    calls = tmp_path / "calls"
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {calls}\nexec /usr/bin/ssh "$@"\n')
    wrapper.chmod(0o755)
    known = tmp_path / "known_hosts"
    known.write_text(f"{reach.plain.address} {reach.plain.host_pub}\n")
    config = write_config(tmp_path, reach.plain, [f"IdentityFile {reach.lab.client_key}"], known)
    fleet = write_fleet(tmp_path, config, known, "openssh")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIYABI_STATE_DIR": str(state),
           "PATH": f"{wrapper.parent}:{os.environ['PATH']}"}
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "--fleet",
                               str(fleet)], capture_output=True, text=True, timeout=60, env=env)
        assert json.loads(proc.stdout)["hosts"][0]["reachable"], proc.stderr
    cold, warm = calls.read_text().splitlines()[:2], calls.read_text().splitlines()[2:]
    assert cold[0].startswith("-G ") and "-G" not in cold[1].split()
    assert len(warm) == 1 and "-G" not in warm[0].split() and "ControlMaster=auto" in warm[0]


@pytest.mark.parametrize("client", CLIENTS)
def test_a_jump_host_is_judged_by_fleet_yaml_as_the_host_is(client: str, reach: Reach,
                                                            tmp_path: Path, state: Path) -> None:
    """fleet.yaml's proxy_jump: the jump host's key is checked against fleet.yaml's known_hosts
    under its strictness, never prompted for (ssh's own -J would not pass those on)."""
    jump, inner = reach.none, reach.plain  # any two hosts: root gets in with the lab key
    known = tmp_path / "known_hosts"  # the fleet's file; the config names an empty one
    known.write_text(f"{jump.address} {jump.host_pub}\n{inner.address} {inner.host_pub}\n")
    empty = tmp_path / "config_known_hosts"
    empty.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text("\n".join([
        "Host *", f"    IdentityFile {reach.lab.client_key}", "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {empty}", "    GlobalKnownHostsFile /dev/null", ""]))
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "ssh": {"config": str(config), "known_hosts": str(known), "connect_timeout": 5,
                "client": client},
        "hosts": {"inner": {"ssh": f"root@{inner.address}",
                            "proxy_jump": f"root@{jump.address}"}}}))
    ours, proc = status_of(fleet, state)
    assert ours["reachable"], (ours["error"], proc.stderr)
    known.write_text(f"{inner.address} {inner.host_pub}\n")  # the jump host now unknown
    end_masters(state)
    ours, _ = status_of(fleet, state)
    assert not ours["reachable"] and ours["error_kind"] == "hostkey", ours["error"]
    assert jump.address in ours["error"]
