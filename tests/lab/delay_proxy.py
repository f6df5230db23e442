"""A slow link for the lab: a TCP proxy that holds every byte for half the round trip in each
direction, so a lab host behind it is as far away as a machine over a mobile network or across
an ocean (100 ms RTT by default). Used by the lab tests (multiplexing) and bench/reach.py.

Each direction of a connection is a reader that stamps what it reads with the time it is due and
a writer that sends it then, so bytes keep their order and the link's throughput is the
machine's: only latency is added. It counts the connections it accepted, which is how a test
sees whether a client opened a new SSH connection or reused one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque


class DelayProxy:
    """``127.0.0.1:<port>`` → ``target``, ``rtt`` seconds of round trip added."""

    def __init__(self, target: tuple[str, int], rtt: float = 0.1, listen: str = "127.0.0.1"):
        self.target = target
        self.delay = rtt / 2
        self.listener = socket.create_server((listen, 0))
        self.address, self.port = self.listener.getsockname()[:2]
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="delay-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.connections += 1
                self._sockets += [client, upstream]
            _Pipe(client, upstream, self.delay)
            _Pipe(upstream, client, self.delay)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Pipe:
    """One direction: what ``source`` sends reaches ``sink`` ``delay`` seconds later."""

    def __init__(self, source: socket.socket, sink: socket.socket, delay: float):
        self.source, self.sink, self.delay = source, sink, delay
        self.queue: deque[tuple[float, bytes]] = deque()
        self.ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True, name="delay-read").start()
        threading.Thread(target=self._write, daemon=True, name="delay-write").start()

    def _read(self) -> None:
        while True:
            try:
                data = self.source.recv(65536)
            except OSError:
                data = b""
            with self.ready:
                self.queue.append((time.monotonic() + self.delay, data))
                self.ready.notify()
            if not data:
                return

    def _write(self) -> None:
        while True:
            with self.ready:
                while not self.queue:
                    self.ready.wait()
                due, data = self.queue.popleft()
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                if not data:
                    self.sink.shutdown(socket.SHUT_WR)
                    return
                self.sink.sendall(data)
            except OSError:
                return
