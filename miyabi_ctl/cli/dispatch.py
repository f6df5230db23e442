"""Commands for the backlog and dispatch: issues, dispatch, assign, runs, recall.

Thin: parse options, call the library (miyabi_ctl.dispatch), render (dispatch.render).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    load_fleet,
    make_console,
    notify_changes,
    open_fleet,
    print_json,
    show,
)
from miyabi_ctl.errors import ExitCode

if TYPE_CHECKING:
    from miyabi_ctl.dispatch.claims import ClaimBoard, ClaimKeeper
    from miyabi_ctl.dispatch.graph import Graph
    from miyabi_ctl.dispatch.recall import RecallOutcome
    from miyabi_ctl.dispatch.service import ApplyReport, FleetView
    from miyabi_ctl.dispatch.store import RunStore
    from miyabi_ctl.inventory import Inventory

BacklogPath = Annotated[str | None, typer.Option(
    "--backlog", "-b", metavar="PATH",
    help="Backlog file to use (else backlog.file / backlog.github in fleet.yaml, else backlog.yaml "
         "beside fleet.yaml or here).")]
Agent = Annotated[str | None, typer.Option(
    "--agent", metavar="NAME",
    help="Agent whose launch template to use for every issue (default: the issue's own agent, "
         "else dispatch.agent, else claude).")]


def _graph(inventory: Inventory, backlog: str | None) -> tuple[Graph, str]:
    from miyabi_ctl.dispatch.backlog import load_backlog
    from miyabi_ctl.dispatch.graph import Graph

    issues, source = load_backlog(inventory, backlog)
    return Graph.build(issues), source


def graph_or_none(inventory: Inventory, backlog: str | None) -> Graph | None:
    """The backlog's graph, or None without a backlog (a warning when it cannot be read): for
    commands that show runs and only use it for issue states and titles."""
    from miyabi_ctl.dispatch.issue import NoBacklog
    from miyabi_ctl.errors import MiyabiError

    try:
        return _graph(inventory, backlog)[0]
    except NoBacklog:
        return None
    except MiyabiError as exc:  # runs still shows what it can; "issue closed" is then unknown
        typer.echo(f"miyabi-ctl: warning: backlog unavailable, issue states unknown: {exc}",
                   err=True)
        return None


def _merged(graph: Graph, source: str, keeper: ClaimKeeper,
            prefer: list[str] | None = None) -> Graph:
    """A file backlog's issues whose branch is merged into the remote's main count as done."""
    from miyabi_ctl.dispatch.merged import mark_merged

    graph, error = mark_merged(graph, source, keeper, prefer)
    if error:
        echo_lines(f"miyabi-ctl: warning: could not learn which issue branches are merged into "
                   f"{keeper.inventory.repo.remote}/{keeper.inventory.repo.main}: {error}",
                   err=True)
    return graph


def _agent(inventory: Inventory, agent: str | None) -> str | None:
    """--agent, checked; None: each issue's own agent, else the default."""
    from miyabi_ctl.errors import InventoryError

    if agent is not None and agent not in inventory.launchers:
        raise InventoryError(f"unknown agent {agent!r} (known: {', '.join(inventory.launchers)})")
    return agent



def register(app: typer.Typer) -> None:
    app.command("issues")(issues)
    app.command("dispatch")(dispatch)
    app.command("assign")(assign)
    app.command("runs")(runs)
    app.command("recall")(recall)


