# miyabi-ctl launch (miyabi_ctl/dispatch/launch.py): REPO REMOTE MAIN WTDIR ISSUE AGENT_EXE RUNNER
# TITLE PROMPT TEST_COMMAND. Creates or reuses the worktree issue/N, writes the run files beside it and starts
# run.sh in tmux session miyabi-N. Prints key=value lines; `error=` and a code on failure.
use_login_path
expand_home "$1"; repo=$expanded
expand_home "$4"; wtdir=$expanded
remote=$2 main=$3 issue=$5 agent_exe=$6 runner=$7 title=$8 prompt=$9 test_command=${10}
session=miyabi-$issue branch=issue/$issue
wt=$wtdir/issue-$issue rundir=$wtdir/.runs/issue-$issue
command -v tmux >/dev/null 2>&1 || die 10 "tmux is not installed (not on the login PATH)"
if [ -n "$agent_exe" ] && ! command -v "$agent_exe" >/dev/null 2>&1; then
  die 11 "agent command '$agent_exe' not found on the login PATH"
fi
tmux has-session -t "=$session" 2>/dev/null && die 12 "a tmux session $session already exists"
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
git rev-parse --git-dir >/dev/null 2>&1 || die 3 "not a git repository: $repo"
git fetch -q -- "$remote" >&2 || die 4 "git fetch $remote failed"
git rev-parse -q --verify "refs/remotes/$remote/$main" >/dev/null || die 4 "no $remote/$main"
mkdir -p "$wtdir" || die 5 "cannot create $wtdir"
if [ -e "$wt" ]; then
  [ "$(git -C "$wt" rev-parse --abbrev-ref HEAD 2>/dev/null)" = "$branch" ] ||
    die 5 "$wt exists but is not a worktree on $branch"
  echo "worktree_action=reused"
elif git rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
  git worktree add -q "$wt" "$branch" >&2 || die 5 "git worktree add $wt $branch failed"
  echo "worktree_action=existing-branch"
else
  git worktree add -q -b "$branch" "$wt" "$remote/$main" >&2 ||
    die 5 "git worktree add -b $branch $wt $remote/$main failed"
  echo "worktree_action=created"
fi
wt=$(cd "$wt" && pwd)
echo "worktree=$wt"
echo "base=$(git -C "$wt" rev-parse HEAD)"
mkdir -p "$rundir" || die 6 "cannot create $rundir"
rundir=$(cd "$rundir" && pwd)
printf '%s' "$issue" >"$rundir/issue"
printf '%s' "$title" >"$rundir/title"
printf '%s' "$wt" >"$rundir/worktree"
printf '%s' "$branch" >"$rundir/branch"
printf '%s' "$prompt" >"$rundir/prompt.md"
printf '%s' "$test_command" >"$rundir/test_command"
printf '%s\n' "$runner" >"$rundir/run.sh"
echo "log=$rundir/agent.log"
tmux new-session -d -s "$session" -c "$rundir" 'exec sh ./run.sh' ||
  die 13 "tmux new-session failed"
sleep 1  # an agent that cannot start (bad flag, no login) is gone by now
if ! tmux has-session -t "=$session" 2>/dev/null; then
  echo "log_tail=$(tail -n 3 "$rundir/agent.log" 2>/dev/null | tr '\n' ' ')"
  die 14 "the agent exited at once"
fi
echo "session=$session"
