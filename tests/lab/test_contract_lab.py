"""The operator's contract against real sshd: advice that works when pasted, plain errors, and
stderr without library noise."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_the_unknown_key_advice_works_when_pasted(lab: Lab, tmp_path: Path) -> None:
    """The command in the message, run as given, makes the host known (it used to suggest
    `ssh '[127.0.0.1]:47022'`, which ssh reads as a host name)."""
    host = lab.add_host("ct-keyscan")
    known = tmp_path / "known hosts"  # a space: the advice must quote the file
    known.write_text("")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)},
                             known_hosts=known)
    first = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert first["error_kind"] == "hostkey"
    commands = re.findall(r"`([^`]+)`", first["error"])
    keyscan = next(c for c in commands if c.startswith("ssh-keyscan "))
    subprocess.run(["sh", "-c", keyscan], check=True, capture_output=True, timeout=30)
    again = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert again["reachable"] is True, again["error"]


def test_the_changed_key_advice_works_when_pasted(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("ct-changed")
    known = tmp_path / "known_hosts"
    other = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(tmp_path / "other")], check=True)
    assert other.returncode == 0
    fake = (tmp_path / "other.pub").read_text().split()[:2]
    known.write_text(f"{host.address} {' '.join(fake)}\n")
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": ssh_entry(host, lab)},
                             known_hosts=known)
    first = json.loads(cli("status", "--json", "--fleet", str(fleet_file)).stdout)["hosts"][0]
    assert "HOST KEY CHANGED" in first["error"]
    remove = next(c for c in re.findall(r"`([^`]+)`", first["error"])
                  if c.startswith("ssh-keygen "))
    subprocess.run(["sh", "-c", remove], check=True, capture_output=True, timeout=30)
    assert host.address not in known.read_text()  # the stale key is gone from *that* file


def test_a_passphrase_protected_key_is_an_auth_error_in_words(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("ct-passphrase")
    key = tmp_path / "locked_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret phrase", "-f", str(key)],
                   check=True)
    entry = ssh_entry(host, lab) | {"identity_file": str(key)}
    fleet_file = write_fleet(tmp_path / "fleet.yaml", lab, {"h": entry})
    proc = cli("status", "--json", "--fleet", str(fleet_file))
    h = json.loads(proc.stdout)["hosts"][0]
    assert h["error_kind"] == "auth", h
    assert "protected by a passphrase" in h["error"] and "ssh-add" in h["error"]
    assert "Exception" not in h["error"] and proc.stderr == ""
