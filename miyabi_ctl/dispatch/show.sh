# miyabi-ctl show (miyabi_ctl/dispatch/show.py): sent after runs.sh in the same script, one round
# trip. runs.sh has looked at the one run (REPO REMOTE MAIN ISSUE BRANCH BASE LOG: its record,
# with $repo, $issue, $branch, $base, $log, $upstream and $tip set) and leaves this script its own
# arguments: WORKTREE DIFF LINES. Prints, as key=value lines: the commits on the branch since its
# base (`commit=SHA TIME SUBJECT`), the files it changed (`file=ADDED<TAB>DELETED<TAB>PATH`, git's
# quoting for unusual names), `shortstat=`, the worktree's uncommitted files (`dirty=N`,
# `dirty_file=XY PATH`), the last LINES of the agent's log (`log=`), the last check `land` ran
# (`check.KEY=`, `check_out=`); with DIFF=1, a line `@@miyabi-diff@@` and then the whole patch.
# Text from the run (subjects, log lines) loses terminal escapes and control characters.
expand_home "$1"; wt=$expanded
want_diff=$2 lines=${3:-20}
# Printable text only: escape sequences and control characters (but tab) dropped.
printable() {
  awk '{ gsub(/\033\[[0-9;?]*[A-Za-z]/, ""); gsub(/\033\][^\007]*\007/, ""); print }' |
    tr -d '\000-\010\013-\037\177'
}
refs=refs/heads/$branch
if [ -z "$tip" ]; then
  echo "branch_missing=1"
else
  from=$base
  if [ -z "$from" ] || ! git merge-base --is-ancestor "$from" "$tip" 2>/dev/null; then
    from=$(git merge-base "$upstream" "$tip" 2>/dev/null)
  fi
  echo "from=$from"
  if [ -n "$from" ]; then
    echo "commit_count=$(git rev-list --count "$from..$tip")"
    git log --no-color --format='%H %ct %s' --max-count=200 "$from..$tip" 2>/dev/null |
      printable | sed 's/^/commit=/'
    git -c core.quotepath=off diff --no-color --no-ext-diff --no-textconv --numstat "$from" "$tip" \
      2>/dev/null | sed 's/^/file=/'
    echo "shortstat=$(git diff --shortstat "$from" "$tip" 2>/dev/null | sed 's/^ *//')"
  fi
fi
if [ -d "$wt" ]; then
  echo "worktree=yes"
  status=$(git -c core.quotepath=off -C "$wt" --no-optional-locks status --porcelain=v1 \
    --untracked-files=normal 2>/dev/null) || echo "dirty_error=git status failed in $wt"
  if [ -n "$status" ]; then
    echo "dirty=$(printf '%s\n' "$status" | wc -l | tr -d ' ')"
    printf '%s\n' "$status" | head -n 20 | printable | sed 's/^/dirty_file=/'
  else
    echo "dirty=0"
  fi
else
  echo "worktree=no"
fi
if [ -n "$log" ] && [ -f "$log" ]; then
  tail -n "$lines" "$log" 2>/dev/null | tr '\r' '\n' | printable | sed 's/^/log=/'
  rundir=$(dirname "$log")
  [ -f "$rundir/check.result" ] && sed 's/^/check./' "$rundir/check.result"
  [ -f "$rundir/check.log" ] && tail -n 20 "$rundir/check.log" | printable | sed 's/^/check_out=/'
fi
if [ "$want_diff" = 1 ] && [ -n "$tip" ] && [ -n "$from" ]; then
  echo "@@miyabi-diff@@"
  git diff --no-color --no-ext-diff --no-textconv "$from" "$tip"
fi
true
