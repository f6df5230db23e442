"""Start an agent on a host for one issue, look at it later, stop it.

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
from collections.abc import Iterable
from dataclasses import dataclass

from miyabi_ctl.errors import CommandFailed, MiyabiError
from miyabi_ctl.inventory import Inventory
from miyabi_ctl.names import check_branch, check_remote
from miyabi_ctl.remote import key_values, run_script
from miyabi_ctl.transport import Host

DEFAULT_WORKTREES_DIR = "~/.miyabi/worktrees"
PLACEHOLDERS = {
    "issue": "MIYABI_ISSUE",
    "title": "MIYABI_TITLE",
    "prompt_file": "MIYABI_PROMPT_FILE",
    "worktree": "MIYABI_WORKTREE",
    "branch": "MIYABI_BRANCH",
}
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
            out.append(f"${{{var}}}" if context == "dq" else f'"${{{var}}}"')
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


RUNNER = r"""#!/bin/sh
# Written by miyabi-ctl: runs one agent for one issue in its worktree. The issue's values are
# read from the files beside this script, never written into it.
cd "$(dirname "$0")" || exit 1
MIYABI_RUN_DIR=$(pwd)
MIYABI_ISSUE=$(cat issue)
MIYABI_TITLE=$(cat title)
MIYABI_WORKTREE=$(cat worktree)
MIYABI_BRANCH=$(cat branch)
MIYABI_PROMPT_FILE=$MIYABI_RUN_DIR/prompt.md
export MIYABI_RUN_DIR MIYABI_ISSUE MIYABI_TITLE MIYABI_WORKTREE MIYABI_BRANCH MIYABI_PROMPT_FILE
# The PATH of a login shell: where the user's agent CLIs are installed (~/.local/bin, npm, brew).
login_path=$("${SHELL:-/bin/sh}" -lc 'printf "\n@@PATH=%s\n" "$PATH"' </dev/null 2>/dev/null |
  sed -n 's/^@@PATH=//p' | tail -n 1)
[ -n "$login_path" ] && PATH=$login_path:$PATH
export PATH
exec >>"$MIYABI_RUN_DIR/agent.log" 2>&1
echo "miyabi-ctl: $(date) issue #$MIYABI_ISSUE starting in $MIYABI_WORKTREE"
cd "$MIYABI_WORKTREE" || exit 1
{
@@TEMPLATE@@
}
echo "miyabi-ctl: $(date) agent exited with status $?"
"""


def runner_script(template: str) -> str:
    return RUNNER.replace("@@TEMPLATE@@", render_template(template))


def prompt_text(issue: int, title: str, body: str, branch: str) -> str:
    text = f"# Issue #{issue}: {title}\n\n"
    if body.strip():
        text += body.rstrip() + "\n\n"
    return text + (f"---\nYou are working in a git worktree on branch {branch}. Commit your work "
                   "on this branch in small steps; do not push to or merge into main.\n")


# --------------------------------------------------------------------------------------------
# On the host

_COMMON = r"""
expand() {
  case $1 in "~") printf '%s' "$HOME" ;; "~/"*) printf '%s' "$HOME/${1#"~/"}" ;; *) printf '%s' "$1" ;; esac
}
fail() { code=$1; shift; echo "error=$*"; exit "$code"; }
login_path=$("${SHELL:-/bin/sh}" -lc 'printf "\n@@PATH=%s\n" "$PATH"' </dev/null 2>/dev/null |
  sed -n 's/^@@PATH=//p' | tail -n 1)
[ -n "$login_path" ] && PATH=$login_path:$PATH
"""

LAUNCH_SCRIPT = _COMMON + r"""
repo=$(expand "$1") remote=$2 main=$3 wtdir=$(expand "$4") issue=$5 agent_exe=$6
runner=$7 title=$8 prompt=$9
session=miyabi-$issue branch=issue/$issue
wt=$wtdir/issue-$issue rundir=$wtdir/.runs/issue-$issue
command -v tmux >/dev/null 2>&1 || fail 10 "tmux is not installed (not on the login PATH)"
if [ -n "$agent_exe" ] && ! command -v "$agent_exe" >/dev/null 2>&1; then
  fail 11 "agent command '$agent_exe' not found on the login PATH"
