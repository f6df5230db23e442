# miyabi-ctl stop (miyabi_ctl/dispatch/agent_run.py): ISSUE. Ends tmux session miyabi-ISSUE.
use_login_path
issue=$1
session=miyabi-$issue
if command -v tmux >/dev/null 2>&1 && tmux has-session -t "=$session" 2>/dev/null; then
  tmux kill-session -t "=$session" || die 1 "tmux kill-session $session failed"
  echo "stopped=yes"
else
  echo "stopped=no"
fi
