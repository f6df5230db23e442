"""The fleet: every host of the inventory, and one way to do something on all of them at once.

``Fleet.map(fn)`` runs ``fn(host)`` on a capped thread pool and returns a ``FleetResult``: per
host, either the value or the HostError — partial failure is data, never an exception that loses
the others. A global deadline bounds the whole call: a host that overruns it is closed and
reported. The fleet is a thin wrapper round the one-host ``Host`` objects of ``connectors/``.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from miyabi_ctl.connectors.base import Host, Warn, log_warning
from miyabi_ctl.connectors.local import LocalHost
from miyabi_ctl.errors import CommandTimeout, HostError, InternalError
from miyabi_ctl.inventory import HostSpec, Inventory

if TYPE_CHECKING:
    from miyabi_ctl.connectors.hostkeys import KnownHosts
    from miyabi_ctl.connectors.ssh import JumpPool, SSHResolver

T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """One host's result of a fleet operation: a value or an error, and how long it took."""

    host: str
    value: T | None = None
    error: HostError | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class FleetResult(list[Outcome[T]]):
    """Every host's outcome, in inventory order; ``.succeeded`` and ``.failed`` split them."""

    @property
    def succeeded(self) -> list[Outcome[T]]:
        return [o for o in self if o.ok]

    @property
    def failed(self) -> list[Outcome[T]]:
        return [o for o in self if not o.ok]

    def by_host(self) -> dict[str, Outcome[T]]:
        return {o.host: o for o in self}


class Fleet:
    """The hosts of an inventory (or a selection of them), with their connections."""

    def __init__(self, inventory: Inventory, names: list[str] | None = None, *,
                 forks: int | None = None, connect_timeout: float | None = None,
                 command_timeout: float | None = None, warn: Warn = log_warning):
        settings = inventory.ssh
        if connect_timeout is not None:
            settings = dataclasses.replace(settings, connect_timeout=connect_timeout)
        if command_timeout is not None:
            settings = dataclasses.replace(settings, command_timeout=command_timeout)
        self.inventory = inventory
        self.settings = settings
        self.forks = max(1, forks or settings.max_parallel)
        self.specs = inventory.select(names)
        self.warn = warn  # what a connector says that is not an error (an unwritable known_hosts)
        self._resolver: SSHResolver | None = None
        self._known_hosts: KnownHosts | None = None
        self._jumps: JumpPool | None = None
        self.hosts: list[Host] = [self._make_host(spec) for spec in self.specs]

    def _make_host(self, spec: HostSpec) -> Host:
        if spec.transport == "local":
            return LocalHost(spec, self.settings.command_timeout)
        if (spec.client or self.settings.client) == "openssh":
            from miyabi_ctl.connectors.openssh import OpenSSHHost  # the ssh program: no paramiko

            return OpenSSHHost(spec, self.settings, warn=self.warn)
        from miyabi_ctl.connectors.hostkeys import KnownHosts  # paramiko: only when SSH is used
        from miyabi_ctl.connectors.ssh import JumpPool, SSHHost, SSHResolver

        if self._resolver is None:
            self._resolver = SSHResolver(self.settings)
            self._known_hosts = KnownHosts(self.settings.strict_host_keys, self.warn)
            self._jumps = JumpPool(self._resolver, self._known_hosts)
        assert self._known_hosts is not None
        return SSHHost(spec, self.settings, self._resolver, self._known_hosts, self._jumps)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def deadline_s(self) -> float:
        """The most one operation may take on one host: connect, then the command."""
        return self.settings.connect_timeout + self.settings.command_timeout + 1.0

    def map(self, fn: Callable[[Host], T], *, deadline_s: float | None = None,
            close_after: bool = False) -> FleetResult[T]:
        """Run ``fn`` on every host, at most ``forks`` at a time; outcomes in inventory order.

        ``close_after`` closes each host's connection as soon as ``fn`` is done with it: for
        one-shot commands, since an idle paramiko transport still wakes up ten times a second
        while the other hosts are being worked on (docs/performance.md).
        """
        limit = deadline_s or self.deadline_s
        outcomes = {h.name: Outcome[T](h.name) for h in self.hosts}
        if not self.hosts:
            return FleetResult()

        def call(host: Host) -> None:
            started = time.monotonic()
            outcome = outcomes[host.name]
            try:
                outcome.value = fn(host)
            except HostError as exc:
                outcome.error = exc
            except Exception as exc:  # a bug or odd reply must not sink the other hosts
                outcome.error = InternalError(host.name, f"{type(exc).__name__}: {exc}")
            outcome.duration_s = time.monotonic() - started
            if close_after:
                host.close()

        pool = cf.ThreadPoolExecutor(max_workers=min(self.forks, len(self.hosts)),
                                     thread_name_prefix="miyabi-host")
        futures = {pool.submit(call, h): h for h in self.hosts}
        # Each host's own timeouts normally end it; the fleet deadline is the backstop, counted
        # from when the host could start (queued hosts wait for a free worker).
        waves = -(-len(self.hosts) // self.forks)
        _, late = cf.wait(futures, timeout=limit * waves)
        for future in late:
            host = futures[future]
            if not future.cancel():
                host.close()  # unblocks the worker's socket read
            outcomes[host.name].error = CommandTimeout(host.name, f"no answer within {limit:g}s")
        pool.shutdown(wait=False, cancel_futures=True)
        return FleetResult(outcomes[h.name] for h in self.hosts)

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        if self._jumps is not None:
            self._jumps.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
