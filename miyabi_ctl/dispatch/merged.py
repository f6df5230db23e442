"""Issues whose branch is merged into the remote's main: done, for ``issues`` and ``dispatch``,
even while backlog.yaml still says open (a file backlog does not close itself when ``land``
merges the work; GitHub closes an issue when the pull request that closes it is merged).

Asked through the host that reads the claims (this machine's clone first, up to three hosts): one
``ls-remote`` of ``main`` and ``refs/heads/issue/*`` (``land`` pushes ``issue/N`` with the merge,
atomically), and a fetch of ``main`` when the clone lacks its commit (``merged.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.claims import READ_TRIES, ClaimKeeper
from miyabi_ctl.dispatch.graph import Graph
from miyabi_ctl.errors import HostError
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_remote
from miyabi_ctl.remote import Script, key_values, run_script

MERGED_SCRIPT = Script("dispatch", "merged.sh")


@dataclass
class MergedBoard:
    """Issue → the tip of its branch that the remote's main holds; ``error`` if it could not be
    asked (then nothing counts as merged)."""

    merged: dict[int, str] = field(default_factory=dict)
    main: str = ""
    error: str | None = None


def merged_on(host: Host, inventory: Inventory, numbers: list[int]) -> MergedBoard:
    check_remote(inventory.repo.remote)
    try:
        result = run_script(host, MERGED_SCRIPT, host.spec.repo_path_or(inventory.repo),
                            inventory.repo.remote, inventory.repo.main, *map(str, numbers),
                            timeout=90)
    except HostError as exc:
        return MergedBoard(error=f"{host.name}: {exc.message}")
    values = key_values(result.stdout)
    if result.exit_code != 0 or "main" not in values:
        error = values.get("error") or result.stderr.strip() or "merged.sh failed"
        return MergedBoard(error=f"{host.name}: {error}")
    board = MergedBoard(main=values["main"])
    for line in result.stdout.splitlines():
        if line.startswith("merged="):
            issue, _, tip = line[len("merged="):].partition(" ")
            if issue.isdigit():
                board.merged[int(issue)] = tip
    return board


def read_merged(keeper: ClaimKeeper, numbers: list[int], prefer: list[str] | None = None,
                tries: int = READ_TRIES) -> MergedBoard:
    """Which of these open issues' branches the remote's main holds, through the first host of
    up to ``tries`` that can ask."""
    if not numbers:
        return MergedBoard()
    errors = []
    for name in keeper.order(prefer or [])[:tries]:
        board = keeper.on_host(name, lambda host: merged_on(host, keeper.inventory, numbers))
        if board.error is None:
            return board
        errors.append(board.error)
    return MergedBoard(error="; ".join(errors) or "no host in the fleet to ask through")


def with_merged(graph: Graph, board: MergedBoard, remote: str, main: str) -> Graph:
    """The graph with every open issue whose branch is merged marked done, saying where that was
    learnt (``merged into origin/main: issue/1169 at 1a2b3c4d5e6f``)."""
    if not board.merged:
        return graph
    issues = dict(graph.issues)
    notes = dict(graph.done_notes)
    for number, tip in board.merged.items():
        if number in issues and not issues[number].done:
            issues[number] = replace(issues[number], state="closed")
            notes[number] = f"merged into {remote}/{main}: issue/{number} at {tip[:12]}"
    return Graph(issues, graph.children, notes)


def open_issues(graph: Graph) -> list[int]:
    """The issues a merge could make done: open, not a pull request or a tracking issue."""
    return sorted(n for n, i in graph.issues.items()
                  if not i.done and not i.pull_request and n not in graph.children
                  and not i.tracking)


def mark_merged(graph: Graph, source: str, keeper: ClaimKeeper,
                prefer: list[str] | None = None) -> tuple[Graph, str | None]:
    """A file backlog's graph with its merged issues done (GitHub closes its own: unchanged);
    and why that could not be learnt, if so."""
    if source.startswith("github:"):
        return graph, None
    board = read_merged(keeper, open_issues(graph), prefer)
    inv = keeper.inventory
    return with_merged(graph, board, inv.repo.remote, inv.repo.main), board.error
