# miyabi-ctl worktree (miyabi_ctl/dispatch/worktree.py): REPO WORKTREE MODE DISCARD_IGNORED DISCARD_NESTED
# [GRACE], MODE inspect|stop|remove.
use_login_path
expand_home "$1"; repo=$expanded
expand_home "$2"; wt=$expanded
mode=$3 discard_ignored=$4 discard_nested=$5
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
# What `git worktree remove --force` would destroy although no backup holds it: repositories
# nested in the worktree (a backup records only their commit id), with their changes, ignored
# files and commits found on none of their remotes; and the worktree's own ignored files.
# Prints `nested=CHANGES COMMITS PATH` and `ignored=PATH` (a newline in a name shows as ?).
inspect() {
  [ -d "$wt" ] || { echo "absent=1"; return 0; }
  find "$wt" -mindepth 2 -name .git -prune -print 2>/dev/null | while IFS= read -r g; do
    d=${g%/.git}
    # Fails closed: a repository git cannot read counts as holding work (`?`). Its git
    # directory is named, so a broken one is never mistaken for the worktree around it.
    ng() { git --git-dir="$d/.git" --work-tree="$d" "$@"; }
    if ng --no-optional-locks status --porcelain --ignored --untracked-files=normal >"$tmp_status" 2>/dev/null
    then changes=$(wc -l <"$tmp_status" | tr -d ' '); else changes='?'; fi
    if ng rev-parse -q --verify HEAD >/dev/null 2>&1; then
      commits=$(ng rev-list --count --all --not --remotes 2>/dev/null) || commits='?'
    elif ng rev-parse --git-dir >/dev/null 2>&1; then commits=0
    else commits='?'; fi
    echo "nested=${changes:-?} ${commits:-?} $(printf '%s' "${d#"$wt"/}" | tr '\n' '?')"
  done
  git -C "$wt" ls-files -z -o -i --exclude-standard --directory >"$tmp_status" 2>/dev/null ||
    echo "ignored=(git cannot list the ignored files)"
  tr '\n\0' '?\n' <"$tmp_status" | sed 's/^/ignored=/'
}
tmp_status=$(mktemp "${TMPDIR:-/tmp}/miyabi-wt.XXXXXX") || die 3 "mktemp failed"
trap 'rm -f "$tmp_status"' EXIT
# Processes working in the worktree: their cwd or an open file is inside it (Linux /proc; else
# lsof). One pid a line; this script and its parents are never listed.
inside_pids() {
  if [ -d /proc/self/fd ]; then
    # One `ls` for every link (a readlink per descriptor would start thousands of processes).
    { ls -l /proc/[0-9]*/cwd 2>/dev/null; ls -l /proc/[0-9]*/fd 2>/dev/null; } |
      awk -v wt="$wt/" -v self="$$" '
        /^\/proc\/[0-9]+\/fd:$/ { split($0, p, "/"); pid = p[3]; next }
        / -> / {
          at = index($0, " -> "); t = substr($0, at + 4) "/"; who = pid
          if (match($0, /\/proc\/[0-9]+\/cwd -> /)) { split(substr($0, RSTART), p, "/"); who = p[3] }
          if (who != self && index(t, wt) == 1) print who
        }'
  elif command -v lsof >/dev/null 2>&1; then
    lsof -t +D "$wt" 2>/dev/null
  else
    echo "error=cannot see which processes work in $wt (no /proc, no lsof)"
  fi | sort -u
}

# End every process working in the worktree: TERM, up to GRACE seconds, then KILL. Prints
# `stopped=PID` for each, `left=PID` for those still there.
stop_inside() {
  pids=$(inside_pids)
  case $pids in error=*) echo "$pids"; exit 7 ;; esac
  [ -n "$pids" ] || return 0
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null && echo "stopped=$pid"; done
  waited=0
  while [ "$waited" -lt "$((grace * 5))" ]; do
    alive=
    for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive="$alive $pid"; done
    [ -n "$alive" ] || return 0
    sleep 0.2 2>/dev/null || sleep 1
    waited=$((waited + 1))
  done
  for pid in $pids; do kill -KILL "$pid" 2>/dev/null; done
  sleep 0.2 2>/dev/null || sleep 1
  for pid in $(inside_pids); do echo "left=$pid"; done
}

# A detached HEAD's commits that no branch, tag or remote holds are kept on a branch before the
# worktree (and with it that HEAD) goes. Prints `kept=BRANCH`.
keep_detached() {
  git -C "$wt" symbolic-ref -q HEAD >/dev/null 2>&1 && return 0
  h=$(git -C "$wt" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || return 0
  [ -n "$(git rev-list -n 1 "$h" --not --branches --tags --remotes)" ] || return 0
  name=recalled/${wt##*/}-$(printf '%s' "$h" | cut -c1-12)
  git update-ref -m "miyabi-ctl recall: the worktree's detached HEAD" "refs/heads/$name" "$h" "" ||
    die 5 "cannot keep the detached HEAD $h on $name"
  echo "kept=$name"
}

grace=${6:-10}
case $mode in
  inspect) inspect ;;
  stop) [ -d "$wt" ] && stop_inside; echo "done=1" ;;
  remove)
    if [ -e "$wt" ]; then
      # Checked again here, right before the removal, with the session already stopped.
      found=$(inspect)
      printf '%s\n' "$found"
      with_work=$(printf '%s\n' "$found" | awk '/^nested=/ { split(substr($0, 8), f, " ")
        if (f[1] == "?" || f[2] == "?" || f[1] + 0 > 0 || f[2] + 0 > 0) n++ } END { print n + 0 }')
      if [ "$discard_nested" != 1 ] && [ "$with_work" -gt 0 ]; then
        die 6 "nested repositories hold work that is not in the backup"
      fi
      if [ "$discard_ignored" != 1 ] && printf '%s\n' "$found" | grep -q '^ignored='; then
        die 6 "ignored files are not in the backup"
      fi
      # Nobody may work in it while it goes: anything still inside is named and nothing removed.
      busy=$(inside_pids)
      case $busy in error=*) echo "$busy"; exit 7 ;; esac
      if [ -n "$busy" ]; then
        for pid in $busy; do echo "busy=$pid"; done
        die 7 "processes still work in $wt: $(echo $busy)"
      fi
      keep_detached
      git worktree remove --force "$wt" || die 5 "git worktree remove $wt failed"
    else
      # Gone already: drop its own admin data (never `git worktree prune`, which would drop a
      # moved worktree's too).
      common=$(cd "$(git rev-parse --git-common-dir)" && pwd)
      for admin in "$common"/worktrees/*; do
        [ -f "$admin/gitdir" ] && [ "$(cat "$admin/gitdir")" = "$wt/.git" ] && rm -rf "$admin"
      done
    fi
    echo "removed=yes" ;;
  *) die 2 "unknown mode $mode" ;;
esac
