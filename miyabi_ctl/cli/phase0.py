"""`phase0 backup|restore|prune|merge|run` and `audit`: parse, call the library, render.

Every repair is one ``Change`` for ``plan_then_apply`` (miyabi_ctl/cli/apply.py): plan, ask,
apply, outcome, exit code — the same shape and codes for every command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

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
    load_fleet,
    make_console,
    open_fleet,
    print_json,
    show,
)
from miyabi_ctl.errors import ExitCode

if TYPE_CHECKING:
    from miyabi_ctl.phase0.prune import PrunePlan, Selection

phase0 = typer.Typer(help="Phase 0 repairs that lose nothing: backup, prune, merge, run, restore.",
                     no_args_is_help=True, rich_markup_mode=None)

NoPush = Annotated[bool, typer.Option("--no-push", help="Keep the result on the host, do not push.")]
Clean = Annotated[bool, typer.Option(
    "--clean", help="After the backup is verified, reset the working tree to HEAD (ignored files stay).")]
OlderThan = Annotated[str | None, typer.Option(
    "--older-than", metavar="DURATION", help="Sessions older than this: 45s, 90m, 36h, 3d.")]
StartedBefore = Annotated[str | None, typer.Option(
    "--started-before", metavar="WHEN",
    help="Sessions started before a date/time (ISO, controller's local time) or a weekday "
         "(saturday = the most recent Saturday 00:00, today if it is Saturday).")]
IdleFor = Annotated[str | None, typer.Option(
    "--idle-for", metavar="DURATION",
    help="Sessions idle this long (no transcript write): 2h, 90m. Unknown activity is never idle.")]
Keep = Annotated[int, typer.Option("--keep", min=0, metavar="N", help="Keep the newest N sessions per host.")]
Agent = Annotated[str | None, typer.Option("--agent", metavar="NAME",
                                          help="Only sessions of this agent.")]
Grace = Annotated[float, typer.Option(
    "--grace", min=0, metavar="SECONDS", help="Seconds between SIGTERM and SIGKILL.")]
Force = Annotated[bool, typer.Option(
    "--force", help="End sessions even when their unsaved work cannot be backed up (LOSES it).")]
From = Annotated[str | None, typer.Option(
    "--from", metavar="BRANCH", help="Branch to merge (default: repo.feature).")]
Into = Annotated[str | None, typer.Option(
    "--into", metavar="BRANCH", help="Branch to merge into (default: repo.main).")]
Check = Annotated[str | None, typer.Option(
    "--check", metavar="CMD",
    help="Shell command run in the merge's temporary worktree ($MIYABI_REPO: the repo); "
         "failure: nothing is pushed.")]
Sync = Annotated[bool, typer.Option(
    "--sync", help="Then fast-forward the other hosts that are on --into with a clean tree.")]


def _plain() -> bool:
    return not make_console().is_terminal


def _selection(older_than: str | None, started_before: str | None, keep: int,
               agent: str | None, idle_for: str | None = None) -> Selection | None:
    from miyabi_ctl.phase0.prune import Selection, parse_duration, parse_when

    if older_than is None and started_before is None and idle_for is None:
        return None
    try:
        return Selection(older_than_s=parse_duration(older_than) if older_than else None,
                         started_before=parse_when(started_before) if started_before else None,
                         keep=keep, agent=agent,
                         idle_for_s=parse_duration(idle_for) if idle_for else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


Exclude = Annotated[list[str] | None, typer.Option(
    "--exclude", metavar="PATTERN",
    help="Keep files matching this glob (from the repository's top, e.g. '**/.env*') out of "
         "the backup; they stay on disk and --clean leaves them alone. Repeatable.")]


@phase0.command()
def backup(hosts: Hosts = None, apply: Apply = False, yes: Yes = False, no_push: NoPush = False,
           clean: Clean = False, exclude: Exclude = None,
           json_out: Json = False, timeout: Timeout = None,
           forks: Forks = None, fleet_path: FleetPath = None) -> None:
    """Snapshot uncommitted work onto backup/<host>-<date> without touching the tree; push; verify."""
    from miyabi_ctl.phase0.backups import (
        apply_backups,
        backups_exit_code,
        plan_backups,
        plans_refuse,
    )
    from miyabi_ctl.phase0.render import backup_table

    _inv, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    console = make_console()
    with fleet:
        plans = plan_backups(fleet, exclude=exclude or (), clean=clean)
        plan_then_apply(Change(
            plan_json={"hosts": [p.to_json() for p in plans]},
            show_plan=lambda: show(console, backup_table(plans, plain=_plain())),
            carry_out=lambda: apply_backups(fleet, plans, push=not no_push, clean=clean,
                                            exclude=exclude or ()),
            outcome_json=lambda out: {"hosts": [o.to_json() for o in out.values()]},
            show_outcome=lambda out: show(console, backup_table(plans, out, plain=_plain())),
            exit_code=backups_exit_code,
            refuses=plans_refuse(plans, clean=clean),
        ), apply=apply, yes=yes, json_out=json_out)


@phase0.command()
def restore(host: Annotated[str, typer.Argument(metavar="HOST", help="The host to restore on.")],
            ref: Annotated[str, typer.Argument(
                metavar="REF", help="The backup branch (or commit) to restore.")],
            worktree: Annotated[str | None, typer.Option(
                "--worktree", metavar="NAME",
                help="Into this linked worktree (its name in .git/worktrees; '' for the main "
                     "tree); default: the one a backup/…-wt-NAME branch names, else the main tree.")] = None,
            json_out: Json = False, timeout: Timeout = None, fleet_path: FleetPath = None) -> None:
    """Put a backup's files, staged versions and index flags back (HEAD at its parent)."""
    from miyabi_ctl.phase0.restore import restore_on

    inv, fleet = open_fleet(fleet_path, [host], timeout=timeout, quiet=json_out)
    with fleet:
        out = restore_on(fleet.host(host), inv, ref, worktree)
    if json_out:
        print_json(vars(out))
    else:
        echo_lines(f"{host}: {'restored' if out.ok else 'NOT restored'}: {out.message}")
    raise typer.Exit(0 if out.ok else 1)


