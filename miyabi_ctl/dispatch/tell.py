"""``tell``: a follow-up message to a run's agent.

A live session waiting for input gets the message as typed input: the text goes to the host as a
``run_script`` value, into a file with ``printf``, into a tmux buffer from that file, and is
pasted into the pane, then Enter — it never becomes part of a command line. A run whose session
ended is started again in the same worktree with the agent's ``follow_up`` template (Claude Code:
``claude -p --continue``, Codex: ``codex exec … resume --last``), the message as its prompt
(``{prompt_file}``), logging to the same ``agent.log``; its claim says ``running`` again, and a
refusal ``land`` recorded (check failed, conflicts) is cleared: the agent works on it.

A live session that does not visibly wait for input is refused unless ``force``: a headless agent
does not read its terminal, and the text would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from miyabi_ctl import audit
from miyabi_ctl.dispatch.agent_run import look
from miyabi_ctl.dispatch.claims import Claim, ClaimKeeper, update_claim
from miyabi_ctl.dispatch.launch import runner_script
from miyabi_ctl.dispatch.show import RunTarget, run_dir
from miyabi_ctl.dispatch.store import RunStore
from miyabi_ctl.errors import CommandFailed, Refused, UsageError
from miyabi_ctl.fleet import Fleet
from miyabi_ctl.phase0.locks import host_lock
from miyabi_ctl.remote import Script, key_values, run_script
from miyabi_ctl.templates import agent_command

TELL_SCRIPT = Script("dispatch", "tell.sh")


class TellRefused(Refused):
    """The message cannot be delivered to this run (nothing was sent)."""


@dataclass(frozen=True)
class Told:
    issue: int
    host: str
    mode: str  # typed | restarted
    session: str
    message: str  # what was done, in words
    finished: bool = False  # the restarted agent had already ended (status 0) a second later

    def to_json(self) -> dict[str, Any]:
        return {"issue": self.issue, "host": self.host, "mode": self.mode,
                "session": self.session, "message": self.message, "finished": self.finished}


def tell(fleet: Fleet, store: RunStore, keeper: ClaimKeeper, target: RunTarget, message: str,
         *, force: bool = False) -> Told:
    """Deliver ``message`` to the run's agent; raise TellRefused (nothing sent) or a HostError."""
    if not message.strip():
        raise UsageError("the message is empty")
    if "\0" in message:
        raise UsageError("the message contains a NUL byte")
    a, claim = target.assignment, target.claim
    inv = fleet.inventory
    if not a.active and claim is None:
        raise TellRefused(f"issue #{a.issue}'s run ended as {a.state}: there is no agent to tell")
    folder = run_dir(a)
    if folder is None:
        raise TellRefused(f"issue #{a.issue}'s run has no run directory on record "
                          f"(its log: {a.log or 'none'})")
    try:
        host = fleet.host(a.host)
    except KeyError:
        raise TellRefused(f"issue #{a.issue} runs on {a.host}, which is not in the fleet") from None
    audit.ensure_writable()
    with host_lock(host, host.spec.repo_path_or(inv.repo), "tell"):
        facts = look(host, inv, [(a.issue, a.branch, a.base or "", a.log or "")]).get(a.issue)
        if facts is None:
            raise TellRefused(f"{a.host} gave no answer about #{a.issue}")
        if facts.alive:
            if facts.condition != "waiting for input" and not force:
                raise TellRefused(f"{a.session} is working, not visibly waiting for input: a "
                                  "headless agent does not read its terminal and the text would "
                                  "be lost (wait until it asks or ends — `runs` — or --force to "
                                  "type it anyway)")
            result = run_script(host, TELL_SCRIPT, "type", str(a.issue), folder, message,
                                timeout=30)
            mode = "typed"
        else:
            spec = inv.agents.get(a.agent)
            template = spec.follow_up if spec else None
            if not template:
                raise TellRefused(f"agent {a.agent!r} has no follow-up template "
                                  f"(agents.{a.agent}.follow_up in fleet.yaml)")
            result = run_script(host, TELL_SCRIPT, "restart", str(a.issue), folder, message,
                                a.worktree, a.branch, agent_command(template),
                                runner_script(template), timeout=60)
            mode = "restarted"
        values = key_values(result.stdout)
        if result.exit_code != 0:
            error = values.get("error") or result.stderr.strip() or f"exit {result.exit_code}"
            if values.get("log_tail"):
                error += f"; log: {values['log_tail'].strip()}"
            audit.record(host.name, "tell", result="failed", error=error, issue=a.issue,
                         mode=mode)
            raise CommandFailed(host.name, f"cannot tell #{a.issue}: {error}", result)
    notes = []
    if mode == "restarted" and claim is not None:
        notes = _claim_follows(keeper, store, claim, host.name)
    audit.record(host.name, "tell", result="ok", issue=a.issue, mode=mode, bytes=len(message),
                 after={"session": a.session}, **({"notes": notes} if notes else {}))
    said = (f"typed into {a.session} on {a.host}" if mode == "typed" else
            f"{a.agent} started again in {a.worktree} on {a.host} ({a.session}), continuing its "
            "conversation with the message as its prompt")
    finished = values.get("finished") == "1"
    if finished:
        said += "; it had already finished a second later (exit 0)"
    return Told(a.issue, a.host, mode, a.session, "; ".join([said, *notes]), finished)


def _claim_follows(keeper: ClaimKeeper, store: RunStore, claim: Claim, via: str) -> list[str]:
    """The claim says the run is running again; a refusal land recorded is cleared (the agent
    works on it), an open pull request stays."""
    land = claim.land if claim.land in ("pr-open", "landed") else ""
    new = replace(claim, state="running", land=land,
                  land_tip=claim.land_tip if land else "", land_note=claim.land_note if land else "")
    if new == claim:
        return []
    updated = update_claim(keeper, store, claim, new, via)
    return [] if isinstance(updated, Claim) else [f"claim not updated: {updated}"]
