"""Who works on what, for every controller: claims held on the repository's remote.

A claim is the ref ``refs/miyabi/claims/<N>`` on the repository's remote (``repo.remote`` as the
hosts' clones know it), pointing at a parentless commit of the empty tree whose message holds the
assignment as ``key=value`` lines (host, agent, branch, session, worktree, state, controller id,
time). Taking one is an atomic compare-and-swap: ``git push --force-with-lease=<ref>:`` succeeds
only if the ref is absent, so of two controllers racing for an issue exactly one wins; the other
reads the winner's record and does not launch. Updating and releasing swap with a lease on the
exact old object, so nobody ever overwrites or deletes a claim they did not read.

Git runs on the hosts, not on the controller (``claims.sh``): the hosts already hold a clone with
the remote and the credentials that push to it (phase 0 pushes backups through them), while a
controller — a phone — may have neither. One ``git fetch`` of ``refs/miyabi/claims/*`` on one host
reads every claim; reading tries a few hosts in turn (this machine's own clone first) in case one
of them cannot reach the remote.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.store import Assignment, RunStore
from miyabi_ctl.errors import HostError, Refused
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_remote
from miyabi_ctl.remote import Script, key_values, records, run_script

if TYPE_CHECKING:
    from miyabi_ctl.fleet import Fleet

T = TypeVar("T")

CLAIMS_SCRIPT = Script("dispatch", "claims.sh")
NAMESPACE = "refs/miyabi/claims"
VERSION = "1"
READ_TRIES = 3  # hosts asked in turn before the claims count as unreadable
DEFAULT_STALE_AFTER_S = 30 * 60
FIELDS = ("version", "issue", "title", "host", "agent", "branch", "session", "worktree", "state",
          "base", "log", "controller", "controller_name", "claimed", "land", "land_tip", "land_note",
          "pr", "nonce")
# What `land` made of the run, on the claim so every controller sees it (``lifecycle``): the
# check failed or the branch conflicts with main (at ``land_tip``), a pull request is open, or
# the branch is merged and only the clean-up is left. Records without it (older controllers)
# read as nothing recorded; older controllers ignore the keys.
LAND_STATES = ("check-failed", "conflicts", "pr-open", "landed")


class ClaimsUnavailable(Refused):
    """The claims on the remote could not be read or changed: nothing may be launched."""


class ClaimHeld(Refused):
    """Another assignment holds the issue's claim."""

    def __init__(self, claim: Claim):
        self.claim = claim
        super().__init__(f"issue #{claim.issue} is claimed by {claim.holder()}")


# --------------------------------------------------------------------------------------------
# The controller's identity


def controller_name() -> str:
    """A name for people (``$MIYABI_CONTROLLER_NAME``, else the hostname); never a key."""
    return os.environ.get("MIYABI_CONTROLLER_NAME") or socket.gethostname()


# --------------------------------------------------------------------------------------------
# Records


def _one_line(value: object) -> str:
    return " ".join(str(value).splitlines()).strip()


@dataclass(frozen=True)
class Claim:
    """One claim as read from the remote (``oid``: the object the ref points at)."""

    issue: int
    oid: str
    host: str = ""
    agent: str = ""
    branch: str = ""
    session: str = ""
    worktree: str = ""
    state: str = "launching"  # launching | running
    title: str = ""
    base: str = ""
    log: str = ""
    controller: str = ""
    controller_name: str = ""
    claimed: str = ""  # the claiming controller's clock: shown, never compared
    land: str = ""  # one of LAND_STATES, or '' (nothing recorded)
    land_tip: str = ""  # the commit of issue/N that outcome is about
    land_note: str = ""  # its words: the conflicting files, the failed check, the PR's URL
    pr: str = ""  # the pull request's number (GitHub backlog)
    malformed: str | None = None  # why the record could not be read (the claim still holds)

    def holder(self) -> str:
        if self.malformed:
            return f"an unreadable claim ({self.malformed}; object {self.oid[:12]})"
        who = self.controller_name or "?"
        return (f"{self.host} ({self.session}, {self.agent}; controller {who} "
                f"{self.controller[:8]}, since {self.claimed or '?'})")

    def as_assignment(self) -> Assignment:
        """The claim in the shape the run views and placement use (id 0: not in our store)."""
        return Assignment(id=0, issue=self.issue, title=self.title, host=self.host or "?",
                          agent=self.agent, worktree=self.worktree, branch=self.branch,
                          session=self.session, base=self.base or None, log=self.log or None,
                          started=self.claimed, state=self.state, ended=None, note=None)


