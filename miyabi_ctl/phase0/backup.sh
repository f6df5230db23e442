# miyabi-ctl backup, sent on stdin (miyabi_ctl/remote/runner.py) with the arguments `MODE PATH LABEL REMOTE [ARGS...]`.
# POSIX sh (Linux, macOS). Prints key=value lines that miyabi_ctl/phase0/backup.py parses.
#
# It never touches the working tree, the index or HEAD of the repository (until `commit` is
# asked to clean, after a verified backup): snapshots are built in a temporary index, and in
# `plan` mode even the objects go to a temporary object directory that is removed afterwards.
#
#   plan     PATH LABEL REMOTE [EXCLUDES]      facts + snapshot tree, objects discarded
#   snapshot PATH LABEL REMOTE [EXCLUDES]      the same, objects written to the repository
#   commit   PATH LABEL REMOTE TREE HEAD ITREE BRANCH CREATE PUSH CLEAN MESSAGE EXCLUDES [PID CWD]...
#                                              create the branch (CREATE=1; CREATE=<commit>:
#                                              recreate it there), push, verify, clean (not while
#                                              one of the agent sessions PID works in the repo)
#   restore  PATH LABEL REMOTE REF             put a backup's files (and index) back
# EXCLUDES: glob patterns (git's `:(glob)`, from the top), one a line, kept out of the snapshot:
# their entries are HEAD's there, so a clean (from the snapshot to HEAD) never touches them.
LC_ALL=C
export LC_ALL
mode=$1 path=$2 label=$3 remote=$4
shift 4
expand_home "$path"; path=$expanded

# This script arrives on stdin: commands that might read stdin (push, filters) get </dev/null.
say() { printf '%s=%s\n' "$1" "$2"; }
refuse() { say refuse "$1"; exit 0; }
fail() { say error "$1"; exit 1; }
# Configuration that would make a copied index write into .git or trust another index's cache.
G() { git -c core.fsmonitor=false -c core.splitIndex=false -c core.untrackedCache=false "$@"; }

[ -d "$path" ] || { say norepo "no such directory: $path"; exit 0; }
cd "$path" 2>/dev/null || { say norepo "cannot enter $path"; exit 0; }
command -v git >/dev/null 2>&1 || refuse "git is not installed"
top=$(git rev-parse --show-toplevel 2>/dev/null) || { say norepo "not a git repository: $path"; exit 0; }
cd "$top" || fail "cannot enter $top"
say top "$top"
gitdir=$(git rev-parse --absolute-git-dir) || fail "no git directory"
journal=$gitdir/miyabi-ctl.journal
index=$(git rev-parse --git-path index)
case $index in /*) ;; *) index=$top/$index ;; esac
objects=$(cd "$(git rev-parse --git-path objects)" && pwd) || fail "no object directory"

if [ -z "$remote" ]; then
  b=$(git symbolic-ref -q --short HEAD) && remote=$(git config "branch.$b.remote")
  [ -z "$remote" ] && [ "$(git remote | wc -l | tr -d ' ')" = 1 ] && remote=$(git remote)
fi
say remote "$remote"

# Milliseconds since the epoch where date has %N (GNU, busybox), else whole seconds.
now_ms() {
  t=$(date +%s%N 2>/dev/null)
  case $t in *N|'') echo $(( $(date +%s) * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-backup.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
# A signal (the runner's watchdog at the timeout, a lost terminal) ends the script; a trap that
# only removed $tmp would let it go on without its files.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The snapshot is the working tree's bytes: `add` runs under a stand-in git directory whose
# info/attributes (the highest-precedence attributes file) turns off every conversion (eol,
# autocrlf, clean filters such as LFS, ident, encodings); objects, ignore rules and the
# repository's config are the real ones. Writes nothing in the repository but objects.
raw=$tmp/raw
mkdir -p "$raw/info" "$raw/refs" "$raw/objects" || fail "mktemp failed"
git rev-parse -q --verify HEAD >"$raw/HEAD" 2>/dev/null || echo 0000000000000000000000000000000000000000 >"$raw/HEAD"
common=$(cd "$(git rev-parse --git-common-dir)" && pwd) || fail "no git directory"
cp "$common/config" "$raw/config" 2>/dev/null
[ -f "$common/info/exclude" ] && cp "$common/info/exclude" "$raw/info/exclude"
printf '* -text -filter -ident -crlf -working-tree-encoding !eol\n' >"$raw/info/attributes"
R() {
  GIT_DIR=$raw GIT_WORK_TREE=$top GIT_OBJECT_DIRECTORY=${GIT_OBJECT_DIRECTORY:-$objects} \
    git -c core.autocrlf=false -c core.safecrlf=false -c core.sparseCheckout=false \
    -c core.fsmonitor=false -c core.splitIndex=false -c core.untrackedCache=false "$@"
}
# Could a file's index blob differ from its bytes (an eol rule, autocrlf, a filter)? Then the
# index's stat cache cannot be trusted for the snapshot, and every file is read again.
convert=0
case $(git config --get core.autocrlf) in true|input) convert=1 ;; esac
for f in "$common/info/attributes" "$(git config --get core.attributesFile)" \
         "${XDG_CONFIG_HOME:-$HOME/.config}/git/attributes" /etc/gitattributes; do
  [ -n "$f" ] && [ -s "$f" ] && convert=1
done
[ "$convert" = 0 ] && [ -n "$(git --no-optional-locks ls-files -z -c -o -- ':(glob)**/.gitattributes' | head -c 1)" ] && convert=1

