"""The operator's contract against real sshd: advice that works when pasted, plain errors, and
stderr without library noise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.lab.fleets import PlanFleet, ssh_entry, write_fleet
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


# -- tables in a real terminal, on the reference fleet ---------------------------------------

WIDTHS = [60, 80, 120, 200]


def _screens(args: list[str], env: dict[str, str] | None = None) -> tuple[str, dict[int, str]]:
    from tests.ptyshot import run_in_pty

    env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    piped = subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                           text=True, timeout=120, env=env, stdin=subprocess.DEVNULL).stdout
    return piped, {w: run_in_pty(args, w, env=env) for w in WIDTHS}


@pytest.mark.parametrize("args", [
    ["status", "macbook", "mugen", "majin"],
    ["sessions", "macbook", "mugen"],
    ["phase0", "prune", "--started-before", "2999-01-01", "macbook", "mugen", "majin"],
    ["phase0", "run", "--started-before", "2999-01-01", "macbook", "mugen", "majin"],
], ids=lambda a: " ".join(a[:2]))
def test_reference_fleet_tables_fit_a_phone_and_a_desk(plan_fleet: PlanFleet,
                                                       args: list[str]) -> None:
    from tests.ptyshot import assert_fits

    piped, screens = _screens([*args, "--fleet", str(plan_fleet.fleet_file)])
    for width, screen in screens.items():
        assert "Traceback" not in screen
        assert_fits(screen, width, piped, extra=["ok", "warning", "critical", "unreachable"])
    if args[0] == "status":
        rows = [line for line in piped.splitlines()[1:] if line]
        assert [r.split()[0] for r in rows] == ["macbook", "mugen", "majin"]  # one line each
        phone = screens[60].splitlines()
        at = next(i for i, line in enumerate(phone) if line.startswith("macbook"))
        assert phone[at + 1].startswith("    on feat/miyabi-society-reconstruction")
        assert "32 claude" in " ".join(phone[at + 1:at + 4])


def test_dispatch_and_runs_tables_fit(lab: Lab, tmp_path: Path) -> None:
    from tests.lab.test_dispatch_lab import install_fake_agent
    from tests.ptyshot import assert_fits

    hosts = lab.add_hosts(["ct-disp-a", "ct-disp-b"], load=(0.3, 0.3, 0.3), cpus=4)
    for host in hosts:
        install_fake_agent(host)
    backlog = tmp_path / "backlog.yaml"
    backlog.write_text(yaml.safe_dump({"issues": [
        {"number": 7, "title": "Handle [/api] prefix", "priority": "P0"},
        {"number": 8, "title": "[docs] Update README", "needs": ["gpu"]},
    ]}))
    fleet = write_fleet(tmp_path / "fleet.yaml", lab,
                        {h.name: ssh_entry(h, lab, max_sessions=2, tags=["linux"]) for h in hosts},
                        extra=f"backlog:\n  file: {backlog}\n")
    env = {"MIYABI_STATE_DIR": str(tmp_path / "state")}
    for args in (["dispatch", "--explain"], ["issues"]):
        piped, screens = _screens([*args, "--fleet", str(fleet)], env)
        for width, screen in screens.items():
            assert_fits(screen, width, piped, extra=["✓", "✗"])
        assert "Handle [/api] prefix" in piped or args[0] == "dispatch"
    launched = subprocess.run([sys.executable, "-m", "miyabi_ctl", "dispatch", "--apply", "--yes",
                               "--fleet", str(fleet)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env})
    assert launched.returncode == 0, launched.stdout + launched.stderr
    piped, screens = _screens(["runs", "--fleet", str(fleet)], env)
    assert "miyabi-7 alive" in piped
    for width, screen in screens.items():
        assert_fits(screen, width, piped)