@phase0.command()
def prune(hosts: Hosts = None, older_than: OlderThan = None, started_before: StartedBefore = None,
          idle_for: IdleFor = None, keep: Keep = 0, agent: Agent = None, grace: Grace = 10.0,
          force: Force = False,
          apply: Apply = False, yes: Yes = False, json_out: Json = False,
          timeout: Timeout = None, forks: Forks = None, fleet_path: FleetPath = None) -> None:
    """End old agent sessions (TERM, grace, KILL), backing up their unsaved work first."""
    from miyabi_ctl.phase0.prune import apply_prunes, plan_prune, prunes_exit_code
    from miyabi_ctl.phase0.render import describe_selection, prune_table

    selection = _selection(older_than, started_before, keep, agent, idle_for)
    if selection is None:
        raise typer.BadParameter(
            "give --older-than DURATION, --started-before WHEN or --idle-for DURATION")
    _inv, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    console = make_console()

    def show_plan() -> None:
        console.print(f"Sessions {describe_selection(selection)}:")
        show(console, prune_table(plans, plain=_plain()))

    def carry_out() -> list[PrunePlan]:
        if force and not json_out:
            make_console(stderr=True).print("--force: sessions are ended even when their unsaved "
                                            "work could not be backed up")
        return apply_prunes(fleet, plans, grace=grace, force=force)

    with fleet:
        plans = plan_prune(fleet, selection, force=force)
        plan_then_apply(Change(
            plan_json={"hosts": [p.to_json() for p in plans]},
            show_plan=show_plan,
            carry_out=carry_out,
            outcome_json=lambda out: {"hosts": [p.to_json() for p in out]},
            show_outcome=lambda out: show(console, prune_table(out, plain=_plain())),
            exit_code=prunes_exit_code,
            refuses=any(p.error for p in plans),  # as in `phase0 run`: a host not planned
        ), apply=apply, yes=yes, json_out=json_out)