# The working tree as a tree object, built in a copy of the index (cp -p keeps its mtime, so
# git's racy-clean protection works as it does on the real one). Prints the tree id.
snapshot_tree() {
  if [ -f "$index" ] && [ "$convert" = 0 ]; then cp -p "$index" "$tmp/index" || return 1
  else GIT_INDEX_FILE=$tmp/index git read-tree "$(index_tree)" || return 1; fi
  # assume-unchanged and skip-worktree would make `add` skip an edited file: in the copy only,
  # clear them where the file is on disk; a skip-worktree file absent from disk (a sparse
  # checkout) keeps its bit, so it is not recorded as deleted.
  if git --no-optional-locks ls-files -v | grep -q '^[a-zS]'; then
    git --no-optional-locks ls-files -v -z | xargs -0 sh -c '
      for e do
        p=${e#??}
        case $e in
          [a-z]\ *) printf "%s\0" "$p" >>"$0/flagged" ;;
          S\ *) if [ -e "$p" ] || [ -L "$p" ]; then printf "%s\0" "$p" >>"$0/flagged"
                else printf "%s\0" "$p" >>"$0/sparse"; fi ;;
        esac
      done' "$tmp"
    if [ -f "$tmp/flagged" ]; then
      GIT_INDEX_FILE=$tmp/index git update-index --no-assume-unchanged --no-skip-worktree \
        -z --stdin <"$tmp/flagged" || return 1
    fi
    if [ -f "$tmp/sparse" ]; then
      GIT_INDEX_FILE=$tmp/index git update-index --skip-worktree -z --stdin <"$tmp/sparse" || return 1
    fi
    rm -f "$tmp/flagged" "$tmp/sparse"
  fi
  GIT_INDEX_FILE=$tmp/index R add -A -- :/ >"$tmp/add.err" 2>&1 </dev/null || { cat "$tmp/add.err" >&2; return 1; }
  exclude_paths || return 1
  GIT_INDEX_FILE=$tmp/index R write-tree
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
  GIT_INDEX_FILE=$tmp/index R add -A -- :/ >"$tmp/add.err" 2>&1 </dev/null || return 1
  exclude_paths || return 1
  GIT_INDEX_FILE=$tmp/index R write-tree
}

