# miyabi-ctl backup, sent on stdin (miyabi_ctl/remote/runner.py) after snapshot.sh and clean.sh,
# with the arguments `MODE PATH LABEL REMOTE WORKTREE [ARGS...]`. POSIX sh (Linux, macOS). Prints
# key=value lines that miyabi_ctl/phase0/backup.py parses.
#
# It never touches the working tree, the index or HEAD of the repository (until `commit` is
# asked to clean, after a verified backup): snapshots are built in a temporary index, and in
# `plan` mode even the objects go to a temporary object directory that is removed afterwards.
#
#   plan     PATH LABEL REMOTE WORKTREE [EXCLUDES]   facts + snapshot tree, objects discarded;
#                                              WORKTREE `*`: PATH, then every linked worktree of
#                                              its repository (`worktree=NAME` before each)
#   snapshot PATH LABEL REMOTE WORKTREE [EXCLUDES]   the same, objects written to the repository
#   commit   PATH LABEL REMOTE WORKTREE TREE HEAD ITREE FTREE BRANCH CREATE PUSH CLEAN MESSAGE
#            EXCLUDES [PID CWD]...             create the branch (CREATE=1; CREATE=<commit>:
#                                              recreate it there), push, verify, clean (not while
#                                              one of the agent sessions PID works in the repo)
# WORKTREE: empty for the work tree at PATH, else the name of a linked worktree of its repository.
# EXCLUDES: glob patterns (git's `:(glob)`, from the top), one a line, kept out of the snapshot:
# their entries are HEAD's there, so a clean (from the snapshot to HEAD) never touches them.
LC_ALL=C
export LC_ALL
mode=$1 path=$2 label=$3 remote=$4 worktree=$5
shift 5
# This script arrives on stdin: commands that might read stdin (push, filters) get </dev/null.
sweep_tmp
tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-backup.$$.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
# A signal (the runner's watchdog at the timeout, a lost terminal) ends the script; a trap that
# only removed $tmp would let it go on without its files.
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
all=
[ "$worktree" = "*" ] && { all=1; worktree=; }
open_tree "$path" "$worktree"

if [ -z "$remote" ]; then
  b=$(git symbolic-ref -q --short HEAD) && remote=$(git config "branch.$b.remote")
  [ -z "$remote" ] && [ "$(git remote | wc -l | tr -d ' ')" = 1 ] && remote=$(git remote)