def new_claim(*, issue: int, title: str, host: str, agent: str, branch: str, session: str,
              worktree: str, controller: str, now: datetime | None = None) -> Claim:
    """A claim about to be taken (its oid is known once pushed)."""
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return Claim(issue=issue, oid="", host=host, agent=agent, branch=branch, session=session,
                 worktree=worktree, state="launching", title=title, controller=controller,
                 controller_name=controller_name(), claimed=when)


def claim_message(claim: Claim) -> str:
    """The commit message a claim is stored as: a subject, then one ``key=value`` per field."""
    values = {"version": VERSION, "issue": claim.issue, "title": claim.title, "host": claim.host,
              "agent": claim.agent, "branch": claim.branch, "session": claim.session,
              "worktree": claim.worktree, "state": claim.state, "base": claim.base,
              "log": claim.log, "controller": claim.controller,
              "controller_name": claim.controller_name, "claimed": claim.claimed,
              "land": claim.land, "land_tip": claim.land_tip, "land_note": claim.land_note,
              "pr": claim.pr, "nonce": secrets.token_hex(6)}  # two identical claims are still two objects
    lines = [f"{key}={_one_line(values[key])}" for key in FIELDS]
    return f"miyabi-ctl claim: issue #{claim.issue}\n\n" + "\n".join(lines) + "\n"


def parse_claim(name: str, oid: str, lines: dict[str, str]) -> Claim | None:
    """A claim from ``claims.sh``'s record (``m.KEY`` → message line ``KEY=…``).

    A ref whose name is not an issue number is no claim (None). A record that cannot be read still
    holds its issue — it is returned with ``malformed`` set, so nothing is launched over it."""
    if not name.isdigit() or int(name) <= 0:
        return None
    issue = int(name)
    fields = {key[2:]: value for key, value in lines.items()
              if key.startswith("m.") and key[2:] in FIELDS}
    problem = None
    if fields.get("version") != VERSION:
        problem = f"unknown claim format {fields.get('version', 'none')!r}"
    elif fields.get("issue") != name:
        problem = f"record says issue {fields.get('issue', 'none')!r}"
    elif not fields.get("host"):
        problem = "no host in the record"
    if problem:
        return Claim(issue=issue, oid=oid, malformed=problem)
    state = fields.get("state") if fields.get("state") in ("launching", "running") else "launching"
    return Claim(issue=issue, oid=oid, host=fields["host"], agent=fields.get("agent", ""),
                 branch=fields.get("branch", ""), session=fields.get("session", ""),
                 worktree=fields.get("worktree", ""), state=state,
                 title=fields.get("title", ""), base=fields.get("base", ""),
                 log=fields.get("log", ""), controller=fields.get("controller", ""),
                 controller_name=fields.get("controller_name", ""),
                 claimed=fields.get("claimed", ""),
                 land=fields["land"] if fields.get("land") in LAND_STATES else "",
                 land_tip=fields.get("land_tip", ""), land_note=fields.get("land_note", ""),
                 pr=fields.get("pr", "") if fields.get("pr", "").isdigit() else "")


def parse_claims(output: str) -> list[Claim]:
    """Every claim ``claims.sh`` printed, in issue order."""
    found = []
    for rec in records(output, "claim"):
        claim = parse_claim(rec.get("claim", ""), rec.get("oid", ""), rec)
        if claim is not None:
            found.append(claim)
    return sorted(found, key=lambda c: c.issue)


