"""What every command shares: the common options, the console, opening the fleet, JSON out,
and the plan-then-apply confirmation. Imports stay light so ``--help`` is fast."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from miyabi_ctl.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

    from miyabi_ctl.fleet import Fleet
    from miyabi_ctl.inventory import Inventory

Hosts = Annotated[list[str] | None, typer.Argument(
    help="Hosts to include (default: all).", metavar="HOST", show_default=False)]
FleetPath = Annotated[str | None, typer.Option(
    "--fleet", "-f", envvar="MIYABI_FLEET", show_envvar=True, metavar="PATH",
    help="fleet.yaml to use (else ./fleet.yaml, else $XDG_CONFIG_HOME/miyabi-ctl/fleet.yaml).")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
Timeout = Annotated[float | None, typer.Option(
    "--timeout", min=0.1, metavar="SECONDS",
    help="Connect timeout per host in seconds (default: ssh.connect_timeout).")]
Forks = Annotated[int | None, typer.Option(
    "--forks", min=1, metavar="N", help="Hosts contacted at once (default: ssh.max_parallel).")]


Apply = Annotated[bool, typer.Option("--apply", help="Carry out the plan (default: only show it).")]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="With --apply: do not ask for confirmation.")]


PIPED_WIDTH = 100_000


def make_console(stderr: bool = False) -> Console:
    from rich.console import Console

    # markup=False: issue titles, branch names, paths and remote errors are shown verbatim
    # (`[docs] Update README`, git's `! [rejected]`, `:bug:`), never read as rich markup or emoji.
    console = Console(stderr=stderr, highlight=False, markup=False, emoji=False)
    if not console.is_terminal:
        console.width = PIPED_WIDTH  # piped or redirected: one line per row, never folded
    return console


def fleet_of(inventory: Inventory, hosts: list[str] | None, *, forks: int | None = None,
             timeout: float | None = None) -> Fleet:
    from miyabi_ctl.fleet import Fleet

    return Fleet(inventory, hosts, forks=forks, connect_timeout=timeout, warn=warn)


def warn(message: str) -> None:
    """A connector's warning (an unwritable known_hosts), on stderr as ssh prints its own."""
    typer.echo(f"miyabi-ctl: warning: {message}", err=True)


NO_FLEET_FILE = ("no fleet.yaml found (--fleet PATH, $MIYABI_FLEET, ./fleet.yaml, "
                 "$XDG_CONFIG_HOME/miyabi-ctl/fleet.yaml)")


def load_fleet(fleet_path: str | None) -> Inventory:
    """The fleet's inventory; what this command records in the audit log is filed under that
    fleet (``Inventory.scope``)."""
    from miyabi_ctl import audit
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(fleet_path)
    audit.set_scope(inventory.scope)
    return inventory


def open_fleet(fleet_path: str | None, hosts: list[str] | None, *, forks: int | None = None,
               timeout: float | None = None, quiet: bool = False,
               require_file: bool = False) -> tuple[Inventory, Fleet]:
    """The inventory and a Fleet of the named hosts. ``require_file``: no local-only fallback
    (`check`: a monitoring job must say which fleet it watches)."""
    inventory = load_fleet(fleet_path)
    if inventory.implicit and require_file:
        raise UsageError(f"{NO_FLEET_FILE}; name one with --fleet PATH")
    if inventory.implicit and not quiet:
        make_console(stderr=True).print(f"{NO_FLEET_FILE}: showing this machine only.",
                                        style="dim")
    return inventory, fleet_of(inventory, hosts, forks=forks, timeout=timeout)


def show(console: Console, renderable: object) -> None:
    """Print to a terminal as is; piped, as plain lines without the table's trailing padding."""
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    sys.stdout.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")


def echo_lines(*lines: str, err: bool = False) -> None:
    """Plain lines of text: on a terminal wrapped at spaces (never mid-word, as the terminal itself
    would), piped as they are; never markup."""
    console = make_console(stderr=err)
    for text in lines:
        for line in text.split("\n"):
            console.print(line, overflow="fold", crop=False)


def notify_changes(inventory: Inventory, command: str, **seen: Any) -> None:
    """fleet.yaml's ``notify:`` targets hear what changed since the last look (``seen``: the
    keywords of ``notify.look``); a send that failed is a warning here, never an exit code."""
    if not inventory.notify:
        return
    from miyabi_ctl.notify import look, report_changes

    try:
        warnings = report_changes(inventory, look(command, **seen))
    except Exception as exc:  # a side channel: its bug must not change the command's outcome
        warnings = [f"notifications failed: internal error: {type(exc).__name__}: {exc}"]
    for warning in warnings:
        echo_lines(f"miyabi-ctl: warning: {warning}", err=True)


def print_json(doc: Any) -> None:
    import json

    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")




class NotConfirmed(UsageError):
    """--apply without a terminal to ask on, and without --yes."""


def confirm_apply(apply: bool, yes: bool, question: str = "Apply this plan?") -> bool:
    """Plan only unless --apply; with --apply ask on a terminal, or require --yes without one.

    Call it after the plan has been printed: the operator answers having seen it.
    """
    if not apply:
        return False
    if yes:
        return True
    if not sys.stdin.isatty():
        raise NotConfirmed("refusing to apply without a terminal to confirm on; pass --yes "
                      "(after reviewing the plan without --apply)")
    return typer.confirm(question, default=False)
