"""What happens at the program's edge, before and around the commands: logging, argv, check's
own failures. Kept apart from the commands so each rule is written once.

- stderr carries our messages only: libraries (paramiko logs every failed handshake with a
  traceback from its reader thread) are silent unless ``--verbose`` or ``--debug`` asks.
- ``status --watch`` takes an optional value (``--watch``, ``--watch 5``, ``-w``): Click's
  optional-value options are gone from the typer versions pip resolves today, so the default is
  put in the argument list before parsing.
- ``check`` fails as a monitoring plugin must: one ``MIYABI UNKNOWN - …`` line, exit 3.
"""

from __future__ import annotations

import sys

WATCH_OPTIONS = ("--watch", "-w")
WATCH_DEFAULT = "2"
UNKNOWN_EXIT = 3


def configure_logging(*, debug: bool = False, verbose: bool = False) -> None:
    """Route every library's logging (and Python warnings) to stderr only when asked.

    Called once per run, by the root callback, before any command.
    Quiet, the root logger has a NullHandler, so Python's last-resort handler never prints
    paramiko's ``Exception (client): Error reading SSH protocol banner`` and its traceback.
    """
    import logging  # here, not at start-up: `--help` stays fast
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_miyabi", False):
            root.removeHandler(handler)
    handler: logging.Handler
    if debug or verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("miyabi-ctl: %(name)s: %(levelname)s: %(message)s"))
        root.setLevel(logging.DEBUG if debug else logging.WARNING)
    else:
        handler = logging.NullHandler()
        root.setLevel(logging.CRITICAL + 1)
    handler._miyabi = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    logging.captureWarnings(True)


def command_of(args: list[str]) -> str | None:
    """The subcommand named in ``args`` (root options come before it and take no value)."""
    return next((a for a in args if not a.startswith("-")), None)


def with_watch_default(args: list[str]) -> list[str]:
    """``status --watch`` / ``-w`` without a number gets the documented default (2 s)."""
    if command_of(args) != "status":
        return args
    out: list[str] = []
    for i, arg in enumerate(args):
        if "--" in args[:i]:  # after `--` everything is a host name
            out.append(arg)
            continue
        out.append(arg)
        if arg in WATCH_OPTIONS:
            following = args[i + 1] if i + 1 < len(args) else None
            if following is None or not _is_number(following):
                out.append(WATCH_DEFAULT)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def usage_error_class() -> type[Exception]:
    """Click's ClickException, from whichever Click this typer uses (vendored since 0.22)."""
    import typer

    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def check_failure(message: str, *, json_out: bool) -> int:
    """Print check's own failure as the monitoring-plugins UNKNOWN line; return 3."""
    import json

    line = unknown_line(message)
    if json_out:
        sys.stdout.write(json.dumps({"state": "UNKNOWN", "exit_code": UNKNOWN_EXIT, "line": line,
                                     "error": message}, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(line + "\n")
    return UNKNOWN_EXIT


def unknown_line(message: str) -> str:
    """One line, no ``|`` (it would start perfdata), bounded."""
    text = " ".join(message.split()).replace("|", "¦")
    if len(text) > 1000:
        text = text[:999] + "…"
    return f"MIYABI UNKNOWN - {text}"
