"""known_hosts read as OpenSSH reads it, and the trust decision for each strictness."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import paramiko
import pytest

from miyabi_ctl.connectors.hostkeys import KnownHosts, read_known_hosts
from miyabi_ctl.connectors.ssh_config import openssh_seconds
from miyabi_ctl.errors import HostKeyError


def new_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def line(host: str, key: paramiko.PKey) -> str:
    return f"{host} {key.get_name()} {key.get_base64()}\n"


def hashed(host: str) -> str:
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, host.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known(tmp_path: Path, text: str, strict: str = "yes") -> KnownHosts:
    path = tmp_path / "known_hosts"
    path.write_text(text)
    return KnownHosts([path], strict)


def test_odd_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    key = new_key()
    ca = new_key()
    text = (f"# comment\n\n@cert-authority *.example.net {ca.get_name()} {ca.get_base64()}\n"
            "garbage\nhost ssh-rsa !!!notbase64!!!\n" + line("mugen", key))
    kh = known(tmp_path, text)
    kh.verify("mugen", "mugen", 22, key)  # accepted despite the odd lines around it
    assert len(read_known_hosts(tmp_path / "known_hosts")) == 2  # the CA line and mugen's


def test_hashed_entries_and_ports(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, f"{hashed('[127.0.0.5]:2222')} {key.get_name()} {key.get_base64()}\n")
    kh.verify("h", "127.0.0.5", 2222, key)
    with pytest.raises(HostKeyError, match="unknown host key"):
        kh.verify("h", "127.0.0.5", 22, key)  # the same address on port 22 is another entry


def test_any_of_several_keys_of_one_type(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    kh = known(tmp_path, line("mugen", old) + line("mugen", new))
    kh.verify("mugen", "mugen", 22, new)  # key rotation: both listed, either is fine
    kh.verify("mugen", "mugen", 22, old)


def test_changed_key_is_refused_under_yes_and_accept_new(tmp_path: Path) -> None:
    listed, offered = new_key(), new_key()
    for strict in ("yes", "accept-new"):
        kh = known(tmp_path, line("mugen", listed), strict)
        with pytest.raises(HostKeyError, match=r"HOST KEY CHANGED.*ssh-keygen -f \S+ -R mugen"):
            kh.verify("mugen", "mugen", 22, offered)
    assert (tmp_path / "known_hosts").read_text() == line("mugen", listed)  # nothing appended


def test_a_new_key_type_for_a_known_host_is_a_changed_key(tmp_path: Path) -> None:
    """OpenSSH refuses it too: a host known by one key type offering another is a MITM sign."""
    rsa = paramiko.RSAKey.generate(1024)
    kh = known(tmp_path, line("mugen", rsa), "accept-new")
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        kh.verify("mugen", "mugen", 22, new_key())
    assert "ecdsa" not in (tmp_path / "known_hosts").read_text()


def test_known_key_types_are_asked_for_first(tmp_path: Path) -> None:
    rsa = paramiko.RSAKey.generate(1024)
    kh = known(tmp_path, line("mugen", rsa))
    offered = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
    assert kh.preferred_algorithms("mugen", 22, offered) == (
        "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256")
    assert kh.preferred_algorithms("other", 22, offered) == offered


def test_revoked_key_is_refused_even_with_no(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, f"@revoked * {key.get_name()} {key.get_base64()}\n" + line("a", key), "no")
    with pytest.raises(HostKeyError, match="@revoked"):
        kh.verify("a", "a", 22, key)


def test_accept_new_records_a_first_key(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, "", "accept-new")
    kh.verify("n", "10.0.0.9", 2200, key)
    assert (tmp_path / "known_hosts").read_text() == line("[10.0.0.9]:2200", key)
    kh.verify("n", "10.0.0.9", 2200, key)  # now known: accepted, not appended twice
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 1


@pytest.mark.parametrize(("text", "seconds"), [("5", 5), ("5s", 5), ("1m", 60), ("1m30s", 90),
                                               ("2h", 7200)])
def test_openssh_times(text: str, seconds: float) -> None:
    assert openssh_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "fast", "-1"])
def test_openssh_times_refused(text: str) -> None:
    with pytest.raises(ValueError):
        openssh_seconds(text)
