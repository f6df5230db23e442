"""The controller itself as a host: the same scripts, run as local processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from typing import Any

from miyabi_ctl.connectors.base import Host, RunResult
from miyabi_ctl.errors import CommandTimeout
from miyabi_ctl.inventory import HostSpec


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
            end_group(proc)  # the command's children too, not only its shell
            raise CommandTimeout(self.name, f"command timed out after {limit:g}s") from None
        return RunResult(self.name, command, proc.returncode, out, err,
                         time.monotonic() - started)


def end_group(proc: subprocess.Popen[Any]) -> None:
    """TERM the process group, give it two seconds, then KILL what is left."""
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
