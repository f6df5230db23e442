# miyabi-ctl restore, sent on stdin (miyabi_ctl/remote/runner.py) after snapshot.sh and clean.sh,
# with the arguments `PATH LABEL REMOTE WORKTREE REF`. POSIX sh. Prints key=value lines that
# miyabi_ctl/phase0/restore.py parses.
#
# Puts a backup (backup.sh's commit: the working tree's bytes, HEAD as first parent, the staged
# versions as second, the index's flags as third) back into the work tree at PATH, or its linked
# worktree WORKTREE. It writes only the paths the backup changed, and only where the disk holds
# nothing or what a checkout of HEAD writes there (a clean's result), or the backup's bytes
# already; anything else there is named and nothing is written. Files it does not change —
# untracked, ignored, embedded repositories a clean left — are not its business.
LC_ALL=C
export LC_ALL
path=$1 label=$2 remote=$3 worktree=$4 ref=$5
sweep_tmp
tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-restore.$$.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
open_tree "$path" "$worktree"
[ -n "$remote" ] || [ "$(git remote | wc -l | tr -d ' ')" != 1 ] || remote=$(git remote)
open_snapshot

# NUL-separated paths in FILE, as pathspecs to CMD (nothing when FILE is empty: a command given
# no pathspec would take the whole tree).
for_paths() {
  file=$1
  shift
  [ -s "$file" ] || return 0
  GIT_LITERAL_PATHSPECS=1 xargs -0 "$@" -- <"$file"
}