fi
tmux has-session -t "=$session" 2>/dev/null && fail 12 "a tmux session $session already exists"
cd "$repo" 2>/dev/null || fail 3 "no such directory: $repo"
git rev-parse --git-dir >/dev/null 2>&1 || fail 3 "not a git repository: $repo"
git fetch -q -- "$remote" >&2 || fail 4 "git fetch $remote failed"
git rev-parse -q --verify "refs/remotes/$remote/$main" >/dev/null || fail 4 "no $remote/$main"
mkdir -p "$wtdir" || fail 5 "cannot create $wtdir"
if [ -e "$wt" ]; then
  [ "$(git -C "$wt" rev-parse --abbrev-ref HEAD 2>/dev/null)" = "$branch" ] ||
    fail 5 "$wt exists but is not a worktree on $branch"
  echo "worktree_action=reused"
elif git rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
  git worktree add -q "$wt" "$branch" >&2 || fail 5 "git worktree add $wt $branch failed"
  echo "worktree_action=existing-branch"
else
  git worktree add -q -b "$branch" "$wt" "$remote/$main" >&2 ||
    fail 5 "git worktree add -b $branch $wt $remote/$main failed"
  echo "worktree_action=created"
fi
wt=$(cd "$wt" && pwd)
echo "worktree=$wt"
echo "base=$(git -C "$wt" rev-parse HEAD)"
mkdir -p "$rundir" || fail 6 "cannot create $rundir"
rundir=$(cd "$rundir" && pwd)
printf '%s' "$issue" >"$rundir/issue"
printf '%s' "$title" >"$rundir/title"
printf '%s' "$wt" >"$rundir/worktree"
printf '%s' "$branch" >"$rundir/branch"
printf '%s' "$prompt" >"$rundir/prompt.md"
printf '%s\n' "$runner" >"$rundir/run.sh"
echo "log=$rundir/agent.log"
tmux new-session -d -s "$session" -c "$rundir" 'exec sh ./run.sh' ||
  fail 13 "tmux new-session failed"
sleep 1  # an agent that cannot start (bad flag, no login) is gone by now
if ! tmux has-session -t "=$session" 2>/dev/null; then
  echo "log_tail=$(tail -n 3 "$rundir/agent.log" 2>/dev/null | tr '\n' ' ')"
  fail 14 "the agent exited at once"
