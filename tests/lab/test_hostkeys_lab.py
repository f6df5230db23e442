"""Host key verdicts against a real sshd, each compared with what the real OpenSSH client decides
given the same ssh config, known_hosts files and strictness: HostKeyAlias, GlobalKnownHostsFile,
@revoked scoping, @cert-authority, accept-new next to a global file — with both clients
(paramiko's own reading of the files, and ``client: openssh``, where ssh decides)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.lab.harness import Lab, LabHost
from tests.lab.sshd_variants import masters_state  # noqa: F401  (the fixture `state`)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Case:
    name: str
    strict: str
    user: str  # known_hosts lines; KEY, OTHER, CA are replaced by keys, ADDR by the address
    global_: str = ""
    alias: str | None = None
    expect_ok: bool = True


CASES = [
    Case("alias-listed", "yes", "lab-alias KEY\n", alias="Lab-Alias"),
    Case("alias-set-but-listed-under-address", "yes", "ADDR KEY\n", alias="lab-alias",
         expect_ok=False),
    Case("global-file-only", "yes", "", global_="ADDR KEY\n"),
    Case("accept-new-but-global-file-differs", "accept-new", "", global_="ADDR OTHER\n",
         expect_ok=False),
    Case("accept-new-new-host", "accept-new", ""),
    Case("accept-new-under-alias", "accept-new", "", alias="new-alias"),
    Case("revoked-for-all-in-global", "yes", "ADDR KEY\n", global_="@revoked * KEY\n",
         expect_ok=False),
    Case("revoked-for-another-host", "yes", "ADDR KEY\n", global_="@revoked 10.9.9.9 KEY\n"),
    Case("ca-only", "yes", "@cert-authority * CA\n", expect_ok=False),
    Case("changed", "accept-new", "ADDR OTHER\n", expect_ok=False),
]


@pytest.fixture(scope="module")
def target(lab: Lab) -> tuple[LabHost, LabHost]:
    return lab.add_host("hk-target"), lab.add_host("hk-other")


def fill(text: str, host: LabHost, other: LabHost) -> str:
    return (text.replace("ADDR", host.address).replace("KEY", host.host_pub)
            .replace("OTHER", other.host_pub).replace("CA", other.host_pub))


def files_for(case: Case, base: Path, host: LabHost, other: LabHost, lab: Lab) -> tuple[Path, Path]:
    """(ssh config, user known_hosts) in ``base``."""
    base.mkdir()
    user = base / "known_hosts"
    user.write_text(fill(case.user, host, other))
    glob = base / "ssh_known_hosts"
    glob.write_text(fill(case.global_, host, other))
    config = base / "ssh_config"
    config.write_text("\n".join([
        "Host target", f"    HostName {host.address}", "    User root",
        f"    IdentityFile {lab.client_key}", "    IdentitiesOnly yes",
        f"    UserKnownHostsFile {user}", f"    GlobalKnownHostsFile {glob}",
        f"    StrictHostKeyChecking {case.strict}", "    BatchMode yes",
        *([f"    HostKeyAlias {case.alias}"] if case.alias else []), ""]))
    return config, user


@pytest.mark.parametrize("client", ["paramiko", "openssh"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_host_key_verdict_matches_openssh(case: Case, client: str,
                                          target: tuple[LabHost, LabHost], lab: Lab,
                                          tmp_path: Path, state: Path) -> None:
    host, other = target
    config, user = files_for(case, tmp_path / "ours", host, other, lab)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "ssh": {"config": str(config), "known_hosts": str(user), "strict_host_keys": case.strict,
                "connect_timeout": 5, "command_timeout": 20, "client": client},
        "hosts": {"h": {"ssh": "target"}}}))
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "--fleet",
                           str(fleet)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "MIYABI_STATE_DIR": str(state)})
    ours = json.loads(proc.stdout)["hosts"][0]

    ssh_config, ssh_user = files_for(case, tmp_path / "openssh", host, other, lab)
    theirs = subprocess.run(["ssh", "-F", str(ssh_config), "-o", "ConnectTimeout=5", "target",
                             "true"], capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL)
    assert (theirs.returncode == 0) == case.expect_ok, theirs.stderr
    assert ours["reachable"] == case.expect_ok, ours["error"]
    if not case.expect_ok:
        assert ours["error_kind"] == "hostkey"
    # What accept-new wrote down, if anything, is what ssh wrote down.
    assert user.read_text() == ssh_user.read_text().replace(str(tmp_path / "openssh"),
                                                            str(tmp_path / "ours"))


def test_advice_names_the_file_that_holds_the_old_key(target: tuple[LabHost, LabHost], lab: Lab,
                                                      tmp_path: Path) -> None:
    host, other = target
    case = Case("changed-in-global", "yes", "", global_="ADDR OTHER\n", expect_ok=False)
    config, user = files_for(case, tmp_path / "f", host, other, lab)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(yaml.safe_dump({
        "ssh": {"config": str(config), "known_hosts": str(user), "connect_timeout": 5},
        "hosts": {"h": {"ssh": "target"}}}))
    proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", "status", "--json", "--fleet",
                           str(fleet)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    error = json.loads(proc.stdout)["hosts"][0]["error"]
    assert "HOST KEY CHANGED" in error
    assert f"`ssh-keygen -f {tmp_path / 'f' / 'ssh_known_hosts'} -R {host.address}`" in error