@dataclass
class ClaimBoard:
    """Every claim on the remote, as one read saw it; ``error`` when it could not be read."""

    claims: dict[int, Claim] = field(default_factory=dict)
    error: str | None = None
    via: str | None = None  # the host that read it
    read_at: datetime | None = None  # when the read began, on this controller's clock

    @property
    def readable(self) -> bool:
        return self.error is None

    def assigned(self) -> dict[int, str]:
        """Issue → where, for the graph's ``assigned to …`` state."""
        return {n: (c.holder() if c.malformed else f"{c.host} ({c.session})")
                for n, c in self.claims.items()}

    def assignments(self) -> list[Assignment]:
        return [c.as_assignment() for c in self.claims.values() if not c.malformed]

    def require(self) -> None:
        if self.error is not None:
            raise ClaimsUnavailable(f"the claims could not be read, so nothing is launched "
                                    f"(that could assign an issue twice): {self.error}")


# --------------------------------------------------------------------------------------------
# Talking to the remote through a host


@dataclass(frozen=True)
class Swap:
    ok: bool
    oid: str = ""  # the object the ref now points at ('' after a delete)
    current: Claim | None = None  # after a failed swap: what the remote holds (None: absent)
    error: str | None = None  # could not ask at all
    push_error: str = ""


def swap_on(host: Host, inventory: Inventory, issue: int, old: str,
            claim: Claim | None) -> Swap:
    """One compare-and-swap of ``refs/miyabi/claims/<issue>`` through ``host``'s clone."""
    check_remote(inventory.repo.remote)
    message = claim_message(claim) if claim is not None else ""
    try:
        result = run_script(host, CLAIMS_SCRIPT, host.spec.repo_path_or(inventory.repo),
                            inventory.repo.remote, "swap", str(issue), old, message, timeout=90)
    except HostError as exc:
        return Swap(False, error=exc.message)
    values = key_values(result.stdout)
    if values.get("swap") == "ok":
        return Swap(True, oid=values.get("oid", ""))
    if values.get("swap") == "conflict" and "error" not in values:
        current = next((c for c in parse_claims(result.stdout) if c.issue == issue), None)
        return Swap(False, current=current, push_error=values.get("push_error", ""))
    return Swap(False, error=values.get("error") or result.stderr.strip() or "claims.sh failed")


def read_on(host: Host, inventory: Inventory) -> ClaimBoard:
    check_remote(inventory.repo.remote)
    try:
        result = run_script(host, CLAIMS_SCRIPT, host.spec.repo_path_or(inventory.repo),
                            inventory.repo.remote, "read", timeout=90)
    except HostError as exc:
        return ClaimBoard(error=f"{host.name}: {exc.message}", via=host.name)
    values = key_values(result.stdout)
    if result.exit_code != 0 or values.get("read") != "ok":
        error = values.get("error") or result.stderr.strip() or "claims.sh failed"
        return ClaimBoard(error=f"{host.name}: {error}", via=host.name)
    return ClaimBoard({c.issue: c for c in parse_claims(result.stdout)}, via=host.name)


