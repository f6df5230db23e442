"""Run the real CLI in a real pseudo-terminal of a given size and read what it printed.

A pty (not a pipe) is what makes rich see a terminal and lay tables out for its width; the size
is set with TIOCSWINSZ before the program starts, as a terminal emulator does.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterable
from pathlib import Path

from rich.cells import cell_len

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
# words a compact layout may add: short headers, the beneath separator and prefixes
LAYOUT_WORDS = {"·", "on", "branch", "unc", "mem", "last", "L/C", "SESS", "C", "ACTIVE"}


def run_in_pty(args: list[str], columns: int, *, env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float = 120) -> str:
    """The CLI's output in a ``columns``-wide terminal, escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in (env or os.environ).items() if k not in ("COLUMNS", "LINES")}
    environ["TERM"] = "xterm-256color"
    proc = subprocess.Popen([sys.executable, "-m", "miyabi_ctl", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=environ, cwd=cwd, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the program ended and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=timeout)
    os.close(master)
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r", "")


def assert_fits(screen: str, columns: int, piped: str, extra: Iterable[str] = ()) -> None:
    """Every line fits the terminal, and every word on it is a whole word of the piped output
    (or a layout word), or the start of one cut with ``…``: no word broken mid-letter — unless
    the word is longer than the terminal is wide.
    Digits are compared as shapes (a load of 2.27 piped may be 2.31 a moment later)."""
    for line in screen.splitlines():
        assert cell_len(line) <= columns, f"{cell_len(line)} > {columns}: {line!r}"
    allowed = {_shape(w) for w in (*piped.split(), *LAYOUT_WORDS, *extra)}
    too_long = [w for w in allowed if cell_len(w) > columns]  # folded: nothing else fits
    for word in map(_shape, screen.split()):
        if word in allowed or any(word in w for w in too_long):
            continue
        stem = word.removesuffix("…")
        assert word.endswith("…") and any(w.startswith(stem) for w in allowed), (
            f"{word!r} is not a whole word at {columns} columns:\n{screen}")


def _shape(word: str) -> str:
    return re.sub(r"\d+", "0", word)
