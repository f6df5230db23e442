# miyabi-ctl tell (miyabi_ctl/dispatch/tell.py): MODE ISSUE RUNDIR MESSAGE [WORKTREE BRANCH AGENT_EXE
# RUNNER]. The message is written to RUNDIR/message.md with printf (data, never a command line).
#   type     the live tmux session miyabi-ISSUE gets it as typed input: loaded into a tmux buffer
#            from that file, pasted into the pane (bracketed when the program asked for it), then
#            Enter
#   restart  no session lives: RUNNER (the agent's follow-up template, rendered) is written to
#            RUNDIR/follow-up.sh and started in a new session miyabi-ISSUE, in the same worktree,
#            with message.md as its prompt; one second later it must still run, or have ended
#            with status 0
# Prints key=value lines; `error=` and a code on failure.
use_login_path
mode=$1 issue=$2 rundir=$3 message=$4
session=miyabi-$issue
command -v tmux >/dev/null 2>&1 || die 10 "tmux is not installed (not on the login PATH)"
[ -d "$rundir" ] || die 3 "no such directory: $rundir (the run's files)"
alive=no
tmux has-session -t "=$session" 2>/dev/null && alive=yes
case $mode in
type)
  [ $alive = yes ] || die 12 "no tmux session $session: the agent is not running"
  printf '%s' "$message" >"$rundir/message.md" || die 3 "cannot write $rundir/message.md"
  buffer=miyabi-tell-$$
  tmux load-buffer -b "$buffer" "$rundir/message.md" || die 13 "tmux load-buffer failed"
  tmux paste-buffer -p -d -b "$buffer" -t "=$session:" || die 13 "tmux paste-buffer failed"
  tmux send-keys -t "=$session:" Enter || die 13 "tmux send-keys failed"
  echo "typed=$session"
  ;;
restart)
  expand_home "$5"; wt=$expanded
  branch=$6 agent_exe=$7 runner=$8
  [ $alive = no ] || die 12 "the session $session is alive: the message is typed into it instead"
  [ -d "$wt" ] || die 5 "the worktree $wt is gone"
  [ "$(git -C "$wt" rev-parse --abbrev-ref HEAD 2>/dev/null)" = "$branch" ] ||
    die 5 "$wt is not a worktree on $branch"
  if [ -n "$agent_exe" ] && ! command -v "$agent_exe" >/dev/null 2>&1; then
    die 11 "agent command '$agent_exe' not found on the login PATH"
  fi
  printf '%s' "$message" >"$rundir/message.md" || die 3 "cannot write $rundir/message.md"
  printf '%s\n' "$runner" >"$rundir/follow-up.sh" || die 3 "cannot write $rundir/follow-up.sh"
  log=$rundir/agent.log
  ended() { grep -c '^miyabi-ctl: .* agent exited with status [0-9]*$' "$log" 2>/dev/null; }
  before=$(ended)
  tmux new-session -d -s "$session" -c "$rundir" 'exec sh ./follow-up.sh message.md' ||
    die 13 "tmux new-session failed"
  sleep 1
  if ! tmux has-session -t "=$session" 2>/dev/null; then
    status=$(sed -n 's/^miyabi-ctl: .* agent exited with status \([0-9][0-9]*\)$/\1/p' "$log" |
      tail -n 1)
    if [ "$(ended)" = "${before:-0}" ] || [ "$status" != 0 ]; then
      echo "log_tail=$(tail -n 3 "$log" 2>/dev/null | tr '\n' ' ')"
      die 14 "the agent exited at once${status:+ (status $status)}"
    fi
    echo "finished=1"
  fi
  echo "session=$session"
  ;;
*)
  die 2 "unknown mode: $mode"
  ;;
esac
