"""fleet.yaml: discovery, defaults, and one clear error (file, line, host, key) for each mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from miyabi_ctl.connectors.target import SSHTarget, parse_target
from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory import find_fleet_file, load_inventory, parse_inventory

REPO_ROOT = Path(__file__).resolve().parents[2]


def parse(text: str) -> object:
    return parse_inventory(text, Path("fleet.yaml"))


def error_of(text: str) -> InventoryError:
    with pytest.raises(InventoryError) as info:
        parse(text)
    return info.value


def test_reference_fleet_parses_with_the_plans_four_machines() -> None:
    inv = load_inventory(REPO_ROOT / "fleet.yaml")
    names = [h.name for h in inv.hosts]
    assert names == ["pixel", "macbook", "mugen", "majin"]
    hosts = {h.name: h for h in inv.hosts}
    assert hosts["pixel"].transport == "local" and hosts["pixel"].role == "maestro"
    assert hosts["macbook"].max_sessions == 8 and hosts["macbook"].ssh == "mac"
    assert "worktree" in hosts["mugen"].tags
    assert hosts["majin"].identity_file == "~/.ssh/majin_ed25519"
    assert inv.repo.main == "main" and inv.repo.feature == "feat/miyabi-society-reconstruction"
    assert inv.ssh.strict_host_keys == "yes"
    assert inv.thresholds.load_per_core == (1.0, 2.0)


def test_defaults_and_alias_target() -> None:
    inv = parse("hosts:\n  mugen:\n")
    (host,) = inv.hosts
    assert host.transport == "ssh" and host.ssh == "mugen"
    assert inv.ssh.connect_timeout == 5 and inv.ssh.max_parallel == 32
    assert set(inv.agents) == {"claude", "codex"}


def test_yaml_booleans_for_strict_host_keys() -> None:
    assert parse("ssh: {strict_host_keys: no}\nhosts: {a: }\n").ssh.strict_host_keys == "no"
    assert parse("ssh: {strict_host_keys: yes}\nhosts: {a: }\n").ssh.strict_host_keys == "yes"
    assert parse("ssh: {strict_host_keys: accept-new}\nhosts: {a: }\n").ssh.strict_host_keys == (
        "accept-new")


@pytest.mark.parametrize(("text", "line", "host", "key", "words"), [
    ("hosts:\n  mugen:\n    max_sessions: six\n", 3, "mugen", "max_sessions", "expected an integer"),
    ("hosts:\n  mugen: {ssh: a}\n  mugen: {ssh: b}\n", 3, "mugen", None, "duplicate host"),
    ("hosts:\n  mugen: {ssh: a, colour: red}\n", 2, "mugen", "colour", "unknown key 'colour'"),
    ("hosts:\n  mugen: {transport: telnet}\n", 2, "mugen", "transport", "expected one of ssh, local"),
    ("hosts:\n  mugen: {ssh: 'a b'}\n", 2, "mugen", "ssh", "not an SSH target"),
    ("hosts:\n  mugen: {ssh: 'u@h:99999'}\n", 2, "mugen", "ssh", "port out of range"),
    ("hosts:\n  mugen: {tags: linux}\n", 2, "mugen", "tags", "list of strings"),
    ("hosts:\n  pixel: {transport: local, ssh: x}\n", 2, "pixel", "ssh", "local host takes no"),
    ("repo: {path: x}\n", 1, None, "hosts", "missing required key 'hosts'"),
    ("hosts: {}\n", 1, None, "hosts", "'hosts' is empty"),
    ("colour: red\nhosts: {a: }\n", 1, None, "colour", "unknown key"),
    ("ssh:\n  strict_host_keys: maybe\nhosts: {a: }\n", 2, None, "strict_host_keys", "one of"),
    ("ssh:\n  connect_timeout: -1\nhosts: {a: }\n", 2, None, "connect_timeout", "greater than 0"),
    ("thresholds:\n  load_per_core: [2, 1]\nhosts: {a: }\n", 2, None, "load_per_core", "below"),
    ("thresholds:\n  uncommitted: 10\nhosts: {a: }\n", 2, None, "uncommitted", "[warning, critical]"),
    ("dispatch: {agent: gemini}\nhosts: {a: }\n", 1, None, "agent", "unknown agent"),
    ("hosts:\n  'bad name!': {}\n", 2, "bad name!", None, "host names use"),
    ("repo:\n  remote: --upload-pack=touch x\nhosts: {a: }\n", 2, None, "remote",
     "not a usable remote name: it starts with '-'"),
    ("repo:\n  main: 'ma in'\nhosts: {a: }\n", 2, None, "main", "not a usable branch name"),
    ("repo:\n  feature: feat/x..y\nhosts: {a: }\n", 2, None, "feature", "contains '..'"),
    ("ssh: {config: ~/.ssh/config, config: x}\nhosts: {a: }\n", 1, None, "config", "duplicate key"),
])
def test_each_mistake_names_line_host_and_key(text: str, line: int, host: str | None,
                                              key: str | None, words: str) -> None:
    err = error_of(text)
    assert (err.line, err.host, err.key) == (line, host, key), str(err)
    assert words in err.message
    assert str(err).startswith(f"fleet.yaml:{line}: ")


def test_bad_yaml_names_the_line_where_the_construct_opened() -> None:
    """The unclosed `{` is on line 2; the parser gives up on line 3: both are said, line 2 first."""
    err = error_of("hosts:\n  mugen: {ssh: mugen\n  majin: x\n")
    assert err.line == 2 and "invalid YAML" in err.message
    assert "flow mapping opened here (column 10)" in err.message and "(line 3)" in err.message


def test_unclosed_bracket_at_end_of_file_points_at_the_bracket() -> None:
    err = error_of("ssh:\n  connect_timeout: 5\nhosts: [\n  a\n\n\n")
    assert err.line == 3 and "flow sequence opened here" in err.message


def test_other_yaml_errors_keep_the_line_of_the_problem() -> None:
    err = error_of("hosts:\n  a: 1\n   b: 2\n")
    assert err.line == 3 and err.message.startswith("invalid YAML: ")


def test_undecodable_fleet_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"hosts:\n  a: {ssh: x}\n  b: \xff\xfe\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert caught.value.line == 3 and "not UTF-8" in caught.value.message


def test_empty_file() -> None:
    assert "empty" in error_of("").message


def test_unknown_host_on_the_command_line() -> None:
    inv = parse("hosts: {mugen: , majin: }\n")
    with pytest.raises(InventoryError, match=r"unknown host 'mac'.*known: mugen, majin"):
        inv.select(["mac"])
    assert [h.name for h in inv.select(["majin"])] == ["majin"]


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIYABI_FLEET", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert find_fleet_file() is None
    user = tmp_path / "xdg" / "miyabi-ctl" / "fleet.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("hosts: {a: }\n")
    assert find_fleet_file() == user
    (tmp_path / "fleet.yaml").write_text("hosts: {b: }\n")
    assert find_fleet_file() == Path("fleet.yaml")
    env_file = tmp_path / "env.yaml"
    env_file.write_text("hosts: {c: }\n")
    monkeypatch.setenv("MIYABI_FLEET", str(env_file))
    assert find_fleet_file() == env_file
    assert find_fleet_file(str(user)) == user
    with pytest.raises(InventoryError, match=r"no such fleet file.*--fleet"):
        find_fleet_file(str(tmp_path / "missing.yaml"))


def test_no_fleet_file_means_this_machine_alone(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MIYABI_FLEET", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    inv = load_inventory()
    assert inv.implicit and len(inv.hosts) == 1 and inv.hosts[0].transport == "local"


def test_cli_reports_bad_file_in_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "fleet.yaml"
    bad.write_text("hosts:\n  mugen:\n    max_sessions: six\n")
    for command, code in (("status", 2), ("sessions", 2), ("check", 3)):
        proc = subprocess.run([sys.executable, "-m", "miyabi_ctl", command, "--fleet", str(bad)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, (command, proc.stdout, proc.stderr)
        out = (proc.stdout + proc.stderr).strip()
        assert "Traceback" not in out
        assert len(out.splitlines()) == 1, out
        assert f"{bad}:3: host 'mugen', key 'max_sessions': expected an integer" in out


@pytest.mark.parametrize(("text", "target"), [
    ("mac", SSHTarget("mac")),
    ("mugen.example.net", SSHTarget("mugen.example.net")),
    ("ubuntu@mugen.example.net", SSHTarget("mugen.example.net", "ubuntu")),
    ("root@127.0.1.2:2222", SSHTarget("127.0.1.2", "root", 2222)),
    ("me@[::1]:22", SSHTarget("::1", "me", 22)),
])
def test_ssh_targets(text: str, target: SSHTarget) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize("text", ["", "a b", "-oProxyCommand=x", "u@h;x", "$(x)", "u@h:0"])
def test_ssh_targets_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)