fi
echo "session=$session"
"""


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
        runner, title, prompt_text(issue, title, body, branch), timeout=120)
    values = key_values(result.stdout)
    if result.exit_code != 0 or "session" not in values:
        message = values.get("error") or (result.stderr.strip().splitlines() or ["failed"])[-1]
        if values.get("log_tail"):
            message += f"; log: {values['log_tail'].strip()}"
        raise LaunchError(f"{host.name}: cannot launch #{issue}: {message}")
    return Launched(host.name, issue, values["worktree"], branch, values["session"],
                    values.get("base", ""), values.get("log", ""),
                    values.get("worktree_action", ""))


# --------------------------------------------------------------------------------------------
# Looking at runs, stopping them

RUNS_SCRIPT = _COMMON + r"""
repo=$(expand "$1") remote=$2 main=$3
shift 3
cd "$repo" 2>/dev/null || fail 3 "no such directory: $repo"
have_tmux=no; command -v tmux >/dev/null 2>&1 && have_tmux=yes
upstream=refs/remotes/$remote/$main
git rev-parse -q --verify "$upstream" >/dev/null || upstream=refs/heads/$main
while [ $# -ge 4 ]; do
  issue=$1 branch=$2 base=$3 log=$4
  shift 4
  alive=no
  [ $have_tmux = yes ] && tmux has-session -t "=miyabi-$issue" 2>/dev/null && alive=yes
  ahead= merged=no last_commit= log_time=
  if git rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
    ahead=$(git rev-list --count "$upstream..refs/heads/$branch" 2>/dev/null)
    tip=$(git rev-parse "refs/heads/$branch")
    last_commit=$(git log -1 --format=%ct "refs/heads/$branch")
    if [ -n "$base" ] && [ "$tip" != "$base" ] &&
       git merge-base --is-ancestor "$tip" "$upstream" 2>/dev/null; then
      merged=yes
    fi
  fi
  [ -n "$log" ] && [ -f "$log" ] &&
    log_time=$(stat -c %Y "$log" 2>/dev/null || stat -f %m "$log" 2>/dev/null)
  echo "run=$issue alive=$alive ahead=$ahead merged=$merged last_commit=$last_commit log_time=$log_time"
done
echo "tmux=$have_tmux"
"""


@dataclass(frozen=True)
class RunFacts:
    issue: int
    alive: bool
    ahead: int | None
    merged: bool
    last_activity: int | None  # unix time: the latest of the last commit and the log's last write


def look(host: Host, inventory: Inventory,
         runs: list[tuple[int, str, str, str]]) -> dict[int, RunFacts]:
    """One round trip: for each (issue, branch, base, log) whether its session lives, and more."""
    args = [a for run in runs for a in (str(run[0]), run[1], run[2] or "", run[3] or "")]
    result = run_script(host, RUNS_SCRIPT, host.spec.repo_path_or(inventory.repo),
                        inventory.repo.remote, inventory.repo.main, *args, timeout=60)
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot look at runs: {error}", result)
    facts: dict[int, RunFacts] = {}
    for line in result.stdout.splitlines():
        if not line.startswith("run="):
            continue
        values = dict(part.split("=", 1) for part in line.split(" "))
        times = [int(values[k]) for k in ("last_commit", "log_time") if values.get(k)]
        facts[int(values["run"])] = RunFacts(
            issue=int(values["run"]),
            alive=values.get("alive") == "yes",
            ahead=int(values["ahead"]) if values.get("ahead") else None,
            merged=values.get("merged") == "yes",
            last_activity=max(times) if times else None,
        )
    return facts


STOP_SCRIPT = _COMMON + r"""
issue=$1
session=miyabi-$issue
if command -v tmux >/dev/null 2>&1 && tmux has-session -t "=$session" 2>/dev/null; then
  tmux kill-session -t "=$session" || fail 1 "tmux kill-session $session failed"
  echo "stopped=yes"
else
  echo "stopped=no"
fi
"""


def stop(host: Host, issue: int) -> bool:
    """End the tmux session ``miyabi-<issue>``; True if one was running."""
    result = run_script(host, STOP_SCRIPT, str(issue), timeout=30)
    values = key_values(result.stdout)
    if result.exit_code != 0:
        raise CommandFailed(host.name, values.get("error") or result.stderr.strip(), result)
    return values.get("stopped") == "yes"


WORKTREE_SCRIPT = _COMMON + r"""
repo=$(expand "$1") wt=$(expand "$2") mode=$3 discard_ignored=$4 discard_nested=$5
cd "$repo" 2>/dev/null || fail 3 "no such directory: $repo"
# What `git worktree remove --force` would destroy although no backup holds it: repositories
# nested in the worktree (a backup records only their commit id), with their changes, ignored
# files and commits found on none of their remotes; and the worktree's own ignored files.
# Prints `nested=CHANGES COMMITS PATH` and `ignored=PATH` (a newline in a name shows as ?).
inspect() {
  [ -d "$wt" ] || { echo "absent=1"; return 0; }
  find "$wt" -mindepth 2 -name .git -prune -print 2>/dev/null | while IFS= read -r g; do
    d=${g%/.git}
    changes=$(git -C "$d" status --porcelain --ignored --untracked-files=normal 2>/dev/null |
      wc -l | tr -d ' ')
    commits=$(git -C "$d" rev-list --count --all --not --remotes 2>/dev/null) || commits=0
    echo "nested=${changes:-0} ${commits:-0} $(printf '%s' "${d#"$wt"/}" | tr '\n' '?')"
  done
  git -C "$wt" ls-files -z -o -i --exclude-standard --directory 2>/dev/null |
    tr '\n\0' '?\n' | sed 's/^/ignored=/'
}
case $mode in
  inspect) inspect ;;
  remove)
    if [ -e "$wt" ]; then
      # Checked again here, right before the removal, with the session already stopped.
      found=$(inspect)
      printf '%s\n' "$found"
      with_work=$(printf '%s\n' "$found" | awk '/^nested=/ { split(substr($0, 8), f, " ")
        if (f[1] > 0 || f[2] > 0) n++ } END { print n + 0 }')
      if [ "$discard_nested" != 1 ] && [ "$with_work" -gt 0 ]; then
        fail 6 "nested repositories hold work that is not in the backup"
      fi
      if [ "$discard_ignored" != 1 ] && printf '%s\n' "$found" | grep -q '^ignored='; then
        fail 6 "ignored files are not in the backup"
      fi
      git worktree remove --force "$wt" || fail 5 "git worktree remove $wt failed"
    fi
    git worktree prune
    echo "removed=yes" ;;
  *) fail 2 "unknown mode $mode" ;;
