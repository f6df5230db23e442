"""Commands for the backlog and dispatch: issues, dispatch, assign, runs, recall.

Thin: parse options, call the library (miyabi_ctl.dispatch), render (dispatch.render).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from miyabi_ctl.cli.apply import Change, plan_then_apply
from miyabi_ctl.cli.common import (
    Apply,
    FleetPath,
    Forks,
    Hosts,
    Json,
    Timeout,
    Yes,
    echo_lines,
    fleet_of,
    make_console,
    open_fleet,
    print_json,
    show,
)
from miyabi_ctl.errors import ExitCode

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.graph import Graph
    from miyabi_ctl.dispatch.service import ApplyReport
    from miyabi_ctl.inventory import Inventory

BacklogPath = Annotated[str | None, typer.Option(
    "--backlog", "-b", metavar="PATH",
    help="Backlog file to use (else backlog.file / backlog.github in fleet.yaml, else backlog.yaml "
         "beside fleet.yaml or here).")]
Agent = Annotated[str | None, typer.Option(
    "--agent", metavar="NAME",
    help="Agent whose launch template to use (default: dispatch.agent, else claude).")]


def _graph(inventory: Inventory, backlog: str | None) -> tuple[Graph, str]:
    from miyabi_ctl.dispatch.backlog import load_backlog
    from miyabi_ctl.dispatch.graph import Graph

    issues, source = load_backlog(inventory, backlog)
    return Graph.build(issues), source


def _agent(inventory: Inventory, agent: str | None) -> str:
    from miyabi_ctl.dispatch.service import default_agent
    from miyabi_ctl.errors import InventoryError

    name = agent or default_agent(inventory)
    if name not in inventory.agents:
        raise InventoryError(f"unknown agent {name!r} (known: {', '.join(inventory.agents)})")
    return name


def _echo_lines(lines: list[str], *, err: bool = False) -> None:
    echo_lines(*lines, err=err)


def register(app: typer.Typer) -> None:
    app.command("issues")(issues)
    app.command("dispatch")(dispatch)
    app.command("assign")(assign)
    app.command("runs")(runs)
    app.command("recall")(recall)


def issues(
    json_out: Json = False,
    backlog: BacklogPath = None,
    fleet_path: FleetPath = None,
) -> None:
    """The backlog as a graph: each issue's priority, state (done / ready / blocked by … /
    assigned to …), needs."""
    from miyabi_ctl.dispatch.render import issues_json, issues_summary, issues_table
    from miyabi_ctl.dispatch.service import assigned_map
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(fleet_path)
    graph, source = _graph(inventory, backlog)
    states = graph.states(assigned_map(RunStore()))
    if json_out:
        print_json(issues_json(states, source))
        return
    console = make_console()
    show(console, issues_table(states, plain=not console.is_terminal))
    console.print(issues_summary(states, source), style="dim")


def dispatch(
    hosts: Hosts = None,
    apply: Apply = False,
    yes: Yes = False,
    max_new: Annotated[int | None, typer.Option(
        "--max", min=1, metavar="N", help="Place at most N issues.")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show each host's figures and why it was chosen or excluded.")] = False,
    agent: Agent = None,
    backlog: BacklogPath = None,
    json_out: Json = False,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Place ready issues on the least-loaded eligible hosts; with --apply, launch the agents."""
    from miyabi_ctl.dispatch.render import explain_lines, hosts_table, plan_lines
    from miyabi_ctl.dispatch.service import apply_plan, plan_dispatch, see_hosts
    from miyabi_ctl.dispatch.store import RunStore

    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    graph, _source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore()

    def show_plan() -> None:
        if explain:
            console = make_console()
            show(console, hosts_table(figures, plan, plain=not console.is_terminal))
            _echo_lines(explain_lines(plan))
        _echo_lines(plan_lines(plan))

    with fleet:
        figures = see_hosts(fleet, store)
        plan = plan_dispatch(graph, figures, store, agent=agent_name, max_new=max_new)
        plan_then_apply(_launches(
            plan.to_json(), show_plan, lambda: apply_plan(plan.assignments, graph, fleet, store),
            nothing_to_do=not plan.assignments, question="Launch these agents?",
        ), apply=apply, yes=yes, json_out=json_out)


