"""`notify`: fleet.yaml's notification targets, what waits for them, and a test message."""

from __future__ import annotations

from typing import Annotated

import typer

from miyabi_ctl.cli.common import FleetPath, echo_lines
from miyabi_ctl.errors import ExitCode, InventoryError


def register(app: typer.Typer) -> None:
    app.command("notify")(notify)


def notify(
    test: Annotated[bool, typer.Option(
        "--test", help="Send a test message to every target and say which took it.")] = False,
    fleet_path: FleetPath = None,
) -> None:
    """The notify: targets of fleet.yaml (secrets masked) and the changes waiting for each;
    --test sends each a test message (exit 1 if one did not take it)."""
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.notify import send_test, waiting_changes
    from miyabi_ctl.notify.send import shown

    inventory = load_inventory(fleet_path)
    if not inventory.notify:
        if inventory.implicit:
            raise InventoryError("no fleet.yaml, so no notify: targets (docs/fleet.md)")
        raise InventoryError("no targets: add a list of Apprise URLs (docs/fleet.md)",
                             path=inventory.source, key="notify")
    if not test:
        for url, count in waiting_changes(inventory).items():
            echo_lines(f"{shown(url)}  {count or 'no'} change{'s' if count != 1 else ''} waiting")
        return
    deliveries = send_test(inventory)
    for d in deliveries:
        echo_lines(f"{d.target}: sent" if d.ok else f"{d.target}: not sent ({d.error})")
    raise typer.Exit(ExitCode.OK if all(d.ok for d in deliveries) else ExitCode.FAILED)
