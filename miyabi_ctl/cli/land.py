"""Commands for the end of a run: show (review), tell (follow up), land (take the work home).

Thin: parse options, call the library (dispatch.show, dispatch.tell, dispatch.land/landing),
render (dispatch.render_runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from miyabi_ctl.cli.apply import Change, plan_then_apply
from miyabi_ctl.cli.common import (
    Apply,
    FleetPath,
    Forks,
    Json,
    Timeout,
    Yes,
    echo_lines,
    fleet_of,
    load_fleet,
    notify_changes,
    print_json,
)
from miyabi_ctl.cli.dispatch import BacklogPath, graph_or_none
from miyabi_ctl.errors import ExitCode, UsageError

Issue = Annotated[int, typer.Argument(metavar="ISSUE", help="Issue number.")]


def register(app: typer.Typer) -> None:
    app.command("show")(show)
    app.command("tell")(tell)
    app.command("land")(land)


def show(
    issue: Issue,
    diff: Annotated[bool, typer.Option(
        "--diff", help="The whole patch too (through $PAGER on a terminal, like git).")] = False,
    lines: Annotated[int, typer.Option(
        "--lines", "-n", min=0, max=1000, metavar="N",
        help="Lines of the agent's log to show (default 20).")] = 20,
    json_out: Json = False,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """What a run did: host, agent, state, its commits since the base, the files they change,
    uncommitted work, the last check, the last lines of the agent's log."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.pulls import pull_lookup
    from miyabi_ctl.dispatch.render_runs import detail_json, detail_lines
    from miyabi_ctl.dispatch.show import show_run
    from miyabi_ctl.dispatch.store import RunStore

    inventory = load_fleet(fleet_path)
    with ClaimKeeper(inventory, timeout=timeout) as keeper:
        detail = show_run(inventory, RunStore(scope=inventory.scope), keeper, issue, diff=diff,
                          log_lines=lines, pulls=pull_lookup(inventory))
    if json_out:
        print_json(detail_json(detail))
    elif diff and detail.diff is not None:
        page("\n".join(detail_lines(detail)) + "\n\n" + detail.diff)
    else:
        echo_lines(*detail_lines(detail))
    if detail.error:
        raise typer.Exit(ExitCode.FAILED)


def page(text: str) -> None:
    """On a terminal through the pager, as git does ($PAGER, else less; LESS=FRX unless set);
    piped, as it is."""
    pager = os.environ.get("PAGER", "less")
    if not sys.stdout.isatty() or pager in ("", "cat"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    env = {**os.environ, "LESS": os.environ.get("LESS", "FRX")}
    try:
        subprocess.run(pager, shell=True, input=text.encode("utf-8", "replace"), env=env,
                       check=False)
    except OSError:
        sys.stdout.write(text)


def tell(
    issue: Issue,
    message: Annotated[str, typer.Argument(
        metavar="MESSAGE", help="What to tell the agent (one argument: quote it).")],
    force: Annotated[bool, typer.Option(
        "--force", help="Type it into a live session even though it does not visibly wait for "
                        "input.")] = False,
    json_out: Json = False,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """Send a follow-up to a run's agent: typed into its session when it waits for input, or, when
    it has ended, the agent started again in its worktree continuing its conversation."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.service import read_claims
    from miyabi_ctl.dispatch.show import find_run
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.dispatch.tell import tell as tell_run

    inventory = load_fleet(fleet_path)
    store = RunStore(scope=inventory.scope)
    with ClaimKeeper(inventory, timeout=timeout) as keeper:
        target = find_run(read_claims(keeper, store), store, issue)
        names = [target.assignment.host] if target.assignment.host in {
            h.name for h in inventory.hosts} else []
        with fleet_of(inventory, names, timeout=timeout) as fleet:
            keeper.fleet = fleet
            told = tell_run(fleet, store, keeper, target, message, force=force)
    if json_out:
        print_json(told.to_json())
    else:
        echo_lines(f"#{issue} {told.host}: {told.message}")


def land(
    issues: Annotated[list[int] | None, typer.Argument(
        metavar="ISSUE...", help="Issues whose runs to land.", show_default=False)] = None,
    all_runs: Annotated[bool, typer.Option(
        "--all", help="Every run that is ready; runs still working or waiting for review are "
                      "left alone.")] = False,
    check: Annotated[str | None, typer.Option(
        "--check", metavar="CMD", help="The check to run on the branch merged onto main "
                                       "(default: dispatch.test_command).")] = None,
    apply: Apply = False,
    yes: Yes = False,
    backlog: BacklogPath = None,
    json_out: Json = False,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Take the work of runs that ended with commits home: check it merged onto main, then merge
    it (file backlog) or open a pull request (GitHub backlog), and clean up as recall does."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.github import backlog_source
    from miyabi_ctl.dispatch.land import plan_land, pr_numbers, targets
    from miyabi_ctl.dispatch.landing import LandReport, apply_land
    from miyabi_ctl.dispatch.launch import test_command
    from miyabi_ctl.dispatch.pulls import pull_states
    from miyabi_ctl.dispatch.render_runs import land_outcome_lines, land_plan_lines
    from miyabi_ctl.dispatch.service import read_claims
    from miyabi_ctl.dispatch.store import RunStore

    if bool(issues) == all_runs:
        raise UsageError("name the issues to land, or --all")
    inventory = load_fleet(fleet_path)
    graph = graph_or_none(inventory, backlog)
    github = backlog_source(inventory.backlog) if not backlog else None
    flow = "pull-request" if github is not None else "merge"
    titles = {n: i.title for n, i in graph.issues.items()} if graph else {}
    store = RunStore(scope=inventory.scope)
    with ClaimKeeper(inventory, timeout=timeout) as keeper:
        board = read_claims(keeper, store)
        known = {h.name for h in inventory.hosts}
        hosts = sorted({t.assignment.host for t in targets(board, store, issues or [])
                        if not isinstance(t, int) and t.assignment.host in known})
        with fleet_of(inventory, hosts or None, forks=forks, timeout=timeout) as fleet:
            keeper.fleet = fleet
            states = pull_states(github, pr_numbers(board)) if github else {}
            plan = plan_land(fleet, board, store, issues=issues or [], flow=flow,
                             check=check if check is not None else test_command(inventory),
                             titles=titles, pr_states=states)
            plan_json = plan.to_json()
            reports: list[LandReport] = []

            def carry_out() -> LandReport:
                reports.append(apply_land(plan, fleet, store, keeper, github=github))
                return reports[0]

            try:
                plan_then_apply(Change(
                    plan_json=plan_json,
                    show_plan=lambda: echo_lines(*land_plan_lines(plan)),
                    carry_out=carry_out,
                    outcome_json=lambda report: {
                        **plan_json, "results": [r.to_json() for r in report.results]},
                    show_outcome=lambda report: echo_lines(*land_outcome_lines(report)),
                    exit_code=lambda report: report.exit_code(),
                    refuses=plan.refuses, applicable=plan.claims_error is None,
                    nothing_to_do=not plan.landing, question="Land these runs?",
                    plan_only_note="Plan only: nothing landed. Run again with --apply to land.",
                ), apply=apply, yes=yes, json_out=json_out)
            finally:  # the runs it looked at, and where landing took them
                notify_changes(inventory, "land",
                               views=[i.detail.view for i in plan.items if i.detail],
                               assignments=[a for a in store.all() if not a.active],
                               moved={r.issue: r.lifecycle for r in reports[0].results
                                      if r.lifecycle} if reports else None)