def assign(
    issue: Annotated[int, typer.Argument(metavar="ISSUE", help="Issue number.")],
    host: Annotated[str, typer.Argument(metavar="HOST", help="Host to run it on.")],
    apply: Apply = False,
    yes: Yes = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Place it even if the host lacks a needed tag or a free slot.")] = False,
    agent: Agent = None,
    backlog: BacklogPath = None,
    json_out: Json = False,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """Place one issue on one host by hand (the same checks as dispatch)."""
    from miyabi_ctl.dispatch.service import apply_plan, plan_assign, see_hosts
    from miyabi_ctl.dispatch.store import RunStore

    inventory, fleet = open_fleet(fleet_path, [host], timeout=timeout, quiet=json_out)
    graph, _source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore()
    with fleet:
        figures = see_hosts(fleet, store)
        planned = plan_assign(graph, figures, store, issue=issue, host=host, agent=agent_name,
                              force=force)
        p = planned.placement
        if planned.forced:
            typer.echo(f"WARNING: --force: placing #{issue} on {host} although {planned.forced}",
                       err=True)
        plan_then_apply(_launches(
            planned.to_json(),
            lambda: echo_lines(f"Assign plan:\n  #{p.issue} → {p.host} ({p.agent}): {p.reason}"),
            lambda: apply_plan([p], graph, fleet, store, action="assign"),
            question="Launch this agent?",
        ), apply=apply, yes=yes, json_out=json_out)


def _launches(plan_json: dict[str, Any], show_plan: Callable[[], None],
              carry_out: Callable[[], ApplyReport], *, nothing_to_do: bool = False,
              question: str) -> Change[ApplyReport]:
    """dispatch and assign: the same launch outcome, JSON and exit code."""
    from miyabi_ctl.dispatch.render import apply_json, apply_lines

    return Change(
        plan_json=plan_json, show_plan=show_plan, carry_out=carry_out,
        outcome_json=lambda report: {**plan_json, "launches": apply_json(report)},
        show_outcome=lambda report: _echo_lines(apply_lines(report)),
        exit_code=lambda report: report.exit_code(),
        nothing_to_do=nothing_to_do, question=question,
        plan_only_note="Plan only: nothing launched. Run again with --apply to launch.")


def runs(
    json_out: Json = False,
    backlog: BacklogPath = None,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Every assignment: session alive or gone, commits on its branch, last activity, done."""
    from miyabi_ctl.dispatch.issue import NoBacklog
    from miyabi_ctl.dispatch.render import run_json, runs_table
    from miyabi_ctl.dispatch.service import collect_runs
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.errors import MiyabiError
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(fleet_path)
    graph = None
    try:
        graph, _source = _graph(inventory, backlog)
    except NoBacklog:
        pass
    except MiyabiError as exc:  # runs still shows what it can; "issue closed" is then unknown
        typer.echo(f"miyabi-ctl: warning: backlog unavailable, issue states unknown: {exc}",
                   err=True)
    views = collect_runs(inventory, RunStore(), graph, forks=forks, timeout=timeout)
    if json_out:
        print_json({"runs": [run_json(v) for v in views]})
    else:
        console = make_console()
        if views:
            show(console, runs_table(views, plain=not console.is_terminal))
        else:
            console.print("No assignments yet.")
    if any(v.error for v in views):
        raise typer.Exit(1)


def recall(
    issue: Annotated[int, typer.Argument(metavar="ISSUE", help="Issue number.")],
    apply: Apply = False,
    yes: Yes = False,
    discard_ignored: Annotated[bool, typer.Option(
        "--discard-ignored", help="Remove the worktree even though it holds ignored files "
                                  "(.env, build output), which no backup holds.")] = False,
    discard_nested: Annotated[bool, typer.Option(
        "--discard-nested", help="Remove the worktree even though it holds nested repositories "
                                 "with work (a backup records only their commit id).")] = False,
    json_out: Json = False,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """Stop an issue's agent, back up its worktree (pushed, verified), then remove the worktree."""
    from miyabi_ctl.dispatch.recall import Discard, apply_recall, plan_recall, recall_target
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.inventory import load_inventory

    inventory = load_inventory(fleet_path)
    store = RunStore()
    target = recall_target(store, inventory, issue)
    fleet = fleet_of(inventory, [target.host], timeout=timeout)
    discard = Discard(ignored=discard_ignored, nested=discard_nested)
    with fleet:
        plan = plan_recall(fleet, target, discard)
        plan_then_apply(Change(
            plan_json=plan.to_json(),
            show_plan=lambda: _echo_lines([f"Recall plan for #{issue} on {target.host}:",
                                           *(f"  {n}. {step}" for n, step in enumerate(plan.steps, 1)),
                                           *(f"  note: {note}" for note in plan.notes)]),
            carry_out=lambda: apply_recall(target, fleet, store, discard),
            outcome_json=lambda out: {**plan.to_json(), "stopped": out.stopped,
                                      "removed": out.removed, "message": out.message},
            show_outcome=lambda out: echo_lines(
                f"#{issue} {target.host}: {'ok' if out.ok else 'failed'} — {out.message}"),
            exit_code=lambda out: ExitCode.OK if out.ok else ExitCode.FAILED,
            refuses=plan.refuses, question="Recall this agent?",
            plan_only_note="Plan only: nothing changed. Run again with --apply to recall.",
        ), apply=apply, yes=yes, json_out=json_out)