def issues(
    json_out: Json = False,
    backlog: BacklogPath = None,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """The backlog as a graph: each issue's priority, state (done / ready / blocked by … /
    assigned to …), needs."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.estimate import Effort
    from miyabi_ctl.dispatch.render import issues_json, issues_summary, issues_table
    from miyabi_ctl.dispatch.service import active_assignments, assigned_map, read_claims
    from miyabi_ctl.dispatch.store import RunStore
    inventory = load_fleet(fleet_path)
    graph, source = _graph(inventory, backlog)
    store = RunStore(scope=inventory.scope)
    with ClaimKeeper(inventory, timeout=timeout) as keeper:
        board = read_claims(keeper, store)
        graph = _merged(graph, source, keeper, [board.via] if board.via else None)
    if not board.readable:
        echo_lines(f"miyabi-ctl: warning: the claims could not be read, assignments shown are "
                   f"this controller's own: {board.error}", err=True)
    states = graph.states(assigned_map(board, store), Effort.of(inventory.schedule))
    if json_out:
        print_json(issues_json(states, source))
    else:
        console = make_console()
        show(console, issues_table(states, plain=not console.is_terminal))
        console.print(issues_summary(states, source), style="dim")
    notify_changes(inventory, "issues", assignments=[*active_assignments(board, store),
                                                     *store.all()])


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
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.landing import cleanup_landed
    from miyabi_ctl.dispatch.render import explain_lines, hosts_table, plan_lines
    from miyabi_ctl.dispatch.service import (
        apply_plan,
        done_claims,
        github_announcer,
        plan_dispatch,
        see_hosts,
    )
    from miyabi_ctl.dispatch.store import RunStore

    inventory, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    graph, source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore(scope=inventory.scope)

    def show_plan() -> None:
        if explain:
            console = make_console()
            show(console, hosts_table(view.figures, plan, plain=not console.is_terminal))
            echo_lines(plan.ordering, *explain_lines(plan))
        echo_lines(*plan_lines(plan))
        if done:
            echo_lines("Claims to release (the issue is closed; worktree and branch stay):",
                       *(f"  #{c.issue} held by {c.holder()}"
                         + (" — it landed: cleaned up as `land` does (the worktree is removed)"
                            if c.pr or c.land == "landed" else "")
                         for c in done))
        _claims_warning(view.board)

    with fleet, ClaimKeeper(inventory, fleet, timeout=timeout) as keeper:
        view = see_hosts(fleet, store, keeper)
        graph = _merged(graph, source, keeper, [view.board.via] if view.board.via else None)
        plan = plan_dispatch(graph, view, store, inventory, agent=agent_name, max_new=max_new)
        done = done_claims(view.board, graph, inventory, source)
        plan_json = _with_claims_error(plan.to_json(), view.board)
        if done:
            plan_json["release"] = [{"issue": c.issue, "host": c.host, "reason": "issue closed"}
                                    for c in done]
        with _notifying(inventory, "dispatch", view, store):
            plan_then_apply(_launches(
                plan_json, show_plan,
                lambda: apply_plan(plan.assignments, graph, fleet, store, keeper, done=done,
                                   announce=github_announcer(inventory, source),
                                   cleanup=lambda c: cleanup_landed(c, fleet, store, keeper)),
                nothing_to_do=not plan.assignments and not done,
                question="Launch these agents?", applicable=view.board.readable,
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
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.service import (
        agents_of,
        apply_plan,
        github_announcer,
        plan_assign,
        see_hosts,
    )
    from miyabi_ctl.dispatch.store import RunStore

    inventory, fleet = open_fleet(fleet_path, [host], timeout=timeout, quiet=json_out)
    graph, source = _graph(inventory, backlog)
    agent_name = _agent(inventory, agent)
    store = RunStore(scope=inventory.scope)
    with fleet, ClaimKeeper(inventory, fleet, timeout=timeout) as keeper:
        view = see_hosts(fleet, store, keeper)
        graph = _merged(graph, source, keeper, [view.board.via] if view.board.via else None)
        planned = plan_assign(graph, view, store, issue=issue, host=host,
                              agents=agents_of(inventory, agent_name), force=force)
        p = planned.placement
        if planned.forced:
            typer.echo(f"WARNING: --force: placing #{issue} on {host} although {planned.forced}",
                       err=True)

        def show_plan() -> None:
            echo_lines(f"Assign plan:\n  #{p.issue} → {p.host} ({p.agent}): {p.reason}")
            _claims_warning(view.board)

        with _notifying(inventory, "assign", view, store):
            plan_then_apply(_launches(
                _with_claims_error(planned.to_json(), view.board), show_plan,
                lambda: apply_plan([p], graph, fleet, store, keeper, action="assign",
                                   announce=github_announcer(inventory, source)),
                question="Launch this agent?", applicable=view.board.readable,
            ), apply=apply, yes=yes, json_out=json_out)


@contextmanager
def _notifying(inventory: Inventory, command: str, view: FleetView, store: RunStore
               ) -> Iterator[None]:
    """After the plan (and its launches) end the command: the hosts it judged, and the runs the
    controller knows ended (a launch that failed), to fleet.yaml's notify: targets."""
    try:
        yield
    except typer.Exit:
        from miyabi_ctl.dispatch.service import active_assignments

        notify_changes(inventory, command, statuses=view.hosts,
                       assignments=[*active_assignments(view.board, store), *store.all()])
        raise


def _claims_warning(board: ClaimBoard) -> None:
    if not board.readable:
        typer.echo(f"The claims on the remote could not be read, so nothing will be launched "
                   f"(that could assign an issue twice): {board.error}")


def _with_claims_error(plan_json: dict[str, Any], board: ClaimBoard) -> dict[str, Any]:
    return plan_json if board.readable else {**plan_json, "claims_error": board.error}


def _launches(plan_json: dict[str, Any], show_plan: Callable[[], None],
              carry_out: Callable[[], ApplyReport], *, nothing_to_do: bool = False,
              question: str, applicable: bool = True) -> Change[ApplyReport]:
    """dispatch and assign: the same launch outcome, JSON and exit code."""
    from miyabi_ctl.dispatch.render import apply_json, apply_lines

    return Change(
        plan_json=plan_json, show_plan=show_plan, carry_out=carry_out,
        outcome_json=lambda report: {**plan_json, "launches": apply_json(report)},
        show_outcome=lambda report: echo_lines(*apply_lines(report)),
        exit_code=lambda report: report.exit_code(),
        nothing_to_do=nothing_to_do, question=question, applicable=applicable,
        plan_only_note="Plan only: nothing launched. Run again with --apply to launch.")


def runs(
    json_out: Json = False,
    backlog: BacklogPath = None,
    timeout: Timeout = None,
    forks: Forks = None,
    fleet_path: FleetPath = None,
) -> None:
    """Every assignment of every controller (the claims on the remote): session alive or gone,
    commits on its branch, last activity, done, stale."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.pulls import pull_lookup
    from miyabi_ctl.dispatch.render import run_json, runs_table
    from miyabi_ctl.dispatch.run_views import collect_runs
    from miyabi_ctl.dispatch.store import RunStore
    inventory = load_fleet(fleet_path)
    graph = graph_or_none(inventory, backlog)
    with ClaimKeeper(inventory, timeout=timeout) as keeper:
        report = collect_runs(inventory, RunStore(scope=inventory.scope), graph, keeper,
                              forks=forks, timeout=timeout, pulls=pull_lookup(inventory))
    views = report.views
    if report.claims_error:
        typer.echo(f"miyabi-ctl: error: the claims could not be read, so other controllers' "
                   f"assignments are missing; this controller's own are shown: "
                   f"{report.claims_error}", err=True)
    if json_out:
        print_json({"runs": [run_json(v) for v in views], "claims_error": report.claims_error})
    else:
        console = make_console()
        if views:
            show(console, runs_table(views, plain=not console.is_terminal))
        else:
            console.print("No assignments yet.")
    notify_changes(inventory, "runs", views=views, all_runs=not report.claims_error)
    if report.claims_error or any(v.error for v in views):
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
    discard_unkept: Annotated[bool, typer.Option(
        "--discard-unkept", help="Remove the worktree even though it holds what git cannot keep "
                                 "(FIFOs, sockets, empty directories), which no backup holds.")
    ] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Release the issue's claim although its host cannot be reached (the host "
                        "is not touched). Refused while the host answers.")] = False,
    json_out: Json = False,
    timeout: Timeout = None,
    fleet_path: FleetPath = None,
) -> None:
    """Stop an issue's agent, back up its worktree (pushed, verified), remove the worktree and
    release its claim; --force releases the claim of a host that is gone."""
    from miyabi_ctl.dispatch.claims import ClaimKeeper
    from miyabi_ctl.dispatch.recall import (
        Discard,
        apply_force,
        apply_recall,
        plan_force,
        plan_recall,
        recall_target,
    )
    from miyabi_ctl.dispatch.run_views import stale_after
    from miyabi_ctl.dispatch.service import github_announcer, read_claims
    from miyabi_ctl.dispatch.store import RunStore
    inventory = load_fleet(fleet_path)
    store = RunStore(scope=inventory.scope)
    keeper = ClaimKeeper(inventory, timeout=timeout)
    announce = None
    if inventory.backlog.get("github"):
        announce = github_announcer(inventory, "github:" + str(inventory.backlog["github"]))
    release = (lambda number, host: announce(number, host, False)) if announce else None
    with keeper:
        target = recall_target(read_claims(keeper, store), store, inventory, issue, force=force)
        names = [target.assignment.host] if target.assignment.host in {
            h.name for h in inventory.hosts} else []
        fleet = fleet_of(inventory, names, timeout=timeout)
        keeper.fleet = fleet
        with fleet:
            if force:
                forced = plan_force(target, fleet, store, stale_after(inventory))
                _recall_change(issue, target.assignment.host, forced.to_json(), forced.steps,
                               forced.notes, lambda: apply_force(forced, keeper, store, release),
                               refuses=forced.refusal is not None,
                               applicable=forced.refusal is None, apply=apply, yes=yes,
                               json_out=json_out)
            discard = Discard(ignored=discard_ignored, nested=discard_nested,
                              unkept=discard_unkept)
            plan = plan_recall(fleet, target.assignment, discard)
            _recall_change(issue, target.assignment.host, plan.to_json(), plan.steps, plan.notes,
                           lambda: apply_recall(target, fleet, store, keeper, discard, release),
                           refuses=plan.refuses, apply=apply, yes=yes, json_out=json_out)


def _recall_change(issue: int, host: str, plan_json: dict[str, Any], steps: list[str],
                   notes: list[str], carry_out: Callable[[], RecallOutcome], *, refuses: bool,
                   apply: bool, yes: bool, json_out: bool, applicable: bool = True) -> None:
    plan_then_apply(Change(
        plan_json=plan_json,
        show_plan=lambda: echo_lines(f"Recall plan for #{issue} on {host}:",
                                     *(f"  {n}. {step}" for n, step in enumerate(steps, 1)),
                                     *(f"  note: {note}" for note in notes)),
        carry_out=carry_out,
        outcome_json=lambda out: {**plan_json, "stopped": out.stopped, "removed": out.removed,
                                  "message": out.message},
        show_outcome=lambda out: echo_lines(
            f"#{issue} {host}: {'ok' if out.ok else 'failed'} — {out.message}"),
        exit_code=lambda out: ExitCode.OK if out.ok else ExitCode.FAILED,
        refuses=refuses, applicable=applicable, question="Recall this agent?",
        plan_only_note="Plan only: nothing changed. Run again with --apply to recall.",
    ), apply=apply, yes=yes, json_out=json_out)