fi
say remote "$remote"

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
  if ! tree=$(snapshot_tree 2>>"$tmp/add.err"); then
    why=$(grep -v '^fatal: adding files failed' "$tmp/add.err" 2>/dev/null | head -n 3 | tr '\n' ' ')
    case $why in *"does not have a commit checked out"*)
      why="$why(a repository nested in the work tree has no commit yet: commit in it, or move it out of the tree)" ;;
    esac
    fail "cannot snapshot the working tree: $(no_space)${why:-$(tail -n 1 "$tmp/add.err" 2>/dev/null)}"
  fi
  say tree "$tree"
  # What --clean would refuse here, for the plan to say: files in the way of HEAD's that no
  # backup holds (as the clean checks them), a git that runs or crashed.
  in_the_way "$tree" "$head" | head -n 10 | while IFS= read -r p; do say clean_way "$p"; done
  lock=$(git rev-parse --git-path index.lock)
  [ -e "$lock" ] && say index_lock "$lock"
  ftree=$(flags_tree) || fail "cannot record the index's flags: $(no_space)"
  say flags_tree "$ftree"
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
  # The backup branches of this label (a linked worktree's are read once, with the main tree's).
  [ -n "$refs_listed" ] && return 0
  git for-each-ref --format='%(refname) %(objectname) %(tree) %(parent)' \
      "refs/heads/backup/$label-*" ${remote:+"refs/remotes/$remote/backup/$label-*"} |
    while read -r name sha t _p1 p2 p3; do
      it=- ft=-
      [ -n "$p2" ] && it=$(git rev-parse "$p2^{tree}")
      [ -n "$p3" ] && ft=$(git rev-parse "$p3^{tree}")
      say ref "$name $sha $t $it $ft"
    done
  # The remote's own branches of that name, which a shallow or single-branch clone does not
  # track: their names are taken too.
  if [ -n "$remote" ]; then
    GIT_TERMINAL_PROMPT=0 git ls-remote --heads -- "$remote" "refs/heads/backup/$label-*" \
        2>/dev/null </dev/null |
      while read -r sha name; do
        git rev-parse -q --verify "refs/remotes/$remote/${name#refs/heads/}" >/dev/null ||
          say ref "refs/ls-remote/${name#refs/heads/} $sha - - -"
      done
  fi
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
  tree=$1 head=$2 itree=$3 ftree=$4 branch=$5 create=$6 push=$7 clean=$8 message=$9
  shift 9
  [ $# -gt 0 ] && shift  # EXCLUDES (read at the start); then the agent sessions: PID CWD pairs
  ref=refs/heads/$branch
  if [ "$create" = 1 ]; then
    ident
    parents="-p $head"
    # The staged versions (second parent), and the index's flags (third parent, as `git stash
    # -u` keeps untracked files there); flags need the second parent, even when nothing is staged.
    [ -z "$itree" ] && [ -n "$ftree" ] && itree=$(git rev-parse "$head^{tree}")
    if [ -n "$itree" ]; then
      icommit=$(printf 'index of %s\n' "$message" | git commit-tree --no-gpg-sign "$itree" -p "$head") ||
        fail "cannot record the staged versions: $(no_space)"
      parents="$parents -p $icommit"
    fi
    if [ -n "$ftree" ]; then
      fcommit=$(printf 'index flags of %s\n' "$message" | git commit-tree --no-gpg-sign "$ftree") ||
        fail "cannot record the index's flags: $(no_space)"
      parents="$parents -p $fcommit"
    fi
    # shellcheck disable=SC2086 # $parents holds option words built from hex ids only
    # Never signed: a signing key's passphrase prompt would wait for nobody until the timeout.
    new=$(printf '%s\n' "$message" | git commit-tree --no-gpg-sign "$tree" $parents) ||
      fail "commit-tree failed: $(no_space)"
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
    GIT_TERMINAL_PROMPT=0 git push --no-verify --porcelain -- "$remote" "$ref:$ref" \
        >"$tmp/out" 2>"$tmp/err" </dev/null ||
      fail "push to $remote failed: $(push_error "$tmp/out" "$tmp/err")"
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
  clean_tree "$@"
}

# What the backup facts of one linked worktree say, after `worktree=NAME`; each in a subshell of
# its own (its refusal ends only it).
worktree_facts() {
  n=0 main_top=$top
  nl='
'

  for admin in "$common"/worktrees/*; do
    [ -f "$admin/gitdir" ] || continue
    name=${admin##*/}
    case $name in *"$nl"*) continue ;; esac
    n=$((n + 1))
    say worktree "$name"
    [ -f "$admin/locked" ] && say locked "$(tr '\n' ' ' <"$admin/locked")"
    (
      tmp=$tmp/wt-$n
      mkdir "$tmp" || fail "mktemp failed"
      open_tree "$main_top" "$name"
      open_snapshot
      refs_listed=1
      facts
    )
  done
}

case $mode in
  plan|snapshot) excludes=${1-} ;;
  commit) excludes=${10-} ;;
esac
refs_listed=
case $mode in
  plan)
    objects_only_in_tmp
    open_snapshot
    (facts)
    [ -n "$all" ] && worktree_facts
    exit 0 ;;
  snapshot) open_snapshot; facts ;;
  commit)
    open_snapshot
    # The controller recorded what the journal held (it read it from the snapshot just before).
    rm -f "$journal"
    commit "$@" ;;
  *) fail "unknown mode $mode" ;;
esac
