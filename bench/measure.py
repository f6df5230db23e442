"""Run one command and measure it: wall time, CPU of its whole process tree, peak memory.

Timing runs are not disturbed by sampling: ``os.wait4`` gives the tree's CPU time (the child and
every descendant it waited for). The largest single process's max RSS comes from GNU time, which
runs the command: Linux records the RSS of the process that forks into the child's ``ru_maxrss``
at exec, so a bench runner's own 60 MB would show up in every tool's figure; GNU time is 2 MB.
The tree's peak memory (sum of RSS and of PSS over every live descendant: Ansible forks workers,
OpenSSH is one process per host) needs sampling, so it is taken in a separate run
(``sample_memory=True``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

GNU_TIME = "/usr/bin/time"


@dataclass
class Measurement:
    wall_s: float
    cpu_s: float          # user + system of the whole tree
    max_rss_mb: float | None   # the largest single process of the tree (None without GNU time)
    exit_code: int
    stdout: str
    stderr: str
    tree_rss_mb: float | None = None   # sampled: sum of RSS over the tree (counts shared pages N×)
    tree_pss_mb: float | None = None   # sampled: sum of PSS (shared pages split between sharers)


def run(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
        timeout: float = 600, sample_memory: bool = False,
        stdin_text: str | None = None) -> Measurement:
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="bench-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file, *argv]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    started = time.monotonic()
    stdin: int | IO[bytes] = subprocess.DEVNULL
    if stdin_text is not None:  # from a file: nothing of ours runs while it is read
        stdin = tempfile.TemporaryFile()  # noqa: SIM115  (closed once the child holds it)
        stdin.write(stdin_text.encode())
        stdin.seek(0)
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=out_w,
                            stderr=err_w)
    if not isinstance(stdin, int):
        stdin.close()
    os.close(out_w)
    os.close(err_w)
    readers = [threading.Thread(target=_drain, args=(fd, chunks[fd]), daemon=True)
               for fd in (out_r, err_r)]
    for reader in readers:
        reader.start()
    sampler = _MemorySampler(proc.pid) if sample_memory else None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if sampler is not None:
        sampler.stop()
    for reader in readers:
        reader.join()
    max_rss_mb = None
    if rss_file is not None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            max_rss_mb = int(Path(rss_file).read_text().split()[-1]) / 1024
        os.unlink(rss_file)
    return Measurement(
        wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, max_rss_mb=max_rss_mb,
        exit_code=proc.returncode, stdout=b"".join(chunks[out_r]).decode(errors="replace"),
        stderr=b"".join(chunks[err_r]).decode(errors="replace"),
        tree_rss_mb=sampler.peak_rss / 2**20 if sampler else None,
        tree_pss_mb=sampler.peak_pss / 2**20 if sampler else None)


def _drain(fd: int, sink: list[bytes]) -> None:
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read1(65536):
            sink.append(chunk)


class _MemorySampler:
    """Every 20 ms: the RSS and PSS summed over the process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.02):
        import psutil

        self._root = psutil.Process(pid)
        self._interval = interval
        self._done = threading.Event()
        self.peak_rss = 0
        self.peak_pss = 0
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._done.is_set():
            rss = pss = 0
            try:
                tree = [self._root, *self._root.children(recursive=True)]
            except psutil.Error:
                break
            for proc in tree:
                proc_rss, proc_pss = _rss_pss(proc.pid)
                rss += proc_rss
                pss += proc_pss
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._done.wait(self._interval)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _rss_pss(pid: int) -> tuple[int, int]:
    """RSS and PSS of one process in bytes, from /proc/PID/smaps_rollup (0 if it is gone)."""
    values = {"Rss:": 0, "Pss:": 0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                name = line.split(maxsplit=1)[0]
                if name in values:
                    values[name] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values["Rss:"], values["Pss:"]