# What the backup will publish: `publish=SIZE PATH` for every file whose snapshot differs from
# HEAD (a newline in a name shows as ?).
publish() {
  git diff-tree -r -z --no-renames --diff-filter=AMT HEAD "$tree" | tr '\0\n' '\n?' |
    awk -v shas="$tmp/pub-shas" -v paths="$tmp/pub-paths" '
      /^:/ { split($0, m, " "); keep = (m[2] != "160000"); s = m[4]; next }
      keep { print s > shas; print > paths }'
  [ -s "$tmp/pub-shas" ] || return 0
  git cat-file --batch-check='%(objectsize)' <"$tmp/pub-shas" | paste -d ' ' - "$tmp/pub-paths" |
    sed 's/^/publish=/'
  # Files only their owner may read (a 0600 key), of those: `mode=0600 PATH`, recorded in the
  # backup commit's message; restore puts the mode back.
  find . -name .git -prune -o -type f ! -perm -044 -print 2>/dev/null | sed 's|^\./||' |
    grep -F -x -f "$tmp/pub-paths" 2>/dev/null | while IFS= read -r f; do
      say mode "$(perm_of "$f") $f"
    done
  # LFS files are snapshotted as their bytes (no clean filter): plain blobs, not LFS objects.
  say lfs "$(git check-attr filter --stdin <"$tmp/pub-paths" 2>/dev/null | grep -c ': filter: lfs$')"
}

# What git cannot hold, in the work tree outside ignored paths: FIFOs and sockets, and empty
# directories. Prints `unkept=KIND PATH` lines, at most 20.
unkept() {
  find . -name .git -prune -o \( -type p -o -type s -o \( -type d -empty \) \) -print \
       2>/dev/null | sed 's|^\./||' | grep -v '^\.$' |
    git --no-optional-locks check-ignore --stdin -n -v 2>/dev/null |
    sed -n 's/^::	//p' | head -n 20 | while IFS= read -r f; do
      if [ -p "$f" ]; then say unkept "fifo $f"
      elif [ -S "$f" ]; then say unkept "socket $f"
      elif [ -d "$f" ]; then say unkept "empty-dir $f"; fi
    done
}

# The permission bits of a file, in octal (git keeps only 0644 and 0755).
perm_of() {
  ls -ld "$1" | awk '{ m = 0; s = substr($1, 2, 9)
    for (i = 1; i <= 9; i++) { m = m * 2 + (substr(s, i, 1) != "-") }
    printf "%04o", m }'
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

# The real index as a tree (staged versions that differ from the files keep their bytes).
index_tree() {
  [ -f "$index" ] || { git rev-parse 'HEAD^{tree}'; return; }
  cp -p "$index" "$tmp/real-index" && GIT_INDEX_FILE=$tmp/real-index G write-tree
}

facts() {
  # Cleans this host started that the controller may not have recorded (see commit).
  if [ -f "$journal" ]; then
    while IFS= read -r line; do say journal "$line"; done <"$journal"
  fi
  head=$(git rev-parse -q --verify 'HEAD^{commit}') || refuse "the repository has no commits yet"
  say head "$head"
  if branch=$(git symbolic-ref -q --short HEAD); then say branch "$branch"; else say detached 1; fi
  for state in MERGE_HEAD CHERRY_PICK_HEAD REVERT_HEAD rebase-merge rebase-apply; do
    [ -e "$gitdir/$state" ] && refuse "a merge, rebase or cherry-pick is in progress ($state): finish or abort it first"
  done
  unmerged=$(git ls-files -u -z | tr -cd '\0' | wc -c | tr -d ' ')
  [ "$unmerged" -gt 0 ] && refuse "the index has unmerged (conflicted) entries: resolve them first"
  if [ -f .gitmodules ]; then
    dirty=$(git submodule foreach --quiet --recursive \
      'if [ -n "$(git --no-optional-locks status --porcelain)" ]; then printf "%s " "$displaypath"; fi' 2>/dev/null)
    [ -n "$dirty" ] && refuse "submodules have uncommitted changes inside them (${dirty% }): commit or back them up there first; a superproject backup records only their commit"
  fi
  if ! tree=$(snapshot_tree); then
    why=$(grep -v '^fatal: adding files failed' "$tmp/add.err" 2>/dev/null | head -n 3 | tr '\n' ' ')
    case $why in *"does not have a commit checked out"*)
      why="$why(a repository nested in the work tree has no commit yet: commit in it, or move it out of the tree)" ;;
    esac
    fail "cannot snapshot the working tree: ${why:-$(tail -n 1 "$tmp/add.err" 2>/dev/null)}"
  fi
  say tree "$tree"
  unkept
  publish
  say head_tree "$(git rev-parse 'HEAD^{tree}')"
  itree=$(index_tree) || fail "cannot read the index"
  say index_tree "$itree"
  for f in A M D T; do
    say "count_$f" "$(git diff-tree -r -z --no-renames --name-only --diff-filter=$f HEAD "$tree" | tr -cd '\0' | wc -c | tr -d ' ')"
  done
  # Embedded repositories (a directory with its own .git) become bare commit ids in a tree.
  say gitlinks "$(git ls-tree -r -z "$tree" | tr '\0' '\n' | grep -c '^160000 ')"
  say head_gitlinks "$(git ls-tree -r -z HEAD | tr '\0' '\n' | grep -c '^160000 ')"
  git for-each-ref --format='%(refname) %(objectname) %(tree) %(parent)' \
      "refs/heads/backup/$label-*" ${remote:+"refs/remotes/$remote/backup/$label-*"} |
    while read -r name sha t _p1 p2; do
      it=-
      [ -n "$p2" ] && it=$(git rev-parse "$p2^{tree}")
      say ref "$name $sha $t $it"
    done
  # The remote's own branches of that name, which a shallow or single-branch clone does not
  # track: their names are taken too.
  if [ -n "$remote" ]; then
    GIT_TERMINAL_PROMPT=0 git ls-remote --heads -- "$remote" "refs/heads/backup/$label-*" \
        2>/dev/null </dev/null |
      while read -r sha name; do
        git rev-parse -q --verify "refs/remotes/$remote/${name#refs/heads/}" >/dev/null ||
          say ref "refs/ls-remote/${name#refs/heads/} $sha - -"
      done
  fi
}

