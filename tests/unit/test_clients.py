"""The two SSH clients without hosts: fleet.yaml's ``client`` and ``control_persist``, the ssh
command line ``client: openssh`` builds, ssh's words read back as error kinds (the texts are
OpenSSH 9.2's, captured from the lab's real ssh), where master sockets live, ProxyCommand tokens,
and that ``client: openssh`` never imports paramiko."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from miyabi_ctl.connectors import openssh_options as opts
from miyabi_ctl.connectors.proxy import FILE_TOKENS, PROXY_TOKENS, expand_tokens
from miyabi_ctl.errors import AuthFailed, HostError, HostKeyError, InventoryError, Unreachable
from miyabi_ctl.inventory import HostSpec, SSHSettings, parse_inventory

ROOT = Path(__file__).resolve().parents[2]


def parse(text: str):  # type: ignore[no-untyped-def]
    return parse_inventory(text, Path("fleet.yaml"))


def test_client_defaults_to_paramiko_and_is_chosen_fleet_wide_or_per_host() -> None:
    inv = parse("ssh: {client: openssh, control_persist: 300}\n"
                "hosts:\n  a:\n  b: {client: paramiko}\n")
    assert inv.ssh.client == "openssh" and inv.ssh.control_persist == 300
    assert [h.client for h in inv.hosts] == [None, "paramiko"]
    assert parse("hosts: {a: }\n").ssh.client == "paramiko"
    assert parse("hosts: {a: }\n").ssh.control_persist == 60
    assert parse("ssh: {control_persist: 0}\nhosts: {a: }\n").ssh.control_persist == 0


@pytest.mark.parametrize(("text", "line", "host", "key", "words"), [
    ("ssh:\n  client: putty\nhosts: {a: }\n", 2, None, "client", "one of paramiko, openssh"),
    ("hosts:\n  a: {client: libssh}\n", 2, "a", "client", "one of paramiko, openssh"),
    ("hosts:\n  me: {transport: local, client: openssh}\n", 2, "me", "client",
     "local host takes no"),
    ("ssh:\n  control_persist: -1\nhosts: {a: }\n", 2, None, "control_persist",
     "must not be negative"),
])
def test_client_mistakes_name_line_host_and_key(text: str, line: int, host: str | None,
                                                key: str, words: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse(text)
    assert (info.value.line, info.value.host, info.value.key) == (line, host, key)
    assert words in info.value.message


def test_config_argument_follows_fleet_yaml(tmp_path: Path) -> None:
    assert opts.config_args(SSHSettings()) == []  # ssh reads ~/.ssh/config itself
    assert opts.config_args(SSHSettings(config=None)) == ["-F", "none"]
    assert opts.config_args(SSHSettings(config=str(tmp_path / "missing"))) == ["-F", "none"]
    present = tmp_path / "ssh_config"
    present.write_text("Host x\n")
    assert opts.config_args(SSHSettings(config=str(present))) == ["-F", str(present)]


def test_target_becomes_ssh_options_never_a_host_argument_with_a_port() -> None:
    spec = HostSpec("mugen", ssh="ops@[fe80::1]:2222", identity_file="~/.ssh/k",
                    proxy_jump="bastion")
    args, host = opts.target_args(spec)
    assert host == "fe80::1"
    assert args == ["-p", "2222", "-l", "ops", "-i", str(Path("~/.ssh/k").expanduser())]
    assert opts.target_args(HostSpec("mugen")) == ([], "mugen")


def test_a_jump_host_is_judged_by_fleet_yaml_too() -> None:
    """ssh's -J runs `ssh -W` without our options; the ProxyCommand written instead has them."""
    settings = SSHSettings(config=None, known_hosts="/k/100%/known_hosts")
    (flag, command), = [opts.jump_option("/usr/bin/ssh", settings, "ops@bastion:2200")]
    assert flag == "-o" and command.startswith("ProxyCommand=/usr/bin/ssh -F none -p 2200 -l ops")
    assert "BatchMode=yes" in command and "StrictHostKeyChecking=yes" in command
    assert "UserKnownHostsFile=/k/100%%/known_hosts" in command  # ssh expands % in it
    assert command.endswith("-W '[%h]:%p' -- bastion")
    with pytest.raises(ValueError, match="one hop"):
        opts.jump_option("ssh", settings, "a,b")


