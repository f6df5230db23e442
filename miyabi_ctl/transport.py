"""One host: run a command there and get a result back, locally or over SSH.

``Host.run`` is the only way commands reach a machine. ``SSHHost`` connects lazily on first use,
keeps the connection for the next command (``status --watch`` reuses it), verifies the host key
against known_hosts before authenticating, and bounds every step with a timeout. Errors are one
hierarchy (``miyabi_ctl.errors``): unreachable, auth, host key, timeout, command failed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from miyabi_ctl.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimeout,
    HostError,
    InventoryError,
    Unreachable,
)
from miyabi_ctl.hostkeys import KnownHosts
from miyabi_ctl.inventory import HostSpec, SSHSettings
from miyabi_ctl.sshtarget import parse_target

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class RunResult:
    """A finished command: where it ran, how it ended, what it printed."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Host:
    """One machine of the fleet. Subclasses say how commands get there."""

    def __init__(self, spec: HostSpec):
        self.spec = spec
        self.name = spec.name

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = None,
            check: bool = False) -> RunResult:
        result = self._run(command, stdin, timeout)
        if check and not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
            raise CommandFailed(self.name, f"exit {result.exit_code}: {detail[0]}", result)
        return result

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
        raise NotImplementedError

    def close(self) -> None:
        """Drop any open connection; the next run reconnects."""

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalHost(Host):
    """The controller itself: the same commands, run as local processes."""

    def __init__(self, spec: HostSpec, command_timeout: float = 30.0):
        super().__init__(spec)
        self.command_timeout = command_timeout

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
        limit = timeout or self.command_timeout
        started = time.monotonic()
        proc = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True)
        try:
            out, err = proc.communicate(stdin, timeout=limit)
        except subprocess.TimeoutExpired:
            _end_group(proc)  # the command's children too, not only its shell
            raise CommandTimeout(self.name, f"command timed out after {limit:g}s") from None
        return RunResult(self.name, command, proc.returncode, out, err,
                         time.monotonic() - started)


def _end_group(proc: subprocess.Popen[str]) -> None:
    """TERM the process group, give it two seconds, then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


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


class SSHResolver:
    """Turns an ``ssh:`` target into an Endpoint the way OpenSSH would (config parsed once)."""

    def __init__(self, settings: SSHSettings):
        self.settings = settings
        self.config = paramiko.SSHConfig()
        if settings.config:
            path = Path(settings.config).expanduser()
            if path.is_file():
                try:
                    self.config = paramiko.SSHConfig.from_path(str(path))
                except (OSError, ValueError, paramiko.SSHException) as exc:
                    raise InventoryError(f"cannot read the OpenSSH config: {exc}",
                                         path=path) from None
        self._keys: dict[str, paramiko.PKey | Exception] = {}
        self._keys_lock = threading.Lock()

    def known_hosts_files(self) -> list[Path]:
        return [Path(self.settings.known_hosts).expanduser()]

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
        jump = (spec.proxy_jump if spec and spec.proxy_jump else None) or conf.get("proxyjump")
        return Endpoint(
            alias=parsed.host,
            hostname=conf.get("hostname", parsed.host),
            port=parsed.port or _port(conf.get("port", "22")),
            user=parsed.user or conf.get("user") or _local_user(),
            identity_files=tuple(str(Path(p).expanduser()) for p in identities),
            proxy_jump=None if jump in (None, "none") else jump,
            connect_timeout=timeout,
        )

    def extra_known_hosts(self, alias: str) -> list[Path]:
        conf = self.config.lookup(alias)
        files = conf.get("userknownhostsfile", "")
        return [Path(p).expanduser() for p in files.split()] if files else []

    def load_key(self, path: str) -> paramiko.PKey | None:
        """A private key file, parsed once per fleet (200 hosts share one parse)."""
        with self._keys_lock:
            cached = self._keys.get(path)
            if cached is None:
                try:
                    cached = paramiko.PKey.from_path(path)
                except FileNotFoundError as exc:
                    cached = exc
                except (paramiko.SSHException, OSError, ValueError) as exc:
                    cached = exc
                self._keys[path] = cached
        return cached if isinstance(cached, paramiko.PKey) else None


_TIME_RE = re.compile(r"(\d+)([smhdw]?)", re.IGNORECASE)
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def openssh_seconds(text: str) -> float:
    """An ssh_config time (``5``, ``5s``, ``1m30s``) in seconds, as OpenSSH's convtime reads it."""
    parts = _TIME_RE.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise ValueError(f"ConnectTimeout {text!r} is not a time (e.g. 5, 5s, 1m)")
    return float(sum(int(n) * _TIME_UNITS[u.lower()] for n, u in parts))


