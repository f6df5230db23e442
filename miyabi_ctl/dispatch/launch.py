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

import re
import shlex
from dataclasses import dataclass
from importlib.resources import files

from miyabi_ctl.connectors.base import Host
from miyabi_ctl.dispatch.reparse import reparsing_problem
from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.remote import Script, key_values, run_script

DEFAULT_WORKTREES_DIR = "~/.miyabi/worktrees"
PLACEHOLDERS = {
    "issue": "MIYABI_ISSUE",
    "title": "MIYABI_TITLE",
    "prompt_file": "MIYABI_PROMPT_FILE",
    "worktree": "MIYABI_WORKTREE",
    "branch": "MIYABI_BRANCH",
    "test_command": "MIYABI_TEST_COMMAND",
    "test_tool": "MIYABI_TEST_TOOL",
}
# Placeholders that may be empty: outside quotes they vanish then instead of passing "".
OPTIONAL = {"test_command", "test_tool"}
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(MiyabiError):
    """A launch template that cannot be rendered safely."""

    exit_code = 2


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


# --------------------------------------------------------------------------------------------
# Templates


def render_template(template: str) -> str:
    """The template with each placeholder replaced by a quoted variable reference, never a value.

    A small scanner follows sh quoting: outside quotes a placeholder becomes ``"${VAR}"``; inside
    double quotes (including ``"$(cat {prompt_file})"``, where ``$(`` opens a fresh context)
    ``${VAR}``; inside single quotes or backticks it is refused, since no reference can work there.
    A template that hands a value to a program that parses it again (``sh -c "… {title}"``,
    ``eval``, ``ssh``, ``xargs``…) is refused too (``reparse``).
    """
    out: list[str] = []
    stack = ["plain"]  # plain | dq | sub (inside $( ), unquoted)
    depth = [0]
    i = 0
    while i < len(template):
        ch = template[i]
        context = stack[-1]
        match = _PLACEHOLDER_RE.match(template, i)
        if match and not (i > 0 and template[i - 1] == "$"):
            name = match.group(1)
            if name not in PLACEHOLDERS:
                raise TemplateError(f"launch template: unknown placeholder {{{name}}} "
                                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
            var = PLACEHOLDERS[name]
            if context == "dq":
                out.append(f"${{{var}}}")
            elif name in OPTIONAL:
                out.append(f'${{{var}:+"${{{var}}}"}}')
            else:
                out.append(f'"${{{var}}}"')
            i = match.end()
            continue
        if ch == "\\" and i + 1 < len(template):
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == "`":
            raise TemplateError("launch template: use $( ) instead of backticks")
        if context != "dq" and ch == "'":
            end = template.find("'", i + 1)
            if end < 0:
                raise TemplateError("launch template: unterminated single quote")
            if _PLACEHOLDER_RE.search(template, i, end):
                raise TemplateError("launch template: a placeholder inside single quotes would "
                                    "stay literal; put it outside quotes or in double quotes")
            out.append(template[i:end + 1])
            i = end + 1
            continue
        if ch == "$" and template.startswith("${", i):
            end = template.find("}", i)
            if end < 0:
                raise TemplateError("launch template: unterminated ${")
            out.append(template[i:end + 1])
            i = end + 1
            continue
        if ch == "$" and template.startswith("$(", i):
            stack.append("sub")
            depth.append(0)
            out.append("$(")
            i += 2
            continue
        if ch == '"':
            if context == "dq":
                stack.pop()
                depth.pop()
            else:
                stack.append("dq")
                depth.append(0)
        elif context == "sub" and ch == "(":
            depth[-1] += 1
        elif context == "sub" and ch == ")":
            if depth[-1] == 0:
                stack.pop()
                depth.pop()
            else:
                depth[-1] -= 1
        out.append(ch)
        i += 1
    if len(stack) != 1:
        raise TemplateError("launch template: unbalanced quotes or $( )")
    problem = reparsing_problem(template)
    if problem:
        raise TemplateError(problem)
    return "".join(out)


def agent_command(template: str) -> str:
    """The program a template starts (checked on the host before launching); '' if unclear."""
    try:
        words = shlex.split(template)
    except ValueError:
        return ""
    words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)][:1]
    if not words or any(c in words[0] for c in "{}$`"):
        return ""
    return words[0]


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
    spec = inventory.agents.get(agent)
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


