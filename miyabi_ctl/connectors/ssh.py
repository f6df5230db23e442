"""A machine reached over SSH with paramiko: lazy, reused connection, directly, through a
ProxyCommand or a ProxyJump; host key checked before authenticating (``auth``); every step bounded
by a timeout (DNS, connect, handshake, auth, command)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from typing import Any

import paramiko

from miyabi_ctl.connectors.auth import authenticate
from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.connectors.hostkeys import HostKeyLookup, KnownHosts
from miyabi_ctl.connectors.proxy import ProxyProcess
from miyabi_ctl.connectors.ssh_config import Endpoint, SSHResolver
from miyabi_ctl.errors import CommandTimeout, HostError, Unreachable
from miyabi_ctl.inventory import HostSpec, SSHSettings


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
                close_transport(self._transport)
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
        close_transport(transport)

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
            raise Unreachable(name, f"jump host {first_hop} cannot reach {host_port(hostname, port)}: "
                                    f"{exc}") from None

    def close(self) -> None:
        with self._lock:
            for transport in self._transports.values():
                close_transport(transport)
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
    where = host_port(endpoint.hostname, endpoint.port)
    sock: Any
    proxy: ProxyProcess | None = None
    if endpoint.proxy_command:
        try:
            proxy = ProxyProcess(endpoint.proxy_command)
        except OSError as exc:
            raise Unreachable(name, f"cannot run ProxyCommand {endpoint.proxy_command!r}: "
                                    f"{exc.strerror or exc}") from None
        sock = proxy.sock
        where = f"{where} (ProxyCommand {endpoint.proxy_command})"
    elif endpoint.proxy_jump:
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
    transport.miyabi_proxy = proxy  # type: ignore[attr-defined]  # ended with the transport
    options = transport.get_security_options()
    lookup = endpoint.host_keys or HostKeyLookup.for_host(
        endpoint.hostname, endpoint.port, tuple(resolver.known_hosts_files()))
    options.key_types = known_hosts.preferred_algorithms(lookup, tuple(options.key_types))
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
            said = proxy.last_words() if proxy is not None else ""
            raise Unreachable(name, f"SSH handshake with {where} failed: "
                                    f"{exc or type(exc).__name__}"
                                    + (f"; the ProxyCommand said: {said}" if said else "")) from None
        known_hosts.verify(name, lookup, key)
        authenticate(name, transport, endpoint, resolver)
    except BaseException:
        close_transport(transport)
        raise
    return transport


def host_port(host: str, port: int) -> str:
    """``10.0.0.5:22``, ``[fe80::1]:22``: an IPv6 address is bracketed, as OpenSSH writes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def close_transport(transport: paramiko.Transport, wait: float = 1.0) -> None:
    """Close without racing paramiko's reader thread.

    ``Transport.close`` closes the socket while the thread may still be reading it (a host that
    accepted TCP but never sent its banner): the thread then fails on a closed descriptor
    (``Bad file descriptor``). Shutting the socket down first makes its read return end-of-file;
    the thread ends on its own, and only then is the socket closed.
    """
    if isinstance(transport.sock, socket.socket):  # through a ProxyJump it is a channel, no fd
        with contextlib.suppress(OSError):
            transport.sock.shutdown(socket.SHUT_RDWR)
        if transport.is_alive() and transport is not threading.current_thread():
            transport.join(wait)
    transport.close()
    proxy = getattr(transport, "miyabi_proxy", None)
    if proxy is not None:
        proxy.close()