esac
"""


class WorktreeKept(MiyabiError):
    """The worktree holds what no backup has (nested repositories, ignored files): not removed."""


@dataclass(frozen=True)
class NestedRepo:
    path: str  # relative to the worktree
    changes: int  # uncommitted, untracked or ignored files
    commits: int  # commits on none of its remotes

    @property
    def has_work(self) -> bool:
        return self.changes > 0 or self.commits > 0

    def describe(self) -> str:
        if not self.has_work:
            return f"{self.path} (clean, every commit on its remotes)"
        parts = [f"{self.changes} uncommitted or ignored files"] if self.changes else []
        parts += [f"{self.commits} commits on no remote"] if self.commits else []
        return f"{self.path} ({', '.join(parts)})"


@dataclass(frozen=True)
class Leftovers:
    """What removing a worktree would destroy that its backup does not hold."""

    nested: tuple[NestedRepo, ...] = ()
    ignored: tuple[str, ...] = ()
    absent: bool = False

    @property
    def nested_with_work(self) -> list[NestedRepo]:
        return [n for n in self.nested if n.has_work]

    def refusals(self, *, discard_ignored: bool, discard_nested: bool) -> list[str]:
        """Why the worktree must not be removed without the matching --discard-* flag."""
        reasons = []
        if self.nested_with_work and not discard_nested:
            reasons.append(f"{_some(n.describe() for n in self.nested_with_work)}: nested "
                           "repositories whose files and commits are not in the backup "
                           "(--discard-nested deletes them)")
        if self.ignored and not discard_ignored:
            reasons.append(f"{_some(self.ignored)}: ignored files that are not in the backup "
                           "(--discard-ignored deletes them)")
        return reasons

    def notes(self, *, discard_ignored: bool, discard_nested: bool) -> list[str]:
        """What removal deletes anyway (nothing lost that exists nowhere else, or --discard-*)."""
        notes = [f"nested repository {n.describe()} is deleted with the worktree"
                 for n in self.nested if not n.has_work]
        if self.nested_with_work and discard_nested:
            notes.append(f"--discard-nested: DELETES {_some(n.describe() for n in self.nested_with_work)}")
        if self.ignored and discard_ignored:
            notes.append(f"--discard-ignored: DELETES the ignored {_some(self.ignored)}")
        return notes


def _some(items: Iterable[str], limit: int = 5) -> str:
    names = list(items)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _parse_leftovers(stdout: str) -> Leftovers:
    nested, ignored, absent = [], [], False
    for line in stdout.splitlines():
        key, _, value = line.partition("=")
        if key == "nested":
            changes, commits, path = value.split(" ", 2)
            nested.append(NestedRepo(path, int(changes or 0), int(commits or 0)))
        elif key == "ignored" and value:
            ignored.append(value)
        elif key == "absent":
            absent = True
    return Leftovers(tuple(nested), tuple(ignored), absent)


def inspect_worktree(host: Host, inventory: Inventory, worktree: str) -> Leftovers:
    """Read-only: the nested repositories and ignored files a removal would destroy."""
    result = run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                        "inspect", "0", "0", timeout=120)
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot look into {worktree}: {error}", result)
    return _parse_leftovers(result.stdout)


def remove_worktree(host: Host, inventory: Inventory, worktree: str, *,
                    discard_ignored: bool = False, discard_nested: bool = False) -> Leftovers:
    """Remove the issue's worktree (its branch and the run files with the log stay).

    Call only after the worktree has been backed up. The script checks again, just before the
    removal, for nested repositories with work and ignored files, and keeps the worktree
    (WorktreeKept) unless the matching ``discard_*`` flag says to delete them.
    """
    result = run_script(host, WORKTREE_SCRIPT, host.spec.repo_path_or(inventory.repo), worktree,
                        "remove", "1" if discard_ignored else "0", "1" if discard_nested else "0",
                        timeout=120)
    found = _parse_leftovers(result.stdout)
    if result.exit_code == 6:
        reasons = found.refusals(discard_ignored=discard_ignored, discard_nested=discard_nested)
        raise WorktreeKept("; ".join(reasons) or key_values(result.stdout).get("error", "refused"))
    if result.exit_code != 0:
        error = key_values(result.stdout).get("error") or result.stderr.strip()
        raise CommandFailed(host.name, f"cannot remove {worktree}: {error}", result)
    return found