# Of the backup's paths still to write, those where the disk holds something else: neither
# nothing, nor HEAD's file as a checkout writes it (HEAD's blob through the repository's eol
# rules and filters). NUL-separated into $tmp/taken.
taken() {
  : >"$tmp/taken"
  # Where the tree now differs from HEAD: a file changed, added (untracked), or removed.
  for_paths "$tmp/todo" git diff-tree -r -z --name-only HEAD "$now" >"$tmp/suspect"
  GIT_INDEX_FILE=$tmp/index for_paths "$tmp/suspect" git ls-files -s -z | xargs -0 sh -c '
    for e do
      p=${e#*"	"} sha=${e#* }
      sha=${sha%% *}
      git cat-file -e "HEAD:$p" 2>/dev/null &&
        [ "$(git cat-file --filters "HEAD:$p" | git hash-object --no-filters -t blob --stdin)" = "$sha" ] &&
        continue
      printf "%s\0" "$p"
    done' sh >>"$tmp/taken"
  # Ignored files there (the tree now has no place for them).
  GIT_INDEX_FILE=$tmp/index for_paths "$tmp/todo" git ls-files -z -o -i --exclude-standard \
    >>"$tmp/taken"
}

restore() {
  if ! sha=$(git rev-parse -q --verify "$ref^{commit}" 2>/dev/null); then
    [ -n "$remote" ] || refuse "no such commit or branch: $ref"
    GIT_TERMINAL_PROMPT=0 git fetch -q -- "$remote" "+refs/heads/$ref:refs/remotes/$remote/$ref" \
      2>"$tmp/err" </dev/null || refuse "no such commit or branch: $ref (not on $remote either)"
    sha=$(git rev-parse -q --verify "refs/remotes/$remote/$ref^{commit}") ||
      refuse "no such commit or branch: $ref"
  fi
  say commit "$sha"
  # Every object this makes (the tree now, the trees of the switch) is its own, in $tmp: a
  # refused restore leaves the repository as it was, loose objects' times too.
  objects_only_in_tmp
  parent=$(git rev-parse -q --verify "$sha^1") || refuse "$ref has no parent: not a backup commit"
  head=$(git rev-parse -q --verify HEAD) || refuse "the repository has no commits yet"
  [ "$parent" = "$head" ] ||
    refuse "HEAD is $head but the backup was taken on $parent: check that out first (git switch --detach $parent, or the branch that points there)"
  for state in MERGE_HEAD CHERRY_PICK_HEAD REVERT_HEAD rebase-merge rebase-apply; do
    [ -e "$gitdir/$state" ] && refuse "a merge, rebase or cherry-pick is in progress ($state): finish or abort it first"
  done
  [ -z "$(git ls-files -u | head -c 1)" ] || refuse "the index has unmerged (conflicted) entries: resolve them first"
  istaged=$(git rev-parse -q --verify "$sha^2^{tree}" 2>/dev/null) || istaged=
  ftree=$(git rev-parse -q --verify "$sha^3^{tree}" 2>/dev/null) || ftree=
  htree=$(git rev-parse "HEAD^{tree}")
  # The index: restore sets only the entries the backup staged, so the rest must be HEAD's.
  inow=$(index_tree) || fail "cannot read the index"
  [ "$inow" = "$htree" ] || [ "$inow" = "$istaged" ] ||
    refuse "the index holds staged changes the backup does not: commit, stash or unstage them first"
  now=$(snapshot_tree 2>>"$tmp/add.err") ||
    fail "cannot read the working tree: $(no_space)$(tail -n 1 "$tmp/add.err")"

  # The paths the backup changes, embedded repositories aside (a backup holds only their commit
  # id: they are where a clean left them, or named when they are not).
  git diff-tree -r -z --no-renames HEAD "$sha" | xargs -0 sh -c '
    while [ $# -ge 2 ]; do
      case $1 in *160000*) [ -e "$2" ] || printf "embedded=%s\n" "$(printf "%s" "$2" | tr "\n" "?")" >&2
                           shift 2; continue ;; esac
      printf "%s\0" "$2"
      shift 2
    done' sh >"$tmp/paths" 2>"$tmp/embedded"
  cat "$tmp/embedded"
  say files "$(tr -cd '\0' <"$tmp/paths" | wc -c | tr -d ' ')"
  # Those whose bytes on disk are not the backup's yet.
  for_paths "$tmp/paths" git diff-tree -r -z --name-only "$now" "$sha" >"$tmp/todo"
  taken
  if [ -s "$tmp/taken" ]; then
    refuse "the disk holds other work where the backup's files go (not a checkout of HEAD, nor the backup): $(tr '\n\0' '?\n' <"$tmp/taken" | head -n 10 | tr '\n' ' ')- back it up or move it away first"
  fi
  # Files: from what is there now to the backup's bytes, written raw (the backup holds the
  # working tree's bytes, as they were), checked by read-tree against the disk as it writes.
  if [ -s "$tmp/todo" ]; then
    GIT_INDEX_FILE=$tmp/index for_paths "$tmp/todo" git ls-files -s -z >"$tmp/from" || fail "cannot list the files"
    for_paths "$tmp/todo" git ls-tree -r -z "$sha" >"$tmp/to" || fail "cannot read $ref"
    switch_paths "$tmp/from" "$tmp/to" || fail "cannot prepare the restore"
    GIT_INDEX_FILE=$tmp/cindex R read-tree -m -u "$from_tree" "$to_tree" >"$tmp/err" 2>&1 </dev/null ||
      refuse "the working tree changed while it was being restored; nothing was written: $(grep -v '^ *$' "$tmp/err" | head -n 3 | tr '\n\t' '  ')"
  fi
  say written "$(tr -cd '\0' <"$tmp/todo" | wc -c | tr -d ' ')"
  # Modes git does not keep, from the message's `Mode: 0600 PATH` lines: only permission bits,
  # only for regular files of the backup, never outside the tree.
  git log -1 --format=%B "$sha" | sed -n 's/^Mode: //p' | while IFS= read -r line; do
    m=${line%% *} f=${line#* }
    case $m in 0[0-7][0-7][0-7]) ;; *) continue ;; esac
    case /$f/ in */../*|//*) continue ;; esac
    [ "$(git cat-file -t "$sha:$f" 2>/dev/null)" = blob ] && [ -f "$f" ] && [ ! -L "$f" ] &&
      chmod "$m" -- "$f" && say mode "$m $f"
  done
  # The index: the entries the backup staged (its second parent), the others stay HEAD's.
  if [ -n "$istaged" ] && [ "$istaged" != "$htree" ]; then
    git diff-tree -r -z --no-renames --name-only HEAD "$istaged" >"$tmp/staged"
    for_paths "$tmp/staged" git ls-tree -r -z "$istaged" >"$tmp/staged-entries"
    G update-index -z --index-info <"$tmp/staged-entries" 2>"$tmp/err" ||
      fail "the files are restored, but not the index: $(tail -n 1 "$tmp/err")"
    # What the backup's index did not hold (a staged deletion) leaves the index.
    git diff-tree -r -z --no-renames --name-only --diff-filter=D HEAD "$istaged" >"$tmp/unstaged"
    [ -s "$tmp/unstaged" ] && G update-index -z --force-remove --stdin <"$tmp/unstaged"
    say index restored
  else
    say index unchanged
  fi
  G update-index -q --refresh >/dev/null 2>&1
  # The index's flags (third parent): skip-worktree, sparse, assume-unchanged, intent-to-add.
  if [ -n "$ftree" ]; then
    for kind in skip:skip-worktree sparse:sparse assume:assume-unchanged ita:intent-to-add; do
      git ls-tree -r -z --name-only "$ftree:${kind#*:}" >"$tmp/flag-${kind%%:*}" 2>/dev/null ||
        rm -f "$tmp/flag-${kind%%:*}"
    done
    if [ -s "$tmp/flag-ita" ]; then
      # Into the repository's own objects (the empty blob an intent-to-add entry names).
      (unset GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
       GIT_LITERAL_PATHSPECS=1 G add -f -N --pathspec-from-file="$tmp/flag-ita" \
         --pathspec-file-nul >/dev/null 2>&1)
    fi
    put_flags
    say flags restored
  fi
  say restored 1
}

restore