def _port(text: str) -> int:
    if not str(text).isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"Port {text!r} is not a port number")
    return int(text)


def _local_user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except (KeyError, OSError):
        return "root"


class SSHHost(Host):
    """A machine reached over SSH with paramiko. The connection opens on first use and is reused."""

    def __init__(self, spec: HostSpec, settings: SSHSettings, resolver: SSHResolver,
                 known_hosts: KnownHosts, jumps: JumpPool | None = None):
        super().__init__(spec)
        self.settings = settings
        self.resolver = resolver
        self.known_hosts = known_hosts
        self.jumps = jumps
        self._config_error: str | None = None
        try:
            self.endpoint = resolver.resolve(spec.ssh or spec.name, spec)
        except ValueError as exc:  # this host's ssh_config block is wrong; the others are fine
            self._config_error = str(exc)
            self.endpoint = Endpoint(spec.name, spec.name, 22, "", (), None,
                                     settings.connect_timeout)
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        self._expired = False

    # -- connection ---------------------------------------------------------------------------

    def connect(self) -> paramiko.Transport:
        if self._config_error:
            raise HostError(self.name, f"ssh config: {self._config_error}")
        with self._lock:
            if self._transport is not None and self._transport.is_active():
                return self._transport
            self._transport = open_transport(self.name, self.endpoint, self.resolver,
                                              self.known_hosts, self.jumps)
            return self._transport

    def close(self) -> None:
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    # -- commands -----------------------------------------------------------------------------

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
        limit = timeout or self.settings.command_timeout
        started = time.monotonic()
        transport = self.connect()
        try:
            channel = transport.open_session(timeout=self.endpoint.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            raise Unreachable(self.name, f"connection lost: {exc or type(exc).__name__}") from None
        # A peer that vanishes without a reset would leave paramiko waiting forever in places
        # that take no timeout (exec_command, sendall): past the deadline, close the connection.
        self._expired = False
        watchdog = threading.Timer(limit + 1.0, self._expire, args=(transport,))
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._exchange(channel, command, stdin, started, limit)
        finally:
            watchdog.cancel()
            channel.close()

    def _expire(self, transport: paramiko.Transport) -> None:
        self._expired = True
        transport.close()

    def _exchange(self, channel: paramiko.Channel, command: str, stdin: str | None,
                  started: float, limit: float) -> RunResult:
        deadline = started + limit
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(self.name, f"command timed out after {limit:g}s")
                # Block on stdout in short slices so stderr is drained too (no window deadlock).
                channel.settimeout(min(remaining, 0.5))
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    chunk = None
                while channel.recv_stderr_ready():
                    err.append(channel.recv_stderr(65536))
                if chunk == b"":
                    break
                if chunk:
                    out.append(chunk)
            while not channel.exit_status_ready():
                if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                    raise CommandTimeout(self.name, f"command timed out after {limit:g}s")
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(65536))
            code = channel.recv_exit_status()
        except CommandTimeout:
            self.close()  # the remote command may still run; a fresh connection is cleaner
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.close()
            if self._expired:
                raise CommandTimeout(self.name, f"command timed out after {limit:g}s") from None
            raise Unreachable(self.name, f"connection lost: {exc or type(exc).__name__}") from None
        return RunResult(self.name, command, code, b"".join(out).decode(errors="replace"),
                         b"".join(err).decode(errors="replace"), time.monotonic() - started)


