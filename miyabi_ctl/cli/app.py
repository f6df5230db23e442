"""The command line's root: the app, its groups (one module each), and ``main``.

Heavy modules (paramiko, rich tables) are imported inside the commands so that ``--help`` and
shell completion start fast. ``main()`` is the one place library errors become messages and exit
codes; the root callback is the one place logging is configured (``cli/edge.py``).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from miyabi_ctl import __version__
from miyabi_ctl.cli.edge import (
    check_failure,
    command_of,
    configure_logging,
    usage_error_class,
    with_watch_default,
)

app = typer.Typer(
    name="miyabi-ctl",
    help="See, check, repair and dispatch work across a fleet of machines running AI "
         "coding-agent sessions.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

def _version(value: bool) -> None:
    if value:
        typer.echo(f"miyabi-ctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show library warnings (paramiko, …) on stderr.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show every library log line, and tracebacks of internal errors.")] = False,
) -> None:
    """miyabi-ctl: one view of many machines and their agent sessions."""
    configure_logging(debug=debug, verbose=verbose)  # once, before any command runs


# Each command group lives in a module of its own and registers itself here, one line each.
from miyabi_ctl.cli import dispatch, land, notify, phase0, schedule, status  # noqa: E402

status.register(app)
phase0.register(app)
dispatch.register(app)
land.register(app)
notify.register(app)
schedule.register(app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; turn library errors into one clear line and an exit code."""
    from miyabi_ctl import audit

    try:
        _main(argv)
    finally:
        audit.set_scope(None)  # one call, one fleet: the next call in this process sets its own


def _main(argv: list[str] | None) -> None:
    args = with_watch_default(list(sys.argv[1:] if argv is None else argv))
    if command_of(args) == "check":
        sys.exit(_check_main(args))
    from miyabi_ctl.errors import MiyabiError

    try:
        app(args=args, prog_name="miyabi-ctl")
    except MiyabiError as exc:
        typer.echo(f"miyabi-ctl: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `miyabi-ctl status | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def _check_main(args: list[str]) -> int:
    """`check` answers to a monitoring system: every failure of its own — a usage error, a bad
    fleet file, a bug — is one ``MIYABI UNKNOWN - …`` line and exit 3, never Click's exit 2
    (CRITICAL to Nagios) or a traceback."""
    json_out = "--json" in args
    try:
        code = app(args=args, prog_name="miyabi-ctl", standalone_mode=False)
    except usage_error_class() as exc:
        return check_failure(exc.format_message(), json_out=json_out)  # type: ignore[attr-defined]
    except typer.Abort:
        return check_failure("interrupted", json_out=json_out)
    except KeyboardInterrupt:
        return check_failure("interrupted", json_out=json_out)
    except Exception as exc:  # the last line of defence: a bug is UNKNOWN, not a traceback
        if "--debug" in args:
            import traceback

            traceback.print_exc()
        return check_failure(f"internal error: {type(exc).__name__}: {exc}", json_out=json_out)
    return code if isinstance(code, int) else 0
