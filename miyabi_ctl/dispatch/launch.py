"""Start an agent on a host for one issue (looking at it and stopping it: ``agent_run``).

On the host, for issue N: fetch; ``git worktree add <worktrees_dir>/issue-N -b issue/N
<remote>/<main>`` (or reuse it); write the prompt and the issue's values into
``<worktrees_dir>/.runs/issue-N/``; start ``run.sh`` there in a detached tmux session
``miyabi-N``; check the session is still alive a moment later.

Hostile input never becomes code. Values (title, body, paths) travel as ``run_script``
positional parameters and are written to files with ``printf '%s'``. The agent's launch template
from fleet.yaml is rendered without any value in it: each placeholder becomes a reference to an
environment variable that ``run.sh`` reads from those files (``{title}`` → ``"${MIYABI_TITLE}"``
outside quotes, ``${MIYABI_TITLE}`` inside double quotes). A shell never re-reads the result of
a parameter expansion, so ``$(rm -rf ~)`` in a title stays text.

The prompt and the run files live beside the worktree, not in it: an agent must not find them as
untracked files and commit them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.remote import Script, key_values, run_script
from miyabi_ctl.templates import agent_command, render_template

DEFAULT_WORKTREES_DIR = "~/.miyabi/worktrees"
class LaunchError(MiyabiError):
    """The agent could not be started on the host (no tmux, no agent binary, git failed…)."""


@dataclass(frozen=True)
class Launched:
    host: str
    issue: int
    worktree: str
    branch: str
    session: str
    base: str
    log: str
    worktree_action: str  # created | reused | existing-branch


def session_name(issue: int) -> str:
    return f"miyabi-{issue}"


def branch_name(issue: int) -> str:
    return f"issue/{issue}"


def worktrees_dir(inventory: Inventory) -> str:
    return str(inventory.dispatch.get("worktrees_dir") or DEFAULT_WORKTREES_DIR)


def test_command(inventory: Inventory) -> str:
    """The repository's test command (``dispatch.test_command``), which the default Claude
    template allows the agent to run; '' when not configured."""
    return str(inventory.dispatch.get("test_command") or "").strip()


def worktree_path(inventory: Inventory, issue: int) -> str:
    """The worktree as configured (a leading ``~/`` is expanded on the host)."""
    return f"{worktrees_dir(inventory).rstrip('/')}/issue-{issue}"


AGENT_RUNNER = Script("dispatch", "agent_runner.sh")
LAUNCH_SCRIPT = Script("dispatch", "launch.sh")


def runner_script(template: str) -> str:
    """``run.sh`` for the host: the runner with the rendered template (references, no values).

    The runner is written to a file on the host and run from there, so it is the plain
    ``agent_runner.sh``, without the remote library."""
    text = files("miyabi_ctl.dispatch").joinpath("agent_runner.sh").read_text(encoding="utf-8")
    return text.replace("@@TEMPLATE@@", render_template(template))


def prompt_text(issue: int, title: str, body: str, branch: str) -> str:
    text = f"# Issue #{issue}: {title}\n\n"
    if body.strip():
        text += body.rstrip() + "\n\n"
    return text + (f"---\nYou are working in a git worktree on branch {branch}. Commit your work "
                   "on this branch in small steps; do not push to or merge into main.\n")


def launch(host: Host, inventory: Inventory, *, issue: int, title: str, body: str,
           agent: str) -> Launched:
    """Create or reuse the worktree and start the agent in tmux; raise LaunchError on failure."""
    spec = inventory.launchers.get(agent)
    if spec is None or not spec.launch:
        raise LaunchError(f"agent {agent!r} has no launch template in fleet.yaml "
                          f"(agents.{agent}.launch)")
    runner = runner_script(spec.launch)
    branch = branch_name(issue)
    check_remote(inventory.repo.remote)
    check_branch(inventory.repo.main, "repo.main")
    result = run_script(
        host, LAUNCH_SCRIPT, host.spec.repo_path_or(inventory.repo), inventory.repo.remote,
        inventory.repo.main, worktrees_dir(inventory), str(issue), agent_command(spec.launch),
        runner, title, prompt_text(issue, title, body, branch), test_command(inventory),
        timeout=120)
    values = key_values(result.stdout)
    if result.exit_code != 0 or "session" not in values:
        message = values.get("error") or (result.stderr.strip().splitlines() or ["failed"])[-1]
        if values.get("log_tail"):
            message += f"; log: {values['log_tail'].strip()}"
        raise LaunchError(f"{host.name}: cannot launch #{issue}: {message}")
    return Launched(host.name, issue, values["worktree"], branch, values["session"],
                    values.get("base", ""), values.get("log", ""),
                    values.get("worktree_action", ""))


