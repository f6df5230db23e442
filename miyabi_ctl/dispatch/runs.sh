# miyabi-ctl runs (miyabi_ctl/dispatch/agent_run.py): REPO REMOTE MAIN, then ISSUE BRANCH BASE LOG per
# run. Prints one record per run, each starting with `run=ISSUE`, then `tmux=yes|no`. For a live
# session, the last non-blank line of its pane (`pane_tail`) and of its log (`log_tail`), printable
# characters only, so the controller can tell a session that waits for an answer; for an ended one
# the agent's exit status as run.sh logged it (`exit_status`); `tip=` the branch's commit.
# Last, `now=`: the host's clock, so the controller compares the host's times only with each other.
use_login_path
expand_home "$1"; repo=$expanded
remote=$2 main=$3
shift 3
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
have_tmux=no; command -v tmux >/dev/null 2>&1 && have_tmux=yes
# The last line with something printable on it, terminal escapes and control characters dropped,
# at most 200 bytes.
last_line() {
  tr '\r' '\n' | awk '{ gsub(/\033\[[0-9;?]*[A-Za-z]/, ""); print }' |
    tr -d '\000-\010\013-\037\177' | awk 'NF { line = $0 } END { print substr(line, 1, 200) }'
}
upstream=refs/remotes/$remote/$main
git rev-parse -q --verify "$upstream" >/dev/null || upstream=refs/heads/$main
while [ $# -ge 4 ]; do
  issue=$1 branch=$2 base=$3 log=$4
  shift 4
  alive=no
  [ $have_tmux = yes ] && tmux has-session -t "=miyabi-$issue" 2>/dev/null && alive=yes
  ahead= merged=no last_commit= log_time= tip=
  if git rev-parse -q --verify "refs/heads/$branch" >/dev/null; then
    ahead=$(git rev-list --count "$upstream..refs/heads/$branch" 2>/dev/null)
    tip=$(git rev-parse "refs/heads/$branch")
    last_commit=$(git log -1 --format=%ct "refs/heads/$branch")
    if [ -n "$base" ] && [ "$tip" != "$base" ] &&
       git merge-base --is-ancestor "$tip" "$upstream" 2>/dev/null; then
      merged=yes
    fi
  fi
  pane_tail= log_tail= exit_status=
  [ -n "$log" ] && [ -f "$log" ] &&
    log_time=$(stat -c %Y "$log" 2>/dev/null || stat -f %m "$log" 2>/dev/null)
  if [ $alive = yes ]; then
    pane_tail=$(tmux capture-pane -p -t "=miyabi-$issue:" 2>/dev/null | last_line)
    [ -n "$log" ] && [ -f "$log" ] && log_tail=$(tail -c 4096 "$log" 2>/dev/null | last_line)
  elif [ -n "$log" ] && [ -f "$log" ]; then
    exit_status=$(sed -n 's/^miyabi-ctl: .* agent exited with status \([0-9][0-9]*\)$/\1/p' \
      "$log" 2>/dev/null | tail -n 1)
  fi
  printf '%s\n' "run=$issue" "alive=$alive" "ahead=$ahead" "merged=$merged" "tip=$tip" \
    "last_commit=$last_commit" "log_time=$log_time" "pane_tail=$pane_tail" \
    "log_tail=$log_tail" "exit_status=$exit_status"
done
echo "tmux=$have_tmux"
echo "now=$(date +%s)"