def test_fleet_settings_win_and_known_hosts_come_first() -> None:
    settings = SSHSettings(known_hosts="/k/fleet known", strict_host_keys="accept-new",
                           connect_timeout=5)
    resolved = {"userknownhostsfile": "/k/fleet known /home/me/.ssh/known_hosts2",
                "connecttimeout": "3"}
    options = opts.fleet_options(settings, resolved)
    assert "StrictHostKeyChecking=accept-new" in options and "BatchMode=yes" in options
    assert 'UserKnownHostsFile="/k/fleet known" /home/me/.ssh/known_hosts2' in options
    assert "ConnectTimeout=3" in options  # the config's, smaller, wins
    assert "ConnectTimeout=5" in opts.fleet_options(settings, {"connecttimeout": "none"})
    assert "ConnectTimeout=1" in opts.fleet_options(SSHSettings(connect_timeout=0.3), {})


# What OpenSSH 9.2 said (ssh -E LOG) in the lab, for each kind of failure.
@pytest.mark.parametrize(("log", "kind"), [
    ("No ED25519 host key is known for 127.0.2.2 and you have requested strict checking.\n"
     "Host key verification failed.\n", HostKeyError),
    ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
     "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
     "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
     "Offending ED25519 key in /k/known_hosts:1\n"
     "Host key for 127.0.2.2 has changed and you have requested strict checking.\n"
     "Host key verification failed.\n", HostKeyError),
    ("Certificate invalid: name is not a listed principal\n"
     "Host key verification failed.\n", HostKeyError),
    ("nobody@127.0.2.2: Permission denied (publickey).\n", AuthFailed),
    ("ssh: connect to host 127.0.0.1 port 1: Connection refused\n", Unreachable),
    ("ssh: Could not resolve hostname nonexist.invalid: Name or service not known\n", Unreachable),
    ("Connection timed out during banner exchange\n"
     "Connection to UNKNOWN port 65535 timed out\n", Unreachable),
    ("kex_exchange_identification: Connection closed by remote host\r\n"
     "Connection closed by UNKNOWN port 65535\r\n", Unreachable),
    ("/k/cfg: line 3: Bad configuration option: hostnmae\n"
     "/k/cfg: terminating, 1 bad configuration options\n", HostError),
])
def test_ssh_words_become_the_same_error_kinds(log: str, kind: type) -> None:
    error = opts.failure("mugen", log)
    assert type(error) is kind
    assert "@@" not in error.message and "\r" not in error.message
    assert error.host == "mugen"


def test_a_known_hosts_ssh_could_not_write_is_read_back() -> None:
    log = ("Warning: Permanently added '127.0.2.2' (ED25519) to the list of known hosts.\n"
           "Failed to add the host to the list of known hosts (/k/known hosts).\n")
    assert opts.unrecorded_files(log) == ["/k/known hosts"]


def test_master_sockets_live_in_a_private_directory_short_enough(tmp_path: Path) -> None:
    directory = opts.control_dir(tmp_path)
    assert directory == tmp_path / "ssh" and directory.stat().st_mode & 0o777 == 0o700
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    short = opts.control_dir(deep)
    path = opts.control_path(short, ["ssh", "-o", "x", "mugen"])
    assert len(os.fsencode(path)) + 1 + 17 <= 104
    assert short == opts.control_dir(deep)  # the same state dir finds its masters again
    assert path != opts.control_path(short, ["ssh", "-o", "y", "mugen"])


