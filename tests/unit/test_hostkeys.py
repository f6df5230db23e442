"""known_hosts read as OpenSSH reads it, and the trust decision for each strictness."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import paramiko
import pytest

from miyabi_ctl.connectors.hostkeys import HostKeyLookup, KnownHosts, read_known_hosts
from miyabi_ctl.connectors.ssh_config import SSHResolver, openssh_seconds
from miyabi_ctl.errors import HostKeyError
from miyabi_ctl.inventory import SSHSettings


def new_key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def line(host: str, key: paramiko.PKey) -> str:
    return f"{host} {key.get_name()} {key.get_base64()}\n"


def hashed(host: str) -> str:
    salt = b"0123456789abcdef0123"
    digest = hmac.new(salt, host.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def known(tmp_path: Path, text: str, strict: str = "yes") -> KnownHosts:
    """KnownHosts whose user file holds ``text`` (see ``at``: lookups use that file)."""
    path = tmp_path / "known_hosts"
    path.write_text(text)
    return KnownHosts(strict)


def at(tmp_path: Path, host: str, port: int = 22, *, alias: str | None = None,
       global_text: str | None = None, revoked: tuple[Path, ...] = ()) -> HostKeyLookup:
    """The lookup of ``host``: the user file of ``known``, and a global file of our own (never
    the machine's /etc/ssh)."""
    glob = tmp_path / "ssh_known_hosts"
    if global_text is not None:
        glob.write_text(global_text)
    return HostKeyLookup.for_host(host, port, (tmp_path / "known_hosts",), alias=alias,
                                  global_files=(glob,), revoked_files=revoked)


def test_odd_lines_are_skipped_not_fatal(tmp_path: Path) -> None:
    key = new_key()
    ca = new_key()
    text = (f"# comment\n\n@cert-authority *.example.net {ca.get_name()} {ca.get_base64()}\n"
            "garbage\nhost ssh-rsa !!!notbase64!!!\n@bogus mugen x y\n" + line("mugen", key))
    kh = known(tmp_path, text)
    kh.verify("mugen", at(tmp_path, "mugen"), key)  # accepted despite the odd lines around it
    keys = read_known_hosts(tmp_path / "known_hosts")
    assert [(k.marker, k.line) for k in keys] == [("@cert-authority", 3), (None, 7)]


def test_hashed_entries_and_ports(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, f"{hashed('[127.0.0.5]:2222')} {key.get_name()} {key.get_base64()}\n")
    kh.verify("h", at(tmp_path, "127.0.0.5", 2222), key)
    with pytest.raises(HostKeyError, match="unknown host key"):
        kh.verify("h", at(tmp_path, "127.0.0.5"), key)  # the same address on port 22 is another entry


def test_host_names_are_case_insensitive(tmp_path: Path) -> None:
    """ssh lower-cases the name before matching patterns and before hashing it."""
    key = new_key()
    kh = known(tmp_path, line("mugen.example.net", key) +
               f"{hashed('majin.example.net')} {key.get_name()} {key.get_base64()}\n")
    kh.verify("m", at(tmp_path, "Mugen.Example.NET"), key)
    kh.verify("j", at(tmp_path, "MAJIN.example.net"), key)


def test_any_of_several_keys_of_one_type(tmp_path: Path) -> None:
    old, new = new_key(), new_key()
    kh = known(tmp_path, line("mugen", old) + line("mugen", new))
    kh.verify("mugen", at(tmp_path, "mugen"), new)  # key rotation: both listed, either is fine
    kh.verify("mugen", at(tmp_path, "mugen"), old)


def test_changed_key_is_refused_under_yes_and_accept_new(tmp_path: Path) -> None:
    listed, offered = new_key(), new_key()
    path = tmp_path / "known_hosts"
    for strict in ("yes", "accept-new"):
        kh = known(tmp_path, "# first line\n" + line("mugen", listed), strict)
        with pytest.raises(HostKeyError, match=(
                rf"HOST KEY CHANGED for mugen.*{path}:2.*`ssh-keygen -f {path} -R mugen`")):
            kh.verify("mugen", at(tmp_path, "mugen"), offered)
    assert path.read_text() == "# first line\n" + line("mugen", listed)  # nothing appended


def test_a_new_key_type_for_a_known_host_is_a_changed_key(tmp_path: Path) -> None:
    """OpenSSH refuses it too: a host known by one key type offering another is a MITM sign."""
    rsa = paramiko.RSAKey.generate(1024)
    kh = known(tmp_path, line("mugen", rsa), "accept-new")
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED"):
        kh.verify("mugen", at(tmp_path, "mugen"), new_key())
    assert "ecdsa" not in (tmp_path / "known_hosts").read_text()


def test_known_key_types_are_asked_for_first(tmp_path: Path) -> None:
    rsa = paramiko.RSAKey.generate(1024)
    kh = known(tmp_path, line("mugen", rsa))
    offered = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
    assert kh.preferred_algorithms(at(tmp_path, "mugen"), offered) == (
        "rsa-sha2-512", "rsa-sha2-256", "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256")
    assert kh.preferred_algorithms(at(tmp_path, "other"), offered) == offered


# -- HostKeyAlias, global files, the bare host name ---------------------------------------------


def test_host_key_alias_is_the_name_looked_up_and_recorded(tmp_path: Path) -> None:
    key, other = new_key(), new_key()
    kh = known(tmp_path, line("build-box", key) + line("10.0.0.7", other), "accept-new")
    kh.verify("b", at(tmp_path, "10.0.0.7", 2200, alias="Build-Box"), key)  # no port appended
    with pytest.raises(HostKeyError, match=r"HOST KEY CHANGED for build-box.*-R build-box"):
        kh.verify("b", at(tmp_path, "10.0.0.7", 2200, alias="build-box"), other)
    fresh = new_key()
    kh.verify("n", at(tmp_path, "10.0.0.8", alias="new-box"), fresh)  # accept-new: under the alias
    assert (tmp_path / "known_hosts").read_text().splitlines()[-1] == line("new-box", fresh).strip()


def test_without_the_alias_a_key_known_under_it_is_not_trusted(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, line("build-box", key))
    with pytest.raises(HostKeyError, match=r"unknown host key for 10\.0\.0\.7"):
        kh.verify("b", at(tmp_path, "10.0.0.7"), key)


def test_the_global_file_is_consulted_and_accept_new_never_overrides_it(tmp_path: Path) -> None:
    listed, offered = new_key(), new_key()
    glob = tmp_path / "ssh_known_hosts"
    kh = known(tmp_path, "", "accept-new")
    kh.verify("m", at(tmp_path, "mugen", global_text=line("mugen", listed)), listed)
    with pytest.raises(HostKeyError, match=rf"HOST KEY CHANGED.*`ssh-keygen -f {glob} -R mugen`"):
        kh.verify("m", at(tmp_path, "mugen"), offered)
    assert (tmp_path / "known_hosts").read_text() == ""  # not trusted on first use


def test_a_key_listed_for_the_bare_host_serves_another_port(tmp_path: Path) -> None:
    """ssh's "checking without port identifier": [host]:2222 unknown, host lists the same key."""
    key = new_key()
    kh = known(tmp_path, line("mugen", key), "accept-new")
    kh.verify("m", at(tmp_path, "mugen", 2222), key)
    assert (tmp_path / "known_hosts").read_text() == line("mugen", key)  # trusted, not recorded
    other = new_key()
    kh.verify("m", at(tmp_path, "mugen", 2223), other)  # a different key: new for [mugen]:2223
    assert (tmp_path / "known_hosts").read_text().endswith(line("[mugen]:2223", other))
    with pytest.raises(HostKeyError, match="unknown host key"):
        known(tmp_path, line("mugen", key)).verify("m", at(tmp_path, "mugen", 2222, alias="a"),
                                                   key)  # not with an alias


# -- @revoked, RevokedHostKeys, @cert-authority -------------------------------------------------


def test_revoked_key_is_refused_even_with_no(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, f"@revoked * {key.get_name()} {key.get_base64()}\n" + line("a", key), "no")
    with pytest.raises(HostKeyError, match=rf"@revoked in {tmp_path / 'known_hosts'}:1"):
        kh.verify("a", at(tmp_path, "a"), key)


def test_revoked_lines_apply_to_the_hosts_they_name(tmp_path: Path) -> None:
    """hostfile.c loads only the lines whose patterns match the host, markers included."""
    key = new_key()
    text = (f"@revoked old-*.example.net {key.get_name()} {key.get_base64()}\n"
            + line("new.example.net", key) + line("old-1.example.net", key))
    kh = known(tmp_path, text)
    kh.verify("n", at(tmp_path, "new.example.net"), key)
    with pytest.raises(HostKeyError, match="@revoked"):
        kh.verify("o", at(tmp_path, "OLD-1.example.net"), key)
    kh = KnownHosts("yes")  # files are read once per KnownHosts: a fresh one sees the global file
    with pytest.raises(HostKeyError, match=r"@revoked in .*ssh_known_hosts:1"):
        kh.verify("n", at(tmp_path, "new.example.net",
                          global_text=f"@revoked * {key.get_name()} {key.get_base64()}\n"), key)


def test_revoked_host_keys_files_refuse_for_every_host(tmp_path: Path) -> None:
    key, fine = new_key(), new_key()
    revoked = tmp_path / "revoked_keys"
    revoked.write_text(f"# stolen laptop\n{key.get_name()} {key.get_base64()} old@box\n")
    kh = known(tmp_path, line("*", key) + line("*", fine))
    with pytest.raises(HostKeyError, match="listed in RevokedHostKeys"):
        kh.verify("a", at(tmp_path, "anything", revoked=(revoked,)), key)
    kh.verify("a", at(tmp_path, "anything", revoked=(revoked,)), fine)
    krl = tmp_path / "revoked.krl"
    krl.write_bytes(b"SSHKRL\n\0" + bytes(40))
    with pytest.raises(HostKeyError, match="binary KRL"):
        kh.verify("a", at(tmp_path, "anything", revoked=(krl,)), fine)
    with pytest.raises(HostKeyError, match="cannot read RevokedHostKeys"):
        kh.verify("a", at(tmp_path, "anything", revoked=(tmp_path / "missing",)), fine)


@pytest.mark.parametrize("strict", ["yes", "accept-new"])
def test_a_host_known_only_through_a_ca_is_not_silently_unknown(tmp_path: Path,
                                                                strict: str) -> None:
    ca, key = new_key(), new_key()
    text = f"@cert-authority *.example.net {ca.get_name()} {ca.get_base64()}\n"
    kh = known(tmp_path, text, strict)
    with pytest.raises(HostKeyError, match=(
            r"known only through @cert-authority .*known_hosts:1.*cannot negotiate host "
            r"certificates")):
        kh.verify("m", at(tmp_path, "mugen.example.net"), key)
    assert (tmp_path / "known_hosts").read_text() == text  # never trusted on first use
    kh = known(tmp_path, text + line("mugen.example.net", key), strict)
    kh.verify("m", at(tmp_path, "mugen.example.net"), key)  # a plain line still works


def test_accept_new_records_a_first_key(tmp_path: Path) -> None:
    key = new_key()
    kh = known(tmp_path, "", "accept-new")
    kh.verify("n", at(tmp_path, "10.0.0.9", 2200), key)
    assert (tmp_path / "known_hosts").read_text() == line("[10.0.0.9]:2200", key)
    kh.verify("n", at(tmp_path, "10.0.0.9", 2200), key)  # now known: accepted, not appended twice
    assert len((tmp_path / "known_hosts").read_text().splitlines()) == 1


def test_unknown_key_advice_names_the_configured_file(tmp_path: Path) -> None:
    with pytest.raises(HostKeyError, match=(
            rf"`ssh-keyscan -t ecdsa-sha2-nistp256 -p 2200 box >> {tmp_path / 'known_hosts'}`")):
        known(tmp_path, "").verify("b", at(tmp_path, "box", 2200), new_key())


def test_ssh_config_decides_where_a_host_key_is_looked_up(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host box\n  HostName 10.0.0.7\n  Port 2200\n  HostKeyAlias Build-Box\n"
                      f"  UserKnownHostsFile {tmp_path}/team_hosts none\n"
                      f"  GlobalKnownHostsFile {tmp_path}/g1 {tmp_path}/g2\n"
                      f"  RevokedHostKeys {tmp_path}/revoked\n")
    resolver = SSHResolver(SSHSettings(config=str(config), known_hosts=str(tmp_path / "kh")))
    lookup = resolver.resolve("box").host_keys
    assert lookup == HostKeyLookup("build-box", "10.0.0.7", 2200,
                                   (tmp_path / "kh", tmp_path / "team_hosts"),
                                   (tmp_path / "g1", tmp_path / "g2"), (tmp_path / "revoked",),
                                   alias=True)
    plain = resolver.resolve("root@Other.Example:2222").host_keys
    assert plain is not None and plain.name == "[other.example]:2222"
    assert plain.global_files == (Path("/etc/ssh/ssh_known_hosts"),
                                  Path("/etc/ssh/ssh_known_hosts2"))


@pytest.mark.parametrize(("text", "seconds"), [("5", 5), ("5s", 5), ("1m", 60), ("1m30s", 90),
                                               ("2h", 7200)])
def test_openssh_times(text: str, seconds: float) -> None:
    assert openssh_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "fast", "-1"])
def test_openssh_times_refused(text: str) -> None:
    with pytest.raises(ValueError):
        openssh_seconds(text)
