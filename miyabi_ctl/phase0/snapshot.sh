# miyabi-ctl: a work tree as a tree object, its bytes exactly (miyabi_ctl/phase0/backup.py sends
# this in front of backup.sh and restore.sh). POSIX sh; functions only.
#
#   open_tree PATH [WORKTREE]   enter PATH's work tree, or its repository's linked worktree
#                               WORKTREE (a name under .git/worktrees); sets top gitdir common
#                               index objects journal; `norepo=`/`missing=` and exit when none
#   open_snapshot               the stand-in git directory under $tmp ($raw), R, $convert
#   snapshot_tree               the working tree as a tree id (a copy of the index, never the real one)
#   recheck_tree                the same again, quickly, in the copy snapshot_tree left
#   index_tree                  the real index as a tree id
#   flags_tree                  the real index's flags (skip-worktree, assume-unchanged,
#                               intent-to-add) as a tree id, or nothing
# A plan (objects_only_in_tmp) writes objects into $tmp only, and never freshens the
# repository's: git touches an object it would write that exists already, in an alternate too.

say() { printf '%s=%s\n' "$1" "$2"; }
refuse() { say refuse "$1"; exit 0; }
fail() { say error "$1"; exit 1; }
# Configuration that would make a copied index write into .git or trust another index's cache.
G() { git -c core.fsmonitor=false -c core.splitIndex=false -c core.untrackedCache=false "$@"; }

open_tree() {
  expand_home "$1"; path=$expanded
  [ -d "$path" ] || { say norepo "no such directory: $path"; exit 0; }
  cd "$path" 2>/dev/null || { say norepo "cannot enter $path"; exit 0; }
  command -v git >/dev/null 2>&1 || refuse "git is not installed"
  top=$(git rev-parse --show-toplevel 2>/dev/null) || { say norepo "not a git repository: $path"; exit 0; }
  common=$(cd "$(git rev-parse --git-common-dir)" && pwd) || fail "no git directory"
  if [ -n "${2-}" ]; then
    # A linked worktree, by its name: its admin directory says where it is.
    admin=$common/worktrees/$2
    [ -f "$admin/gitdir" ] || { say norepo "the repository has no worktree named $2"; exit 0; }
    wt=$(cat "$admin/gitdir")
    case $wt in /*) ;; *) wt=$admin/$wt ;; esac
    wt=${wt%/.git}
    { [ -d "$wt" ] && cd "$wt" 2>/dev/null; } || { say missing "$wt"; exit 0; }
    top=$(git rev-parse --show-toplevel 2>/dev/null) || { say missing "$wt"; exit 0; }
    [ "$(cd "$(git rev-parse --git-dir)" && pwd)" = "$(cd "$admin" && pwd)" ] ||
      { say missing "$wt"; exit 0; }
  fi
  cd "$top" || fail "cannot enter $top"
  say top "$top"
  gitdir=$(git rev-parse --absolute-git-dir) || fail "no git directory"
  journal=$gitdir/miyabi-ctl.journal
  index=$(git rev-parse --git-path index)
  case $index in /*) ;; *) index=$top/$index ;; esac
  objects=$(cd "$(git rev-parse --git-path objects)" && pwd) || fail "no object directory"
}

# A plan's objects go to $tmp/objects, with the repository's as an alternate to read from.
objects_only_in_tmp() {
  mkdir "$tmp/objects" || fail "mktemp failed"
  GIT_OBJECT_DIRECTORY=$tmp/objects GIT_ALTERNATE_OBJECT_DIRECTORIES=$objects
  export GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
  plan_objects=1
}
plan_objects=
# Run a command that writes objects: in a plan, without the alternate, so git cannot find (and
# touch) the repository's copy of an object and writes its own into $tmp.
W() {
  if [ -n "$plan_objects" ]; then
    (GIT_ALTERNATE_OBJECT_DIRECTORIES=; export GIT_ALTERNATE_OBJECT_DIRECTORIES; "$@")
  else "$@"; fi
}
# write-tree for W: a plan's tree may name objects only the repository holds.
write_tree() { if [ -n "$plan_objects" ]; then "$@" write-tree --missing-ok; else "$@" write-tree; fi; }

# The snapshot is the working tree's bytes: `add` runs under a stand-in git directory whose
# info/attributes (the highest-precedence attributes file) turns off every conversion (eol,
# autocrlf, clean filters such as LFS, ident, encodings); objects, ignore rules and the
# repository's config are the real ones. Writes nothing in the repository but objects.
open_snapshot() {
  raw=$tmp/raw
  mkdir -p "$raw/info" "$raw/refs" "$raw/objects" || fail "mktemp failed"
  git rev-parse -q --verify HEAD >"$raw/HEAD" 2>/dev/null || echo 0000000000000000000000000000000000000000 >"$raw/HEAD"
  cp "$common/config" "$raw/config" 2>/dev/null
  [ -f "$common/info/exclude" ] && cp "$common/info/exclude" "$raw/info/exclude"
  printf '* -text -filter -ident -crlf -working-tree-encoding !eol\n' >"$raw/info/attributes"
  # Could a file's index blob differ from its bytes (an eol rule, autocrlf, a filter)? Then the
  # index's stat cache cannot be trusted for the snapshot, and every file is read again.
  convert=0
  case $(git config --get core.autocrlf) in true|input) convert=1 ;; esac
  for f in "$common/info/attributes" "$(git config --get core.attributesFile)" \
           "${XDG_CONFIG_HOME:-$HOME/.config}/git/attributes" /etc/gitattributes; do
    [ -n "$f" ] && [ -s "$f" ] && convert=1
  done
  [ "$convert" = 0 ] && [ -n "$(git --no-optional-locks ls-files -z -c -o -- ':(glob)**/.gitattributes' | head -c 1)" ] && convert=1
  return 0
}
R() {
  GIT_DIR=$raw GIT_WORK_TREE=$top GIT_OBJECT_DIRECTORY=${GIT_OBJECT_DIRECTORY:-$objects} \
    git -c core.autocrlf=false -c core.safecrlf=false -c core.sparseCheckout=false \
    -c core.fsmonitor=false -c core.splitIndex=false -c core.untrackedCache=false "$@"
}