@phase0.command()
def merge(hosts: Hosts = None, from_: From = None, into: Into = None,
          on: Annotated[str | None, typer.Option("--on", metavar="HOST", help="Merge on this host.")] = None,
          check: Check = None, no_push: NoPush = False, sync: Sync = False, apply: Apply = False,
          yes: Yes = False, json_out: Json = False, timeout: Timeout = None, forks: Forks = None,
          fleet_path: FleetPath = None) -> None:
    """Merge --from into --into on the host with the newest --from, in a temporary worktree."""
    from miyabi_ctl.phase0.merge import apply_merge, plan_merge, record_refusal
    from miyabi_ctl.phase0.render import merge_lines, merge_result_lines

    inv, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    source = from_ or inv.repo.feature
    if not source:
        raise typer.BadParameter("no --from and no repo.feature in fleet.yaml")
    with fleet:
        plan = plan_merge(fleet, from_=source, into=into or inv.repo.main, on=on)
        if apply and plan.action == "refuse":
            record_refusal(plan)
        plan_then_apply(Change(
            plan_json={"plan": plan.to_json()},
            show_plan=lambda: echo_lines(*merge_lines(plan)),
            carry_out=lambda: apply_merge(fleet, plan, check=check, push=not no_push, sync=sync),
            outcome_json=lambda out: out.to_json(),
            show_outcome=lambda out: echo_lines(*merge_result_lines(out)),
            exit_code=lambda out: ExitCode.OK if out.ok else ExitCode.FAILED,
            applicable=plan.action != "refuse",
        ), apply=apply, yes=yes, json_out=json_out)


@phase0.command()
def run(hosts: Hosts = None, clean: Clean = False, no_push: NoPush = False, exclude: Exclude = None,
        older_than: OlderThan = None, started_before: StartedBefore = None, keep: Keep = 0,
        agent: Agent = None, grace: Grace = 10.0, force: Force = False, from_: From = None,
        into: Into = None, check: Check = None, sync: Sync = False, apply: Apply = False,
        yes: Yes = False, json_out: Json = False, timeout: Timeout = None, forks: Forks = None,
        fleet_path: FleetPath = None) -> None:
    """backup → prune → merge as one plan and one confirmation; a failed backup stops its host."""
    from miyabi_ctl.phase0.render import run_plan_lines, show_run_outcome
    from miyabi_ctl.phase0.run import RunOutcome, apply_run, plan_run

    selection = _selection(older_than, started_before, keep, agent)
    _inv, fleet = open_fleet(fleet_path, hosts, forks=forks, timeout=timeout, quiet=json_out)
    console = make_console()

    def show_outcome(out: RunOutcome) -> None:
        show_run_outcome(console, plan, out, show=show, plain=_plain())

    with fleet:
        plan = plan_run(fleet, selection=selection, clean=clean, force=force, merge_from=from_,
                        merge_into=into, exclude=tuple(exclude or ()))
        plan_then_apply(Change(
            plan_json=plan.to_json(),
            show_plan=lambda: run_plan_lines(console, plan, show=show, plain=_plain()),
            carry_out=lambda: apply_run(fleet, plan, push=not no_push, clean=clean, grace=grace,
                                        force=force, check=check, sync=sync),
            outcome_json=lambda out: out.to_json(),
            show_outcome=show_outcome,
            exit_code=lambda out: out.exit_code(),
            refuses=plan.refuses,
        ), apply=apply, yes=yes, json_out=json_out)


def audit(json_out: Json = False,
          host: Annotated[str | None, typer.Option("--host", metavar="HOST", help="Only this host.")] = None,
          limit: Annotated[int, typer.Option(
              "--limit", min=0, metavar="N", help="The last N entries (0: all).")] = 50,
          fleet_path: Annotated[str | None, typer.Option(
              "--fleet", "-f", envvar="MIYABI_FLEET", show_envvar=True, metavar="PATH",
              help="Only the entries of this fleet (and those older than fleets in the log).")
          ] = None,
          ) -> None:
    """What miyabi-ctl changed: the audit log, one entry per applied step, oldest first; with
    --fleet, that fleet's."""
    from miyabi_ctl import audit as audit_log
    from miyabi_ctl.phase0.render import audit_table

    scope = load_fleet(fleet_path).scope if fleet_path else None
    found = [e for e in audit_log.entries()
             if host in (None, e.get("host")) and audit_log.in_scope(e, scope)]
    if limit:
        found = found[-limit:]
    if json_out:
        print_json({"log": str(audit_log.audit_path()), "scope": scope, "entries": found})
        return
    if not found:
        typer.echo(f"no entries in {audit_log.audit_path()}")
        return
    show(make_console(), audit_table(found, plain=_plain()))


def register(app: typer.Typer) -> None:
    app.add_typer(phase0, name="phase0")
    app.command(name="audit")(audit)

