"""Where and as whom to connect: an ``ssh:`` target resolved through ~/.ssh/config as OpenSSH
would (aliases, HostName, User, Port, IdentityFile, CertificateFile, ProxyCommand, ProxyJump,
ConnectTimeout, and where its host key is looked up: HostKeyAlias, UserKnownHostsFile,
GlobalKnownHostsFile, RevokedHostKeys), and the keys."""

from __future__ import annotations

import getpass
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import paramiko

from miyabi_ctl.connectors.hostkeys import GLOBAL_KNOWN_HOSTS, HostKeyLookup
from miyabi_ctl.connectors.proxy import FILE_TOKENS, PROXY_TOKENS, expand_tokens
from miyabi_ctl.connectors.target import parse_target
from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory import HostSpec, SSHSettings

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


class _Config(paramiko.SSHConfig):
    """paramiko's reader, leaving ProxyCommand's tokens to us: ssh expands them with the host's
    final user and port (``user@host:port`` in fleet.yaml overrides the file's), and knows %%
    and %n, which paramiko does not."""

    TOKENS_BY_CONFIG_KEY: ClassVar[dict[str, list[str]]] = {
        **paramiko.SSHConfig.TOKENS_BY_CONFIG_KEY, "proxycommand": []}


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to connect, after ~/.ssh/config is applied."""

    alias: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    proxy_jump: str | None
    connect_timeout: float
    host_keys: HostKeyLookup | None = None  # None only for a host whose config is unusable
    proxy_command: str | None = None  # tokens expanded
    certificate_files: tuple[str, ...] = ()


class SSHResolver:
    """Turns an ``ssh:`` target into an Endpoint the way OpenSSH would (config parsed once)."""

    def __init__(self, settings: SSHSettings):
        self.settings = settings
        self.config: paramiko.SSHConfig = _Config()
        if settings.config:
            path = Path(settings.config).expanduser()
            if path.is_file():
                try:
                    self.config = _Config.from_path(str(path))
                except (OSError, ValueError, paramiko.SSHException) as exc:
                    raise InventoryError(f"cannot read the OpenSSH config: {exc}",
                                         path=path) from None
        self._keys: dict[str, paramiko.PKey | Exception] = {}
        self._keys_lock = threading.Lock()

    def known_hosts_files(self) -> list[Path]:
        return [Path(self.settings.known_hosts).expanduser()]

    def host_key_lookup(self, hostname: str, port: int, conf: dict[str, Any]) -> HostKeyLookup:
        """Where OpenSSH would look this host's key up: fleet.yaml's ``ssh.known_hosts`` (where
        accept-new records) plus the host's ``UserKnownHostsFile``; ``GlobalKnownHostsFile``
        (default /etc/ssh/ssh_known_hosts{,2}); ``RevokedHostKeys``; under ``HostKeyAlias``."""
        user = self.known_hosts_files()
        for path in _paths(conf.get("userknownhostsfile")):
            if path not in user:
                user.append(path)
        configured = conf.get("globalknownhostsfile")
        global_files = tuple(_paths(configured)) if configured else GLOBAL_KNOWN_HOSTS
        return HostKeyLookup.for_host(hostname, port, tuple(user), alias=conf.get("hostkeyalias"),
                                      global_files=global_files,
                                      revoked_files=tuple(_paths(conf.get("revokedhostkeys"))))

    def resolve(self, target: str, spec: HostSpec | None = None) -> Endpoint:
        """Raises ValueError for values OpenSSH would reject (``Port 22x``)."""
        parsed = parse_target(target)
        conf: dict[str, Any] = self.config.lookup(parsed.host)
        identities = []
        if spec and spec.identity_file:
            identities.append(spec.identity_file)
        identities.extend(conf.get("identityfile", []))
        timeout = self.settings.connect_timeout
        if "connecttimeout" in conf:
            timeout = min(timeout, openssh_seconds(conf["connecttimeout"]))
        hostname = conf.get("hostname", parsed.host)
        port = parsed.port or _port(conf.get("port", "22"))
        user = parsed.user or conf.get("user") or _local_user()
        tokens = {"h": hostname, "n": parsed.host, "p": str(port), "r": user,
                  "u": _local_user(), "d": os.path.expanduser("~")}
        # fleet.yaml's proxy_jump is ssh's -J: it wins. Between the file's ProxyCommand and
        # ProxyJump ssh takes the first written; paramiko's reader cannot say which that was,
        # so ProxyCommand wins (docs/fleet.md).
        jump = spec.proxy_jump if spec and spec.proxy_jump else None
        command = None if jump else conf.get("proxycommand")
        if not jump and not command:
            jump = conf.get("proxyjump")
        certificates = conf.get("certificatefile")
        return Endpoint(
            alias=parsed.host,
            hostname=hostname,
            port=port,
            user=user,
            identity_files=tuple(str(Path(p).expanduser()) for p in identities),
            proxy_jump=None if jump in (None, "none") else jump,
            connect_timeout=timeout,
            host_keys=self.host_key_lookup(hostname, port, conf),
            proxy_command=(expand_tokens(command, tokens, PROXY_TOKENS, "ProxyCommand")
                           if command and command.lower() != "none" else None),
            certificate_files=tuple(
                str(Path(expand_tokens(c, tokens, FILE_TOKENS, "CertificateFile")).expanduser())
                for c in ([certificates] if isinstance(certificates, str) else certificates or [])
                if c.lower() != "none"),
        )

    def load_key(self, path: str) -> paramiko.PKey | None:
        """A private key file, parsed once per fleet (200 hosts share one parse)."""
        with self._keys_lock:
            cached = self._keys.get(path)
            if cached is None:
                try:
                    cached = paramiko.PKey.from_path(path)
                except FileNotFoundError as exc:
                    cached = exc
                except (paramiko.SSHException, OSError, ValueError, TypeError) as exc:
                    # TypeError: cryptography's "Key is password-protected" (paramiko >= 3.2)
                    cached = exc
                self._keys[path] = cached
        return cached if isinstance(cached, paramiko.PKey) else None

    def key_problem(self, path: str) -> str:
        """Why ``load_key`` gave nothing for ``path``, in words (a passphrase: use ssh-agent)."""
        problem = self._keys.get(path)
        if isinstance(problem, paramiko.PasswordRequiredException) or (
                isinstance(problem, TypeError) and "password" in str(problem)):
            return "protected by a passphrase: add it to ssh-agent (ssh-add), or name a key without one"
        if isinstance(problem, FileNotFoundError):
            return "no such file"
        if isinstance(problem, PermissionError):
            return "not readable by this user"
        return "not a private key paramiko can read"


_TIME_RE = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def openssh_seconds(text: str) -> float:
    """An ssh_config time (``5``, ``5s``, ``1m30s``) in seconds, as OpenSSH's convtime reads it."""
    parts = _TIME_RE.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"ConnectTimeout {text!r} is not a time (e.g. 5, 5s, 1m)")
    return float(sum(int(n) * _TIME_UNITS[u.lower()] for n, u in parts))


def _paths(value: str | list[str] | None) -> list[Path]:
    """An ssh_config list of files (``none`` means no file)."""
    words = value if isinstance(value, list) else (value or "").split()
    return [Path(w).expanduser() for w in words if w.lower() != "none"]


def _port(text: str) -> int:
    if not str(text).isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"Port {text!r} is not a port number")
    return int(text)


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "root"
