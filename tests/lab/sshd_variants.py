"""Lab hosts for the ways an operator's own ``ssh`` reaches a machine (issue 17), each a real sshd
whose behaviour comes from sshd's documented options, never from what miyabi-ctl expects:

- ``NoneAuthSetup``: an account with an empty password and, for it only, ``PasswordAuthentication
  yes`` and ``PermitEmptyPasswords yes`` (a ``Match User`` block). sshd then accepts the SSH
  ``none`` method for that account (auth2-none.c: an empty password is tried for ``none``), which
  is what Tailscale SSH does for every user it has already authenticated at the network layer.
  The account has no authorized_keys: keys alone never get in.
- ``UserCertSetup``: sshd trusts a user CA (``TrustedUserCAKeys``) and reads no authorized_keys
  (``AuthorizedKeysFile none``): only a key with a certificate signed by that CA gets in.
- ``HostCertSetup``: sshd presents a host certificate (``HostCertificate``) signed by a host CA,
  for the principals given; a client knows it by an ``@cert-authority`` line only.
- ``Relay``: a ``ProxyCommand`` (``python3 relay.py MAP %h %p %r``) that knows a host by a name
  no resolver does and connects to it; it records its arguments and pid, so a test sees the
  tokens it was given and whether it was ended.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from miyabi_ctl.connectors.openssh import end_masters
from tests.lab.harness import HostSetup, LabHost, _git, _run

INNER_USER = "tsuser"
INNER_UID = 2101


def keygen(path: Path, comment: str) -> Path:
    """A fresh ed25519 key pair at ``path`` (no passphrase); returns the private key's path."""
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path


def sign(ca: Path, public: Path, identity: str, principals: list[str], *, host: bool) -> Path:
    """``ssh-keygen -s``: a certificate for ``public`` valid for a day; returns its path."""
    _run(["ssh-keygen", "-q", "-s", str(ca), "-I", identity, *(["-h"] if host else []),
          "-n", ",".join(principals), "-V", "-5m:+1d", str(public)])
    return public.with_name(public.name.removesuffix(".pub") + "-cert.pub")


class NoneAuthSetup(HostSetup):
    """A host that lets ``tsuser`` in with the ``none`` method (empty password, no keys)."""

    user = INNER_USER

    def prepare(self, host: LabHost) -> None:
        home = host.dir / "tshome"
        _git("clone", "-q", str(host.lab.origin), str(home / "miyabi-private"))
        (home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {host.lab.origin}\n")
        for root, dirs, files in os.walk(home):
            for name in [*dirs, *files]:
                os.lchown(os.path.join(root, name), INNER_UID, INNER_UID)
        os.lchown(home, INNER_UID, INNER_UID)
        etc = host.dir / "etc"
        etc.mkdir()
        entries = {
            # The home is in the lab's directory, seen at the same path inside the host.
            "passwd": f"{INNER_USER}:x:{INNER_UID}:{INNER_UID}::{home}:/bin/sh\n",
            "group": f"{INNER_USER}:x:{INNER_UID}:\n",
            "shadow": f"{INNER_USER}::20000:0:99999:7:::\n",  # the empty password
        }
        for name, line in entries.items():
            (etc / name).write_text(Path(f"/etc/{name}").read_text() + line)
        (etc / "shadow").chmod(0o640)
        self.steps += [["bind", str(etc / n), f"/etc/{n}"] for n in entries]
        self.sshd += [f"Match User {INNER_USER}", "    PasswordAuthentication yes",
                      "    PermitEmptyPasswords yes"]


class UserCertSetup(HostSetup):
    """A host that admits only keys certified by ``ca`` (its public half is trusted)."""

    def __init__(self, ca: Path) -> None:
        super().__init__()
        self.ca = ca

    def prepare(self, host: LabHost) -> None:
        self.sshd += [f"TrustedUserCAKeys {self.ca}.pub", "Match all",
                      "    AuthorizedKeysFile none"]


class HostCertSetup(HostSetup):
    """A host presenting a certificate for its ed25519 key, signed by ``ca`` for ``principals``
    (its address is always one)."""

    def __init__(self, ca: Path, principals: list[str]) -> None:
        super().__init__()
        self.ca = ca
        self.principals = principals

    def prepare(self, host: LabHost) -> None:
        key = host.dir / "ssh_host_ed25519_key"
        cert = sign(self.ca, Path(f"{key}.pub"), f"{host.name}-host",
                    [host.address, *self.principals], host=True)
        self.sshd += [f"HostCertificate {cert}"]


RELAY_PY = r'''"""A ProxyCommand: relay.py MAP HOST PORT USER. Connects to MAP[HOST]:PORT and relays
stdin/stdout to it; records its argv and pid in MAP's directory (relay.log, one JSON line each)."""
import json, os, select, socket, sys

mapfile, host, port, user = sys.argv[1:5]
with open(os.path.join(os.path.dirname(mapfile), "relay.log"), "a") as log:
    log.write(json.dumps({"argv": sys.argv[2:], "pid": os.getpid()}) + "\n")
address = json.load(open(mapfile)).get(host)
if address is None:
    sys.exit(f"relay: no route to {host}")
sock = socket.create_connection((address, int(port)))
while True:
    ready, _, _ = select.select([0, sock], [], [])
    for end in ready:
        data = os.read(0, 65536) if end == 0 else sock.recv(65536)
        if not data:
            sys.exit(0)
        if end == 0:
            sock.sendall(data)
        else:
            os.write(1, data)
'''


class Relay:
    """A ProxyCommand that alone knows where ``name`` is (no resolver does: ``*.invalid``)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.script = directory / "relay.py"
        self.script.write_text(RELAY_PY)
        self.map = directory / "map.json"
        self.map.write_text("{}")
        self.log = directory / "relay.log"

    def route(self, name: str, address: str) -> None:
        routes = json.loads(self.map.read_text())
        routes[name] = address
        self.map.write_text(json.dumps(routes))

    @property
    def command(self) -> str:
        """The ssh_config ProxyCommand, with the tokens ssh and miyabi-ctl must expand."""
        return f"/usr/bin/python3 {self.script} {self.map} %h %p %r"

    def calls(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def running(self) -> list[int]:
        """Pids of the relays still alive."""
        alive = []
        for call in self.calls():
            try:
                cmdline = Path(f"/proc/{call['pid']}/cmdline").read_bytes()
            except OSError:
                continue
            if str(self.script).encode() in cmdline:
                state = Path(f"/proc/{call['pid']}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    alive.append(call["pid"])
        return alive


def ssh_reaches(config: Path, alias: str, *extra: str,
                timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """The reference: does the real OpenSSH client, given ``config``, run a command there?"""
    return subprocess.run(["ssh", "-F", str(config), *extra, alias, "echo reached"],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(name="state")
def masters_state(tmp_path: Path) -> Iterator[Path]:
    """The controller's state directory (MIYABI_STATE_DIR for the CLI run in the test); the ssh
    master connections client: openssh opened under it are ended when the test ends (they would
    otherwise stay ControlPersist seconds)."""
    directory = tmp_path / "state"
    directory.mkdir()
    yield directory
    end_masters(directory)