class JumpPool:
    """ProxyJump connections, one per jump host, shared by every host behind it."""

    def __init__(self, resolver: SSHResolver, known_hosts: KnownHosts):
        self.resolver = resolver
        self.known_hosts = known_hosts
        self._transports: dict[str, paramiko.Transport] = {}
        self._lock = threading.Lock()

    def channel_to(self, name: str, jump: str, hostname: str, port: int,
                   timeout: float) -> paramiko.Channel:
        first_hop = jump.split(",")[0]
        if "," in jump:
            raise Unreachable(name, f"ProxyJump with several hops ({jump}) is not supported; "
                                    "use one hop")
        with self._lock:
            transport = self._transports.get(first_hop)
            if transport is None or not transport.is_active():
                endpoint = self.resolver.resolve(first_hop)
                endpoint = Endpoint(**{**endpoint.__dict__, "proxy_jump": None})
                transport = open_transport(f"{name} (via jump host {first_hop})", endpoint,
                                           self.resolver, self.known_hosts, None)
                self._transports[first_hop] = transport
        try:
            return transport.open_channel("direct-tcpip", (hostname, port), ("127.0.0.1", 0),
                                          timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Unreachable(name, f"jump host {first_hop} cannot reach {hostname}:{port}: "
                                    f"{exc}") from None

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                transport.close()
            self._transports.clear()


def _resolve(hostname: str, port: int, timeout: float) -> tuple[str, int]:
    """Look a name up within ``timeout``: getaddrinfo has no timeout of its own and can hang for
    tens of seconds on a broken resolver. IP literals skip the lookup."""
    try:
        ipaddress.ip_address(hostname)
        return (hostname, port)
    except ValueError:
        pass
    answer: list[tuple[str, int] | BaseException] = []

    def lookup() -> None:
        try:
            info = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
            answer.append(info[0][4][:2])
        except OSError as exc:
            answer.append(exc)

    worker = threading.Thread(target=lookup, daemon=True, name=f"dns-{hostname}")
    worker.start()
    worker.join(timeout)
    if not answer:
        raise TimeoutError(f"DNS lookup of {hostname} timed out")
    if isinstance(answer[0], BaseException):
        raise answer[0]
    return answer[0]


def open_transport(name: str, endpoint: Endpoint, resolver: SSHResolver, known_hosts: KnownHosts,
                   jumps: JumpPool | None) -> paramiko.Transport:
    """Connect, verify the host key, authenticate; every step bounded by the connect timeout."""
    timeout = endpoint.connect_timeout
    where = f"{endpoint.hostname}:{endpoint.port}"
    sock: Any
    if endpoint.proxy_jump:
        if jumps is None:
            raise Unreachable(name, "ProxyJump needs a jump pool")
        sock = jumps.channel_to(name, endpoint.proxy_jump, endpoint.hostname, endpoint.port,
                                timeout)
    else:
        try:
            deadline = time.monotonic() + timeout
            address = _resolve(endpoint.hostname, endpoint.port, timeout)
            sock = socket.create_connection(address, timeout=max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            raise Unreachable(name, f"connect to {where} timed out after {timeout:g}s") from None
        except OSError as exc:
            raise Unreachable(name, f"cannot connect to {where}: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    options = transport.get_security_options()
    options.key_types = known_hosts.preferred_algorithms(endpoint.hostname, endpoint.port,
                                                         tuple(options.key_types))
    transport.banner_timeout = timeout
    transport.handshake_timeout = timeout
    transport.auth_timeout = timeout
    try:
        try:
            transport.start_client(timeout=timeout)
            # start_client returns quietly when its timeout passes mid-negotiation.
            if not transport.is_active() or transport.host_key is None:
                raise Unreachable(name, f"SSH handshake with {where} timed out after {timeout:g}s")
            key = transport.get_remote_server_key()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Unreachable(name, f"SSH handshake with {where} failed: "
                                    f"{exc or type(exc).__name__}") from None
        known_hosts.verify(name, endpoint.hostname, endpoint.port, key)
        _authenticate(name, transport, endpoint, resolver)
    except BaseException:
        transport.close()
        raise
    return transport


def _authenticate(name: str, transport: paramiko.Transport, endpoint: Endpoint,
                  resolver: SSHResolver) -> None:
    """Identity files named for the host first, then the ssh-agent, then the default keys."""
    tried: list[str] = []
    candidates: list[tuple[str, paramiko.PKey]] = []
    for path in endpoint.identity_files:
        key = resolver.load_key(path)
        if key is not None:
            candidates.append((path, key))
        else:
            tried.append(f"{path} (unreadable)")
    if os.environ.get("SSH_AUTH_SOCK"):
        with contextlib.suppress(paramiko.SSHException):
            candidates.extend(("ssh-agent", k) for k in paramiko.Agent().get_keys())
    if not endpoint.identity_files:
        for base in DEFAULT_IDENTITIES:
            path = str(Path("~/.ssh").expanduser() / base)
            if Path(path).is_file():
                key = resolver.load_key(path)
                if key is not None:
                    candidates.append((path, key))
    for label, key in candidates:
        try:
            transport.auth_publickey(endpoint.user, key)
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Unreachable(name, f"connection lost while authenticating: {exc}") from None
        if transport.is_authenticated():
            return
    offered = ", ".join(tried) if tried else "no keys (no identity_file, agent or ~/.ssh/id_*)"
    raise AuthFailed(name, f"{endpoint.user}@{endpoint.hostname} refused every key: {offered}")