# The real index's flagged entries, NUL-separated into $tmp/flag-*: skip-worktree on a file that
# is on disk (skip), one that is not (sparse: a sparse checkout), assume-unchanged (assume),
# intent-to-add (ita). `ls-files -v` tags them S, s (both), and lower case (assume-unchanged).
read_flags() {
  rm -f "$tmp/flag-skip" "$tmp/flag-sparse" "$tmp/flag-assume" "$tmp/flag-ita"
  if git --no-optional-locks ls-files -v | grep -q '^[a-zS]'; then
    git --no-optional-locks ls-files -v -z | xargs -0 sh -c '
      for e do
        p=${e#??}
        case $e in
          [Ss]\ *) if [ -e "$p" ] || [ -L "$p" ]; then printf "%s\0" "$p" >>"$0/flag-skip"
                   else printf "%s\0" "$p" >>"$0/flag-sparse"; fi ;;
        esac
        case $e in [a-z]\ *) printf "%s\0" "$p" >>"$0/flag-assume" ;; esac
      done' "$tmp"
  fi
  # Intent-to-add entries hold the empty blob, and diff-files calls them added.
  e=$(git hash-object -t blob --stdin </dev/null)
  if git --no-optional-locks ls-files -s | grep -q " $e 0	"; then
    git --no-optional-locks diff-files -z --name-only --diff-filter=A >"$tmp/flag-ita" 2>/dev/null
    [ -s "$tmp/flag-ita" ] || rm -f "$tmp/flag-ita"
  fi
  return 0
}