# The clean's two trees, FROM (the snapshot's entries of the paths it changed) and TO (HEAD's
# entries of those paths), and $tmp/cindex: FROM's entries with stat data read now. Embedded
# repositories (gitlinks) are left out: a clean leaves them in place.
narrow_clean() {
  git diff-tree -r -z --no-renames --name-only HEAD "$tree" >"$tmp/changed" || return 1
  rm -f "$tmp/cindex" "$tmp/hindex"
  if [ -s "$tmp/changed" ]; then
    GIT_LITERAL_PATHSPECS=1 GIT_INDEX_FILE=$tmp/index xargs -0 git ls-files -s -z -- \
      <"$tmp/changed" | no_gitlinks >"$tmp/from" || return 1
    GIT_LITERAL_PATHSPECS=1 xargs -0 git ls-tree -r -z HEAD -- <"$tmp/changed" |
      no_gitlinks >"$tmp/to" || return 1
  else
    : >"$tmp/from"; : >"$tmp/to"
  fi
  GIT_INDEX_FILE=$tmp/cindex G update-index -z --index-info <"$tmp/from" || return 1
  GIT_INDEX_FILE=$tmp/hindex G update-index -z --index-info <"$tmp/to" || return 1
  from_tree=$(GIT_INDEX_FILE=$tmp/cindex G write-tree) || return 1
  to_tree=$(GIT_INDEX_FILE=$tmp/hindex G write-tree) || return 1
  # Stat data for the entries whose files still hold the snapshot's bytes (read raw, as the
  # snapshot was); one that changed keeps none, and read-tree then refuses to touch it.
  GIT_INDEX_FILE=$tmp/cindex R update-index -q --refresh >/dev/null 2>&1
  return 0
}
no_gitlinks() {
  xargs -0 sh -c 'for e do case $e in 160000\ *) ;; *) printf "%s\0" "$e" ;; esac; done' sh
}

ident() {
  # commit-tree needs an identity; a host without one still gets its work saved.
  git var GIT_AUTHOR_IDENT >/dev/null 2>&1 || {
    GIT_AUTHOR_NAME=miyabi-ctl GIT_AUTHOR_EMAIL=miyabi-ctl@$(hostname 2>/dev/null || echo host)
    export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL
  }
  git var GIT_COMMITTER_IDENT >/dev/null 2>&1 || {
    GIT_COMMITTER_NAME=miyabi-ctl GIT_COMMITTER_EMAIL=miyabi-ctl@$(hostname 2>/dev/null || echo host)
    export GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL
  }
}