def test_a_master_is_never_reused_under_other_settings_or_an_edited_config(
        tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host mugen\n")
    given = ["ssh", "-F", str(config)]
    strict = SSHSettings(config=str(config))
    first = opts.identity(strict, given, "mugen")
    assert first == opts.identity(strict, given, "mugen")
    assert first != opts.identity(SSHSettings(config=str(config), strict_host_keys="no"),
                                  given, "mugen")
    assert first != opts.identity(SSHSettings(config=str(config), known_hosts="/k"), given,
                                  "mugen")
    os.utime(config, ns=(1, 1))
    assert first != opts.identity(strict, given, "mugen")


def test_the_command_a_master_was_made_with_is_kept_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "0123456789abcdef"
    assert opts.saved_command(path) is None
    opts.save_command(path, ["ssh", "-o", "ControlPath=x y", "--"])
    assert opts.saved_command(path) == ["ssh", "-o", "ControlPath=x y", "--"]
    Path(f"{path}.argv").write_text('{"not": "a list"}')
    assert opts.saved_command(path) is None


def test_a_socket_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ssh").mkdir(mode=0o777)
    (tmp_path / "ssh").chmod(0o777)
    with pytest.raises(ValueError, match="not a private directory"):
        opts.control_dir(tmp_path)


@pytest.mark.parametrize(("text", "expanded"), [
    ("cloudflared access ssh --hostname %h", "cloudflared access ssh --hostname mugen.ts.net"),
    ("nc -X connect -x proxy:3128 %h %p", "nc -X connect -x proxy:3128 mugen.ts.net 2222"),
    ("ssh -W %h:%p %r@bastion # %n 100%%", "ssh -W mugen.ts.net:2222 ops@bastion # mugen 100%"),
])
def test_proxy_command_tokens_are_ssh_s(text: str, expanded: str) -> None:
    values = {"h": "mugen.ts.net", "n": "mugen", "p": "2222", "r": "ops"}
    assert expand_tokens(text, values, PROXY_TOKENS, "ProxyCommand") == expanded


@pytest.mark.parametrize("text", ["nc %h %x", "nc %h %", "nc %u"])
def test_unknown_tokens_are_refused_as_ssh_refuses(text: str) -> None:
    values = {"h": "h", "n": "n", "p": "22", "r": "r", "u": "me"}
    with pytest.raises(ValueError, match="unknown token"):
        expand_tokens(text, values, PROXY_TOKENS, "ProxyCommand")
    assert expand_tokens("~/.ssh/%u-%r-cert.pub", {**values, "d": "/home/me"}, FILE_TOKENS,
                         "CertificateFile") == "~/.ssh/me-r-cert.pub"


def test_client_openssh_never_imports_paramiko(tmp_path: Path) -> None:
    """The whole CLI path of `check` with client: openssh, in a fresh interpreter, against a
    host that refuses: paramiko and cryptography are never loaded."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("ssh: {client: openssh, config: null, connect_timeout: 1}\n"
                     "hosts:\n  nowhere: {ssh: 'root@127.0.0.1:1'}\n")
    code = ("import sys\n"
            "from miyabi_ctl.cli.app import main\n"
            f"sys.argv = ['miyabi-ctl', 'check', '--fleet', {str(fleet)!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('paramiko', 'cryptography', 'nacl', 'bcrypt'))\n"
            "print('LOADED', loaded)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "MIYABI_STATE_DIR": str(tmp_path / "state")})
    assert "MIYABI CRITICAL" in proc.stdout and "nowhere" in proc.stdout, proc.stderr
    assert "LOADED []" in proc.stdout


def test_a_proxy_s_words_say_why_the_connection_closed() -> None:
    """A jump host's ssh refusing its key closes the connection under the host's ssh, which
    then says only that: the kind is the jump's (as the paramiko client reports it)."""
    closed = ("kex_exchange_identification: Connection closed by remote host\n"
              "Connection closed by UNKNOWN port 65535\n")
    refused = ("No ED25519 host key is known for 10.0.0.1 and you have requested strict "
               "checking.\nHost key verification failed.\n")
    error = opts.failure("inner", closed, refused)
    assert isinstance(error, HostKeyError) and "10.0.0.1" in error.message
    assert isinstance(opts.failure("inner", closed, "nc: connect refused\n"), Unreachable)
    assert "nc: connect refused" in opts.failure("inner", closed, "nc: connect refused\n").message


def test_accept_new_s_notes_are_not_ssh_failing() -> None:
    note = "Warning: Permanently added '10.0.0.1' (ED25519) to the list of known hosts."
    assert opts.benign(note)
    assert not opts.benign("ssh: connect to host 10.0.0.1 port 22: Connection refused")
