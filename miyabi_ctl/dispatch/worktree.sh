# miyabi-ctl worktree (miyabi_ctl/dispatch/worktree.py): REPO WORKTREE MODE DISCARD_IGNORED DISCARD_NESTED,
# MODE inspect|remove.
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
        die 6 "nested repositories hold work that is not in the backup"
      fi
      if [ "$discard_ignored" != 1 ] && printf '%s\n' "$found" | grep -q '^ignored='; then
        die 6 "ignored files are not in the backup"
      fi
      git worktree remove --force "$wt" || die 5 "git worktree remove $wt failed"
    fi
    git worktree prune
    echo "removed=yes" ;;
  *) die 2 "unknown mode $mode" ;;
esac
