"""The command line's root: the app, its groups (one module each), and ``main``.

Heavy modules (paramiko, rich tables) are imported inside the commands so that ``--help`` and
shell completion start fast. ``main()`` is the one place library errors become messages and exit
codes.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from miyabi_ctl import __version__

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
) -> None:
    """miyabi-ctl: one view of many machines and their agent sessions."""


# Each command group lives in a module of its own and registers itself here, one line each.
from miyabi_ctl.cli import dispatch, phase0, status  # noqa: E402

status.register(app)
phase0.register(app)
dispatch.register(app)


def main() -> None:
    """Entry point: run the app; turn library errors into one clear line and an exit code."""
    from miyabi_ctl.errors import MiyabiError

    try:
        app()
    except MiyabiError as exc:
        typer.echo(f"miyabi-ctl: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # `miyabi-ctl status | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