# The working tree as a tree object, built in a copy of the index (cp -p keeps its mtime, so
# git's racy-clean protection works as it does on the real one). Prints the tree id.
snapshot_tree() {
  if [ -f "$index" ] && [ "$convert" = 0 ]; then cp -p "$index" "$tmp/index" || return 1
  else GIT_INDEX_FILE=$tmp/index R read-tree "$(index_tree)" || return 1; fi
  # assume-unchanged and skip-worktree would make `add` skip an edited file: in the copy only,
  # clear them where the file is on disk — each flag on its own, since one update-index given
  # both clears only the first (git 2.39); a skip-worktree file absent from disk (a sparse
  # checkout) keeps its bit, so it is not recorded as deleted.
  read_flags
  if [ -f "$tmp/flag-assume" ]; then
    GIT_INDEX_FILE=$tmp/index G update-index --no-assume-unchanged -z --stdin <"$tmp/flag-assume" || return 1
  fi
  if [ -f "$tmp/flag-skip" ]; then
    GIT_INDEX_FILE=$tmp/index G update-index --no-skip-worktree -z --stdin <"$tmp/flag-skip" || return 1
  fi
  if [ -f "$tmp/flag-sparse" ]; then
    GIT_INDEX_FILE=$tmp/index G update-index --skip-worktree -z --stdin <"$tmp/flag-sparse" || return 1
  fi
  GIT_INDEX_FILE=$tmp/index W R add -A -- :/ >"$tmp/add.err" 2>&1 </dev/null || { cat "$tmp/add.err" >&2; return 1; }
  exclude_paths || return 1
  GIT_INDEX_FILE=$tmp/index W write_tree R
}

# The --exclude patterns: their entries in the snapshot's index go back to HEAD's (an untracked
# file leaves it, a tracked one keeps HEAD's version), so the backup never publishes them.
excludes=
exclude_paths() {
  [ -n "$excludes" ] || return 0
  if [ ! -f "$tmp/excludes" ]; then
    printf '%s\n' "$excludes" | while IFS= read -r pat; do
      [ -n "$pat" ] && printf ':(glob)%s\0' "$pat"
    done >"$tmp/excludes"
  fi
  GIT_INDEX_FILE=$tmp/index R reset -q "$(cat "$raw/HEAD")" --pathspec-from-file="$tmp/excludes" \
    --pathspec-file-nul >/dev/null 2>>"$tmp/add.err" || true
}

# The working tree again, in the index copy snapshot_tree left: files it already hashed and that
# did not change since are not read again, so this is quick.
recheck_tree() {
  GIT_INDEX_FILE=$tmp/index W R add -A -- :/ >"$tmp/add.err" 2>&1 </dev/null || return 1
  exclude_paths || return 1
  GIT_INDEX_FILE=$tmp/index W write_tree R
}

# The real index as a tree (staged versions that differ from the files keep their bytes).
index_tree() {
  [ -f "$index" ] || { git rev-parse 'HEAD^{tree}'; return; }
  cp -p "$index" "$tmp/real-index" && GIT_INDEX_FILE=$tmp/real-index W write_tree G
}

# The flags read_flags found, as a tree: skip-worktree/PATH, sparse/PATH, assume-unchanged/PATH,
# intent-to-add/PATH, each an empty file. Prints nothing when no entry is flagged. Restore reads
# it back (the backup commit's third parent, as `git stash -u` keeps untracked files there).
flags_tree() {
  set -- skip:skip-worktree sparse:sparse assume:assume-unchanged ita:intent-to-add
  any=
  for kind do [ -s "$tmp/flag-${kind%%:*}" ] && any=1; done
  [ -n "$any" ] || return 0
  empty=$(W G hash-object -w -t blob --stdin </dev/null) || return 1
  rm -f "$tmp/flags-index"
  for kind do
    [ -s "$tmp/flag-${kind%%:*}" ] || continue
    xargs -0 sh -c 'for p do printf "100644 %s\t%s/%s\0" "${0%% *}" "${0#* }" "$p"; done' \
      "$empty ${kind#*:}" <"$tmp/flag-${kind%%:*}"
  done | GIT_INDEX_FILE=$tmp/flags-index G update-index -z --add --index-info || return 1
  GIT_INDEX_FILE=$tmp/flags-index W write_tree G
}

# Words for a failure a full disk may explain: the objects' or the temporary directory's.
no_space() { no_space_on "$objects" "$tmp"; }

# The permission bits of a file, in octal (git keeps only 0644 and 0755).
perm_of() {
  ls -ld "$1" | awk '{ m = 0; s = substr($1, 2, 9)
    for (i = 1; i <= 9; i++) { m = m * 2 + (substr(s, i, 1) != "-") }
    printf "%04o", m }'
}
