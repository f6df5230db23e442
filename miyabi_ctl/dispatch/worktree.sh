# miyabi-ctl worktree (miyabi_ctl/dispatch/worktree.py): REPO WORKTREE MODE DISCARD_IGNORED
# DISCARD_NESTED DISCARD_UNKEPT GRACE REMOTE, MODE inspect|stop|remove.
use_login_path
expand_home "$1"; repo=$expanded
expand_home "$2"; wt=$expanded
mode=$3 discard_ignored=$4 discard_nested=$5 discard_unkept=$6 grace=${7:-10} remote=$8
no_prompts
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
# What `git worktree remove --force` would destroy although no backup holds it: repositories
# nested in the worktree (a backup records only their commit id), with their changes, ignored
# files and commits found on none of their remotes; the worktree's own ignored files; what git
# cannot keep at all, outside those (FIFOs, sockets, device files, empty directories); and a
# detached HEAD whose commits no branch, tag or remote holds. Prints `nested=CHANGES COMMITS
# PATH`, `ignored=PATH`, `unkept=KIND PATH`, `detached=COMMIT` with `keep_as=BRANCH` (a newline
# in a name shows as ?).
inspect() {
  [ -d "$wt" ] || { echo "absent=1"; return 0; }
  : >"$tmp_nested"
  find "$wt" -mindepth 2 -name .git -prune -print 2>/dev/null | while IFS= read -r g; do
    d=${g%/.git}
    printf '%s\n' "${d#"$wt"/}" >>"$tmp_nested"
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
  unkept
  detached_head || true
}

# FIFOs, sockets, device files and empty directories: git has no place for them, so no backup
# holds them. Those in ignored paths (--discard-ignored) and in nested repositories
# (--discard-nested) are left to those. check-ignore -v also reports a `!` pattern that
# re-includes a path: that path is not ignored.
# A git that cannot say what is ignored (exit > 1) leaves every one of them named: fails closed.
unkept() {
  tab=$(printf '\t')
  (cd "$wt" && find . -name .git -prune -o \( -type p -o -type s -o -type b -o -type c -o \
    \( -type d -empty \) \) -print0 2>/dev/null) >"$tmp_status"
  [ -s "$tmp_status" ] || return 0
  git -C "$wt" check-ignore --stdin -z -n -v <"$tmp_status" >"$tmp_status.v" 2>/dev/null
  if [ $? -gt 1 ]; then
    tr '\n\0' '?\n' <"$tmp_status" | sed "s/^/$tab$tab$tab/"
  else
    tr '\n\0' '?\n' <"$tmp_status.v" | paste - - - -
  fi | awk -F '\t' -v nested="$tmp_nested" '
      BEGIN { while ((getline d < nested) > 0) skip[d] = 1 }
      $1 != "" && substr($3, 1, 1) != "!" { next }
      { p = substr($4, 3); q = p
        while (q != "") { if (q in skip) next; if (!sub(/\/[^\/]*$/, "", q)) q = "" }
        print p }' | LC_ALL=C sort |
    while IFS= read -r f; do
      if [ -p "$wt/$f" ]; then kind=fifo
      elif [ -S "$wt/$f" ]; then kind=socket
      elif [ -b "$wt/$f" ] || [ -c "$wt/$f" ]; then kind=device
      elif [ -d "$wt/$f" ]; then kind=empty-dir
      else kind=special; fi
      echo "unkept=$kind $f"
    done
}

# A detached HEAD whose commits no branch, tag or remote holds, or only the recalled/ branch an
# earlier recall made for it: prints `detached=COMMIT` and `keep_as=BRANCH`, the branch a removal
# keeps it on, and sets $h and $name (else returns 1).
detached_head() {
  git -C "$wt" symbolic-ref -q HEAD >/dev/null 2>&1 && return 1
  h=$(git -C "$wt" rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || return 1
  name=recalled/${wt##*/}-$(printf '%s' "$h" | cut -c1-12)
  if [ "$(git rev-parse -q --verify "refs/heads/$name" 2>/dev/null)" != "$h" ] &&
     [ -z "$(git rev-list -n 1 "$h" --not --branches --tags --remotes)" ]; then
    return 1
  fi
  echo "detached=$h"
  echo "keep_as=$name"
}
tmp_status=$(mktemp "${TMPDIR:-/tmp}/miyabi-wt.XXXXXX") || die 3 "mktemp failed"
tmp_nested=$(mktemp "${TMPDIR:-/tmp}/miyabi-wt.XXXXXX") || { rm -f "$tmp_status"; die 3 "mktemp failed"; }
trap 'rm -f "$tmp_status" "$tmp_status.v" "$tmp_nested"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
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
# worktree (and with it that HEAD) goes, pushed to the remote as backups are and read back from
# it, so a host that dies later loses nothing. Prints `kept=BRANCH`; any failure stops the
# removal (exit 8).
keep_detached() {
  detached_head >/dev/null || return 0
  ref=refs/heads/$name
  if [ "$(git rev-parse -q --verify "$ref" 2>/dev/null)" != "$h" ]; then
    git update-ref -m "miyabi-ctl recall: the worktree's detached HEAD" "$ref" "$h" "" ||
      die 8 "cannot keep the detached HEAD $h on $name"
  fi
  echo "kept=$name"
  [ -n "$remote" ] || die 8 "no remote to push $name to"
  if ! err=$(git push -q --no-verify -- "$remote" "$ref:$ref" 2>&1 </dev/null); then
    # The remote's own words first (a hook's message), then git's line about the ref.
    said=$(printf '%s\n' "$err" | sed -n 's/^remote: *//p' | grep -v '^ *$' | head -n 3 |
      tr '\n' ' ')
    why=$(printf '%s\n' "$err" | grep -v -e '^ *$' -e '^remote:' -e '^error: failed to push' |
      tail -n 1)
    die 8 "push of $name to $remote failed: ${said}${why}"
  fi
  rsha=$(git ls-remote -- "$remote" "$ref" 2>/dev/null </dev/null | cut -f1)
  [ "$rsha" = "$h" ] ||
    die 8 "$remote does not hold $name at $h after the push (${rsha:-no such branch})"
  echo "kept_remote=$remote"
}

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
      if [ "$discard_unkept" != 1 ] && printf '%s\n' "$found" | grep -q '^unkept='; then
        die 6 "FIFOs, sockets or empty directories are in no backup"
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