class ClaimKeeper:
    """Reads and changes claims through the fleet's hosts.

    ``fleet`` is the command's open fleet; hosts outside it (a release after the launch host died,
    when the command was limited to that host) are reached through a fleet of its own, opened on
    first use and closed with the keeper."""

    def __init__(self, inventory: Inventory, fleet: Fleet | None = None, *,
                 timeout: float | None = None):
        self.inventory = inventory
        self.fleet = fleet
        self.timeout = timeout
        self._own: Fleet | None = None
        self._lock = threading.Lock()  # the keeper's own fleet is shared by the apply threads

    def _own_fleet(self) -> Fleet:
        from miyabi_ctl.fleet import Fleet

        if self._own is None:
            self._own = Fleet(self.inventory, connect_timeout=self.timeout)
        return self._own

    def order(self, prefer: Iterable[str] = ()) -> list[str]:
        """Hosts to ask, best first: this machine's own clone, then ``prefer``, then the rest."""
        known = [h.name for h in self.inventory.hosts]
        local = [h.name for h in self.inventory.hosts if h.transport == "local"]
        names: list[str] = []
        for name in [*local, *prefer, *known]:
            if name in known and name not in names:
                names.append(name)
        return names

    def _with_host(self, name: str, fn: Callable[[Host], T]) -> T:
        if self.fleet is not None:
            try:
                host = self.fleet.host(name)
            except KeyError:
                pass
            else:
                return fn(host)
        with self._lock:
            return fn(self._own_fleet().host(name))

    def on_host(self, name: str, fn: Callable[[Host], T]) -> T:
        """``fn`` on host ``name``, through the command's fleet or the keeper's own (for other
        reads that go where the claims are read: ``merged``)."""
        return self._with_host(name, fn)

    def read(self, prefer: Iterable[str] = (), tries: int = READ_TRIES) -> ClaimBoard:
        """Every claim, from the first of up to ``tries`` hosts that can read them."""
        errors = []
        for name in self.order(prefer)[:tries]:
            began = datetime.now(UTC)
            board = self._with_host(name, lambda host: read_on(host, self.inventory))
            if board.readable:
                board.read_at = began
                return board
            errors.append(board.error or name)
        if not errors:
            return ClaimBoard(error="no host in the fleet to read them through")
        return ClaimBoard(error="; ".join(errors))

    def swap(self, issue: int, old: str, claim: Claim | None, via: Iterable[str] = (),
             tries: int = 1) -> Swap:
        """Swap through the first of ``via`` that answers, then other hosts, ``tries`` in all."""
        names = list(via)
        names += [n for n in self.order() if n not in names]
        last = Swap(False, error="no host to reach the remote through")
        for name in names[:max(tries, 1)]:
            last = self._with_host(name, lambda host: swap_on(host, self.inventory, issue, old,
                                                              claim))
            if last.error is None:
                return last
        return last

    def take(self, claim: Claim, via: str) -> Claim:
        """Take the issue's claim through host ``via``, or raise ClaimHeld / ClaimsUnavailable."""
        result = self.swap(claim.issue, "", claim, [via])
        if result.ok:
            return _with_oid(claim, result.oid)
        if result.current is not None:
            raise ClaimHeld(result.current)
        raise ClaimsUnavailable(f"cannot claim #{claim.issue} on {self.inventory.repo.remote}: "
                                f"{result.error or result.push_error or 'push refused'}")

    def update(self, held: Claim, new: Claim, via: str) -> Claim | str:
        """Replace our claim with ``new`` (e.g. running, with its base); a string says why not."""
        result = self.swap(held.issue, held.oid, new, [via])
        if result.ok:
            return _with_oid(new, result.oid)
        if result.error:
            return result.error
        return ("the claim was changed meanwhile" if result.current else
                "the claim was released meanwhile")

    def release(self, held: Claim, via: Iterable[str] = ()) -> str | None:
        """Delete the claim if it is still exactly ``held``; None on success (or already gone),
        else why not. Tries ``via`` first, then other hosts (the claim's host may be dead)."""
        result = self.swap(held.issue, held.oid, None, via, tries=READ_TRIES)
        if result.ok or (result.error is None and result.current is None):
            return None
        if result.error is not None:
            return f"cannot release the claim on #{held.issue}: {result.error}"
        return (f"not released: the claim on #{held.issue} is now held by "
                f"{result.current.holder() if result.current else '?'}")

    def close(self) -> None:
        if self._own is not None:
            self._own.close()

    def __enter__(self) -> ClaimKeeper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def update_claim(keeper: ClaimKeeper, store: RunStore, held: Claim, new: Claim, via: str
                 ) -> Claim | str:
    """Replace the claim (with a lease on ``held``); this controller's cache follows it."""
    updated = keeper.update(held, new, via=via)
    mine = store.by_claim(held.oid)
    if isinstance(updated, Claim) and mine is not None:
        store.follow_claim(mine.id, updated.oid)
    return updated


def _with_oid(claim: Claim, oid: str) -> Claim:
    return replace(claim, oid=oid)


