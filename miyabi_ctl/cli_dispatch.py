"""Commands for the backlog and dispatch: issues, dispatch, assign, runs, recall.

Thin: parse options, call the library (backlog, dispatch), render (dispatch_render).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from miyabi_ctl.cli_common import (
    Apply,
    FleetPath,
    Forks,
    Hosts,
    Json,
    Timeout,
    Yes,
    confirm_apply,
    make_console,
    open_fleet,
    print_json,
    show,
)

if TYPE_CHECKING:
    from miyabi_ctl.backlog import Graph
    from miyabi_ctl.inventory import Inventory

BacklogPath = Annotated[str | None, typer.Option(
    "--backlog", "-b", help="Backlog file to use (else backlog.file / backlog.github in fleet.yaml, "
                            "else backlog.yaml beside fleet.yaml or here).")]
Agent = Annotated[str | None, typer.Option(
    "--agent", help="Agent whose launch template to use (default: dispatch.agent, else claude).")]


def _graph(inventory: Inventory, backlog: str | None) -> tuple[Graph, str]:
    from miyabi_ctl.backlog import Graph, load_backlog

    issues, source = load_backlog(inventory, backlog)
    return Graph.build(issues), source


def _agent(inventory: Inventory, agent: str | None) -> str:
    from miyabi_ctl.dispatch import default_agent
    from miyabi_ctl.errors import InventoryError

    name = agent or default_agent(inventory)
    if name not in inventory.agents:
        raise InventoryError(f"unknown agent {name!r} (known: {', '.join(inventory.agents)})")
    return name


def _echo_lines(lines: list[str], *, err: bool = False) -> None:
    for line in lines:
        typer.echo(line, err=err)


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
    from miyabi_ctl.dispatch import assigned_map
    from miyabi_ctl.dispatch_render import issues_json, issues_summary, issues_table
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.runs import RunStore

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
        "--max", min=1, help="Place at most N issues.")] = None,
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
    from miyabi_ctl.dispatch import apply_plan, plan_dispatch, see_hosts
    from miyabi_ctl.dispatch_render import (
        apply_json,
        apply_lines,
        explain_lines,
        hosts_table,
        plan_lines,
    )
    from miyabi_ctl.runs import RunStore

    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    graph, _source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore()
    with fleet:
        figures = see_hosts(fleet, store)
        plan = plan_dispatch(graph, figures, store, agent=agent_name, max_new=max_new)
        if json_out:
            doc = plan.to_json()
            if not apply:
                print_json(doc)
                return
            _echo_lines(plan_lines(plan), err=True)
        else:
            if explain:
                console = make_console()
                show(console, hosts_table(figures, plan, plain=not console.is_terminal))
                _echo_lines(explain_lines(plan))
            _echo_lines(plan_lines(plan))
        if not plan.assignments or not confirm_apply(apply, yes, "Launch these agents?"):
            if not apply and not json_out and plan.assignments:
                typer.echo("Plan only: nothing launched. Run again with --apply to launch.")
            if json_out:
                print_json({**doc, "applied": []})
            return
        report = apply_plan(plan.assignments, graph, fleet, store)
    if json_out:
        print_json({**doc, "applied": apply_json(report)})
    else:
        _echo_lines(apply_lines(report))
    if not report.ok:
        raise typer.Exit(1)


def assign(
    issue: Annotated[int, typer.Argument(help="Issue number.")],
    host: Annotated[str, typer.Argument(help="Host to run it on.")],
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
    from miyabi_ctl.dispatch import apply_plan, plan_assign, see_hosts
    from miyabi_ctl.dispatch_render import apply_json, apply_lines
    from miyabi_ctl.runs import RunStore

    inventory, fleet = open_fleet(fleet_path, [host], timeout=timeout, quiet=json_out)
    graph, _source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore()
    with fleet:
        figures = see_hosts(fleet, store)
        planned = plan_assign(graph, figures, store, issue=issue, host=host, agent=agent_name,
                              force=force)
        p = planned.placement
        doc = {"assignments": [{"issue": p.issue, "host": p.host, "agent": p.agent,
                                "reason": p.reason}], "unplaced": []}
        if planned.forced:
            typer.echo(f"WARNING: --force: placing #{issue} on {host} although {planned.forced}",
                       err=True)
        if json_out and not apply:
            print_json(doc)
            return
        typer.echo(f"Assign plan:\n  #{p.issue} → {p.host} ({p.agent}): {p.reason}",
                   err=json_out)
        if not confirm_apply(apply, yes, "Launch this agent?"):
            typer.echo("Plan only: nothing launched. Run again with --apply to launch.")
            return
        report = apply_plan([p], graph, fleet, store, action="assign")
    if json_out:
        print_json({**doc, "applied": apply_json(report)})
    else:
        _echo_lines(apply_lines(report))
    if not report.ok:
        raise typer.Exit(1)


def runs(
    json_out: Json = False,
    backlog: BacklogPath = None,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Every assignment: session alive or gone, commits on its branch, last activity, done."""
    from miyabi_ctl.backlog import NoBacklog
    from miyabi_ctl.dispatch import collect_runs
    from miyabi_ctl.dispatch_render import run_json, runs_table
    from miyabi_ctl.errors import MiyabiError
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.runs import RunStore

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
    issue: Annotated[int, typer.Argument(help="Issue number.")],
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
    from miyabi_ctl.backup import plan_backup
    from miyabi_ctl.dispatch import (
        Discard,
        apply_recall,
        backup_label,
        recall_notes,
        recall_steps,
        recall_target,
    )
    from miyabi_ctl.inventory import load_inventory
    from miyabi_ctl.launch import inspect_worktree
    from miyabi_ctl.runs import RunStore

    inventory = load_inventory(fleet_path)
    store = RunStore()
    target = recall_target(store, inventory, issue)
    inventory, fleet = open_fleet(fleet_path, [target.host], timeout=timeout, quiet=True)
    with fleet:
        host = fleet.host(target.host)
        backup_plan = plan_backup(host, target.worktree, label=backup_label(issue),
                                  remote=inventory.repo.remote)
        leftovers = inspect_worktree(host, inventory, target.worktree)
        discard = Discard(ignored=discard_ignored, nested=discard_nested)
        steps = recall_steps(target, backup_plan, inventory.repo.remote, leftovers, discard)
        notes = recall_notes(backup_plan, leftovers, discard)
        doc = {"issue": issue, "host": target.host, "steps": steps, "notes": notes,
               "backup": backup_plan.to_json()}
        if json_out and not apply:
            print_json(doc)
            return
        _echo_lines([f"Recall plan for #{issue} on {target.host}:",
                     *(f"  {n}. {step}" for n, step in enumerate(steps, 1)),
                     *(f"  note: {note}" for note in notes)], err=json_out)
        if not confirm_apply(apply, yes, "Recall this agent?"):
            typer.echo("Plan only: nothing changed. Run again with --apply to recall.")
            return
        outcome = apply_recall(target, fleet, store, discard)
    if json_out:
        print_json({**doc, "ok": outcome.ok, "stopped": outcome.stopped,
                    "removed": outcome.removed, "message": outcome.message})
    else:
        typer.echo(f"#{issue} {target.host}: {'ok' if outcome.ok else 'failed'} — {outcome.message}")
    if not outcome.ok:
        raise typer.Exit(1)