commit() {
  tree=$1 head=$2 itree=$3 branch=$4 create=$5 push=$6 clean=$7 message=$8
  shift 8
  [ $# -gt 0 ] && shift  # EXCLUDES (read at the start); then the agent sessions: PID CWD pairs
  ref=refs/heads/$branch
  if [ "$create" = 1 ]; then
    ident
    parents="-p $head"
    if [ -n "$itree" ]; then
      icommit=$(printf 'index of %s\n' "$message" | git commit-tree --no-gpg-sign "$itree" -p "$head") ||
        fail "cannot record the staged versions"
      parents="$parents -p $icommit"
    fi
    # shellcheck disable=SC2086 # $parents holds option words built from hex ids only
    # Never signed: a signing key's passphrase prompt would wait for nobody until the timeout.
    new=$(printf '%s\n' "$message" | git commit-tree --no-gpg-sign "$tree" $parents) || fail "commit-tree failed"
    # An empty old value: the branch must not exist yet (never overwrite someone's branch).
    git update-ref -m "miyabi-ctl backup" "$ref" "$new" "" 2>"$tmp/err" ||
      fail "cannot create $branch: $(tail -n 1 "$tmp/err")"
    say created "$new"
  elif [ "$create" != 0 ]; then
    # The local branch was deleted; its remote-tracking copy holds the snapshot: recreate it.
    [ "$(git rev-parse -q --verify "$create^{tree}")" = "$tree" ] ||
      fail "$create does not hold the snapshot's tree: cannot recreate $branch from it"
    git update-ref -m "miyabi-ctl backup (recreated)" "$ref" "$create" "" 2>"$tmp/err" ||
      fail "cannot recreate $branch: $(tail -n 1 "$tmp/err")"
    say recreated "$create"
  fi
  sha=$(git rev-parse -q --verify "$ref^{commit}") || fail "$branch does not exist"
  say commit "$sha"
  [ "$(git rev-parse "$sha^{tree}")" = "$tree" ] || fail "$branch does not hold the snapshot's tree"
  say local_verified 1
  if [ "$push" = 1 ]; then
    [ -n "$remote" ] || fail "no remote to push to (the branch has no upstream and the repository has several or no remotes)"
    # --no-verify: the repository's pre-push hooks (tests, linters) are for its own branches.
    GIT_TERMINAL_PROMPT=0 git push -q --no-verify -- "$remote" "$ref:$ref" 2>"$tmp/err" </dev/null ||
      fail "push to $remote failed: $(grep -v '^ *$' "$tmp/err" | tail -n 1)"
    say pushed 1
    rsha=$(GIT_TERMINAL_PROMPT=0 git ls-remote -- "$remote" "$ref" 2>"$tmp/err" </dev/null | cut -f1) ||
      fail "cannot read $branch back from $remote: $(tail -n 1 "$tmp/err")"
    [ -n "$rsha" ] || fail "$remote has no $branch after the push"
    if [ "$rsha" != "$sha" ]; then
      GIT_TERMINAL_PROMPT=0 git fetch -q -- "$remote" "$ref" 2>"$tmp/err" </dev/null ||
        fail "cannot fetch $branch back from $remote: $(tail -n 1 "$tmp/err")"
    fi
    rtree=$(git rev-parse -q --verify "$rsha^{tree}") || fail "cannot read the tree of $remote's $branch"
    say remote_tree "$rtree"
    [ "$rtree" = "$tree" ] || fail "$remote's $branch holds tree $rtree, not the snapshot's $tree"
    say remote_verified 1
  fi
  [ "$clean" = 1 ] || exit 0
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
  say journal_id "$jid"
  printf 'start %s %s %s %s\n' "$jid" "$(date +%s)" "$branch" "$head" >>"$journal" ||
    refuse "cannot write the journal $journal: not cleaning"
  # From here on, a controller that goes away (a closed stdout) must not stop the script half-way.
  trap '' PIPE
  t0=$(now_ms)
  GIT_INDEX_FILE=$tmp/cindex G read-tree -m -u "$from_tree" "$to_tree" >"$tmp/err" 2>&1 </dev/null ||
    { printf 'nothing %s\n' "$jid" >>"$journal"
      refuse "the working tree changed while it was being cleaned; nothing was written: $(grep -v '^ *$' "$tmp/err" | head -n 3 | tr '\n\t' '  ')"; }
  t1=$(now_ms)
  printf 'done %s %s\n' "$jid" "$(date +%s)" >>"$journal"
  say window_ms "$((t1 - t0))"
  G reset -q "$head" 2>"$tmp/err" >/dev/null ||
    fail "the files were cleaned but the index could not be reset: $(tail -n 1 "$tmp/err")"
  say cleaned 1
  left=$(git status --porcelain -z | tr -cd '\0' | wc -c | tr -d ' ')
  say left "$left"
}

restore() {
  ref=$1
  [ -z "$(git status --porcelain -z --untracked-files=all | head -c 1)" ] ||
    refuse "the working tree has uncommitted changes: back them up (and --clean) first"
  if ! sha=$(git rev-parse -q --verify "$ref^{commit}" 2>/dev/null); then
    [ -n "$remote" ] || refuse "no such commit or branch: $ref"
    GIT_TERMINAL_PROMPT=0 git fetch -q -- "$remote" "refs/heads/$ref" 2>"$tmp/err" </dev/null ||
      refuse "no such commit or branch: $ref (not on $remote either)"
    sha=$(git rev-parse FETCH_HEAD)
  fi
  say commit "$sha"
  parent=$(git rev-parse -q --verify "$sha^1") || refuse "$ref has no parent: not a backup commit"
  head=$(git rev-parse HEAD)
  [ "$parent" = "$head" ] ||
    refuse "HEAD is $head but the backup was taken on $parent: check that out first (git switch --detach $parent, or the branch that points there)"
  # Files: write every file of the backup, then remove those the backup does not have.
  GIT_INDEX_FILE=$tmp/restore git read-tree "$sha" || fail "cannot read $ref"
  # The backup holds the working tree's bytes: they are written back without conversion.
  GIT_INDEX_FILE=$tmp/restore R checkout-index -a -f || fail "cannot write the files of $ref"
  git diff-tree -r -z --no-renames --name-only --diff-filter=D HEAD "$sha" |
    (cd "$top" && xargs -0 rm -f --) || fail "cannot remove files deleted in $ref"
  say files "$(git diff-tree -r -z --no-renames --name-only HEAD "$sha" | tr -cd '\0' | wc -c | tr -d ' ')"
  # Modes git does not keep, from the message's `Mode: 0600 PATH` lines: only permission bits,
  # only for regular files of the backup, never outside the tree.
  git log -1 --format=%B "$sha" | sed -n 's/^Mode: //p' | while IFS= read -r line; do
    m=${line%% *} f=${line#* }
    case $m in 0[0-7][0-7][0-7]) ;; *) continue ;; esac
    case /$f/ in */../*|//*) continue ;; esac
    [ "$(git cat-file -t "$sha:$f" 2>/dev/null)" = blob ] && [ -f "$f" ] && [ ! -L "$f" ] &&
      chmod "$m" -- "$f" && say mode "$m $f"
  done
  # Index: the staged versions, when the backup recorded them (second parent).
  if istaged=$(git rev-parse -q --verify "$sha^2^{tree}"); then
    git read-tree "$istaged" 2>"$tmp/err" ||
      fail "the files are restored, but not the index: $(tail -n 1 "$tmp/err")"
    git update-index -q --refresh >/dev/null
    say index restored
  else
    git update-index -q --refresh >/dev/null
    say index unchanged
  fi
  say restored 1
}

case $mode in
  plan|snapshot) excludes=${1-} ;;
  commit) excludes=${9-} ;;
esac
case $mode in
  plan)
    mkdir "$tmp/objects" || fail "mktemp failed"
    GIT_OBJECT_DIRECTORY=$tmp/objects GIT_ALTERNATE_OBJECT_DIRECTORIES=$objects
    export GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
    facts ;;
  snapshot) facts ;;
  commit)
    # The controller recorded what the journal held (it read it from the snapshot just before).
    rm -f "$journal"
    commit "$@" ;;
  restore) restore "$@" ;;
  *) fail "unknown mode $mode" ;;
esac
