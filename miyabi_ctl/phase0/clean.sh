# miyabi-ctl: the clean after a verified backup (backup.sh's `commit` mode with CLEAN=1), and the
# narrow switch of paths it and restore share. POSIX sh; functions only.
#
#   clean_tree [PID CWD]...     reset the work tree to HEAD, touching only what the snapshot
#                               $tree changed; not while one of those agent sessions works here
#   switch_paths FROM TO        FROM, TO: index-info lists (`ls-files -s -z` or `ls-tree -z`)
#                               of the same paths; builds $tmp/cindex (FROM's entries with stat
#                               data read now) and the trees $from_tree and $to_tree, for a
#                               `read-tree -m -u` that writes only those paths

# Milliseconds since the epoch where date has %N (GNU, busybox), else whole seconds.
now_ms() {
  t=$(date +%s%N 2>/dev/null)
  case $t in *N|'') echo $(( $(date +%s) * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac
}

# The working directory of a process now (Linux /proc, else lsof), or nothing.
cwd_of() {
  readlink "/proc/$1/cwd" 2>/dev/null ||
    { command -v lsof >/dev/null 2>&1 && lsof -a -p "$1" -d cwd -Fn 2>/dev/null | sed -n 's/^n//p'; }
}

# The first of the agent sessions (PID CWD pairs, CWD as the probe saw it) still alive and
# working inside this repository: prints `PID DIR`.
session_here() {
  while [ $# -ge 2 ]; do
    spid=$1 scwd=$2
    shift 2
    kill -0 "$spid" 2>/dev/null || continue
    now=$(cwd_of "$spid")
    [ -n "$now" ] || now=$scwd
    case $now/ in "$top"/*) echo "$spid $now"; return 0 ;; esac
  done
  return 1
}

no_gitlinks() {
  xargs -0 sh -c 'for e do case $e in 160000\ *) ;; *) printf "%s\0" "$e" ;; esac; done' sh
}

# FROM's and TO's entries as trees, and $tmp/cindex: FROM's entries with stat data for the files
# that still hold FROM's bytes (read raw, as a snapshot is); a file that changed keeps none, and
# read-tree then refuses to touch it. Embedded repositories (gitlinks) take no part.
switch_paths() {
  no_gitlinks <"$1" >"$tmp/sw-from" || return 1
  no_gitlinks <"$2" >"$tmp/sw-to" || return 1
  rm -f "$tmp/cindex" "$tmp/hindex"
  GIT_INDEX_FILE=$tmp/cindex G update-index -z --index-info <"$tmp/sw-from" || return 1
  GIT_INDEX_FILE=$tmp/hindex G update-index -z --index-info <"$tmp/sw-to" || return 1
  from_tree=$(GIT_INDEX_FILE=$tmp/cindex W write_tree G) || return 1
  to_tree=$(GIT_INDEX_FILE=$tmp/hindex W write_tree G) || return 1
  GIT_INDEX_FILE=$tmp/cindex R update-index -q --refresh >/dev/null 2>&1
  return 0
}

# The paths HEAD and the snapshot $tree disagree on, NUL-separated into $tmp/changed; their
# snapshot entries into $tmp/from and HEAD's into $tmp/to.
narrow_clean() {
  git diff-tree -r -z --no-renames --name-only HEAD "$tree" >"$tmp/changed" || return 1
  : >"$tmp/from"; : >"$tmp/to"
  if [ -s "$tmp/changed" ]; then
    GIT_LITERAL_PATHSPECS=1 GIT_INDEX_FILE=$tmp/index xargs -0 git ls-files -s -z -- \
      <"$tmp/changed" >"$tmp/from" || return 1
    GIT_LITERAL_PATHSPECS=1 xargs -0 git ls-tree -r -z HEAD -- <"$tmp/changed" >"$tmp/to" || return 1
  fi
  switch_paths "$tmp/from" "$tmp/to"
}

clean_tree() {
  # Never under a running agent: it would go on writing into a tree that was just reset.
  if here=$(session_here "$@"); then
    refuse "an agent session (pid ${here%% *}) works in ${here#* }: not cleaning (end it first, e.g. with phase0 prune)"
  fi
  # Clean only what is saved: the files must still be exactly the snapshot.
  [ "$(git rev-parse -q --verify HEAD)" = "$head" ] || refuse "HEAD moved since the snapshot: not cleaning"
  [ -e "$(git rev-parse --git-path index.lock)" ] &&
    refuse "$(git rev-parse --git-path index.lock) exists: another git is running here, or one crashed (remove the file if no git is running): not cleaning"
  # What HEAD's files would be written over that no backup holds (an ignored file in the way).
  way=$(in_the_way "$tree" "$head")
  [ -z "$way" ] ||
    refuse "cleaning would write HEAD's files over what no backup holds (ignored or in the way): $(printf '%s\n' "$way" | head -n 10 | tr '\n' ' ')- move them away first: not cleaning"
  now=$(snapshot_tree) || fail "cannot re-check the working tree before cleaning"
  [ "$now" = "$tree" ] || refuse "the working tree changed since the snapshot (is an agent working here?): not cleaning"
  [ "$(index_tree)" = "${itree:-$(git rev-parse 'HEAD^{tree}')}" ] ||
    refuse "the index changed since the snapshot: not cleaning"
  # Once more, as close to the reset as it can be: the full check above can take seconds on a
  # big tree; this pass reads only files that changed since, so the window left is short.
  if here=$(session_here "$@"); then
    refuse "an agent session (pid ${here%% *}) works in ${here#* }: not cleaning"
  fi
  [ "$(git rev-parse -q --verify HEAD)" = "$head" ] && [ "$(recheck_tree)" = "$tree" ] &&
    [ "$(index_tree)" = "${itree:-$(git rev-parse 'HEAD^{tree}')}" ] ||
    refuse "the working tree changed while it was being checked (is someone working here?): not cleaning"
  # The clean itself: from the snapshot's tree back to HEAD, touching only the paths the
  # snapshot changed (`read-tree -m -u` in an index of the snapshot's entries for those paths,
  # whose stat data is fresh: a file changed since it was checked stops it before it writes
  # anything). Files the snapshot does not hold (ignored, or new since) are never removed:
  # untracked dirs emptied of the snapshot's files go, the rest stays and is counted in `left`.
  # Only the changed paths take part (two small trees, a small index), so the time between
  # git's check of a file and its write does not grow with the size of the tree.
  narrow_clean || fail "cannot prepare the clean"
  # The journal, in the repository's git directory, says the clean started before it does: a
  # controller that dies now (Ctrl-C, a crash) still finds it on its next run, for the audit log.
  jid=$sha.$(date +%s)
  # From the journal's line on, a controller that goes away (a closed stdout) must not stop the
  # script half-way; before it, a closed stdout ends it with nothing written.
  trap '' PIPE
  printf 'start %s %s %s %s\n' "$jid" "$(date +%s)" "$branch" "$head" >>"$journal" ||
    refuse "cannot write the journal $journal: not cleaning"
  say journal_id "$jid"
  t0=$(now_ms)
  GIT_INDEX_FILE=$tmp/cindex G read-tree -m -u "$from_tree" "$to_tree" >"$tmp/err" 2>&1 </dev/null ||
    { printf 'nothing %s\n' "$jid" >>"$journal"
      refuse "the working tree changed while it was being cleaned; nothing was written: $(grep -v '^ *$' "$tmp/err" | head -n 3 | tr '\n\t' '  ')"; }
  t1=$(now_ms)
  printf 'done %s %s\n' "$jid" "$(date +%s)" >>"$journal"
  say window_ms "$((t1 - t0))"
  G reset -q "$head" 2>"$tmp/err" >/dev/null ||
    fail "the files were cleaned but the index could not be reset: $(tail -n 1 "$tmp/err")"
  fresh_stat "$tmp/sw-to"
  say cleaned 1
  left=$(git status --porcelain -z | tr -cd '\0' | wc -c | tr -d ' ')
  say left "$left"
}

# The real index's entries for paths just written (an index-info list) get stat data read now:
# `reset` keeps an entry's old stat data when its id does not change, and where the size differs
# (a file written with CRLF under core.autocrlf) git calls the file modified without reading it.
# Entries re-added have none, so a refresh reads them (with the repository's conversions); the
# flags they had (skip-worktree, assume-unchanged) are put back after.
fresh_stat() {
  [ -s "$1" ] || return 0
  read_flags
  G update-index -z --index-info <"$1" 2>/dev/null
  G update-index -q --refresh >/dev/null 2>&1
  put_flags
}

# The flags read_flags found, set again on the real index (each flag on its own: one
# update-index given two sets only the first).
put_flags() {
  for f in "$tmp/flag-skip" "$tmp/flag-sparse"; do
    [ -s "$f" ] && G update-index -q --skip-worktree -z --stdin <"$f" >/dev/null 2>&1
  done
  [ -s "$tmp/flag-assume" ] && G update-index -q --assume-unchanged -z --stdin <"$tmp/flag-assume" >/dev/null 2>&1
  return 0
}
