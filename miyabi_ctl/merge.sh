# miyabi-ctl merge, sent on stdin (miyabi_ctl/remote.py) with the arguments `MODE PATH REMOTE FROM INTO [ARGS...]`.
# POSIX sh. Prints key=value lines for miyabi_ctl/merge.py.
#
#   facts  PATH REMOTE FROM INTO FETCH        where this host stands (FETCH=1 fetches first)
#   merge  PATH REMOTE FROM INTO SOURCE HEAD BRANCH CHECK CHECK_TIMEOUT PUSH
#          check out INTO, fast-forward it to REMOTE's, merge SOURCE --no-ff, run CHECK, push;
#          on any failure put the host back exactly as found (branch, HEAD, clean tree)
#   sync   PATH REMOTE FROM INTO TARGET       fast-forward INTO (checked out, clean) to TARGET
LC_ALL=C
export LC_ALL
mode=$1 path=$2 remote=$3 from=$4 into=$5
shift 5
case $path in "~") path=$HOME ;; "~/"*) path=$HOME/${path#"~/"} ;; esac

say() { printf '%s=%s\n' "$1" "$2"; }
refuse() { say refuse "$1"; exit 0; }
fail() { say error "$1"; exit 1; }

command -v git >/dev/null 2>&1 || refuse "git is not installed"
cd "$path" 2>/dev/null || refuse "no such directory: $path"
top=$(git rev-parse --show-toplevel 2>/dev/null) || refuse "not a git repository: $path"
cd "$top" || fail "cannot enter $top"
gitdir=$(git rev-parse --absolute-git-dir) || fail "no git directory"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-merge.XXXXXX") || fail "mktemp failed"
trap 'rm -rf "$tmp"' EXIT
export GIT_TERMINAL_PROMPT=0
# This script arrives on stdin: every command that might read stdin gets </dev/null instead.

sha_of() { git rev-parse -q --verify "$1^{commit}" 2>/dev/null; }
dirty_count() { git status --porcelain -z 2>/dev/null | tr -cd '\0' | wc -c | tr -d ' '; }
busy() {
  for state in MERGE_HEAD CHERRY_PICK_HEAD REVERT_HEAD rebase-merge rebase-apply; do
    [ -e "$gitdir/$state" ] && { echo "$state"; return 0; }
  done
  return 1
}

facts() {
  fetch=$1
  if [ "$fetch" = 1 ]; then
    git fetch -q "$remote" 2>"$tmp/err" </dev/null || fail "git fetch $remote failed: $(tail -n 1 "$tmp/err")"
    say fetched 1
  fi
  say head "$(sha_of HEAD)"
  b=$(git symbolic-ref -q --short HEAD) && say branch "$b"
  say dirty "$(dirty_count)"
  state=$(busy) && say busy "$state"
  say from_local "$(sha_of "refs/heads/$from")"
  say into_local "$(sha_of "refs/heads/$into")"
  git ls-remote "$remote" "refs/heads/$from" "refs/heads/$into" >"$tmp/ls" 2>"$tmp/err" </dev/null ||
    { say remote_error "$(tail -n 1 "$tmp/err")"; return 0; }
  rfrom=$(awk -v r="refs/heads/$from" '$2 == r { print $1 }' "$tmp/ls")
  rinto=$(awk -v r="refs/heads/$into" '$2 == r { print $1 }' "$tmp/ls")
  say from_remote "$rfrom"
  say into_remote "$rinto"
  lfrom=$(sha_of "refs/heads/$from") || return 0
  # How the local FROM relates to the remote's: ahead, behind, same, diverged.
  if [ -z "$rfrom" ]; then
    say from_ahead "$(git rev-list --count "$lfrom" --not --remotes="$remote")"
    say from_relation ahead
  elif [ "$rfrom" = "$lfrom" ]; then
    say from_ahead 0; say from_relation same
  elif git cat-file -e "$rfrom^{commit}" 2>/dev/null; then
    say from_ahead "$(git rev-list --count "$rfrom..$lfrom")"
    if git merge-base --is-ancestor "$rfrom" "$lfrom"; then say from_relation ahead
    elif git merge-base --is-ancestor "$lfrom" "$rfrom"; then say from_relation behind
    else say from_relation diverged; fi
  else
    # The remote has commits this host has not fetched.
    ahead=$(git rev-list --count "$lfrom" --not --remotes="$remote")
    say from_ahead "$ahead"
    if [ "$ahead" -gt 0 ]; then say from_relation diverged; else say from_relation behind; fi
  fi
}

ident() {
  git var GIT_COMMITTER_IDENT >/dev/null 2>&1 || {
    GIT_AUTHOR_NAME=miyabi-ctl GIT_COMMITTER_NAME=miyabi-ctl
    GIT_AUTHOR_EMAIL=miyabi-ctl@$(hostname 2>/dev/null || echo host)
    GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
    export GIT_AUTHOR_NAME GIT_COMMITTER_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_EMAIL
  }
}

# Put the host back exactly as found: original branch (or detached HEAD), original HEAD, INTO
# where it was (or gone if it did not exist), clean tree. Untracked files were none at the start.
put_back() {
  trap - HUP INT TERM PIPE
  [ -f "$gitdir/MERGE_HEAD" ] && git merge --abort >/dev/null 2>&1
  if [ -n "$orig_branch" ]; then git checkout -q -f "$orig_branch"
  else git checkout -q -f --detach "$orig_head"; fi
  git reset -q --hard "$orig_head"
  git clean -fdq
  if [ "$orig_branch" != "$into" ]; then
    if [ -n "$into_before" ]; then git update-ref "refs/heads/$into" "$into_before"
    else git branch -q -D "$into" >/dev/null 2>&1; fi
  fi
  now_branch=$(git symbolic-ref -q --short HEAD)
  if [ "$(sha_of HEAD)" = "$orig_head" ] && [ "$now_branch" = "$orig_branch" ] &&
     [ "$(dirty_count)" = 0 ] && [ "$(sha_of "refs/heads/$into")" = "$into_before" ]; then
    say restored 1
  else
    say restore_failed "HEAD $(sha_of HEAD) on ${now_branch:-detached}, $(dirty_count) changes"
  fi
}

abort() { say error "$1"; put_back; exit 1; }

run_check() {
  check=$1 limit=$2
  if command -v timeout >/dev/null 2>&1; then timeout "$limit" sh -c "$check"
  elif command -v perl >/dev/null 2>&1; then perl -e 'alarm shift; exec @ARGV' "$limit" sh -c "$check"
  else sh -c "$check"; fi
}

merge() {
  source=$1 expect_head=$2 expect_branch=$3 check=$4 check_timeout=$5 push=$6
  orig_head=$(sha_of HEAD) || refuse "the repository has no commits"
  orig_branch=$(git symbolic-ref -q --short HEAD)
  into_before=$(sha_of "refs/heads/$into")
  [ "$orig_head" = "$expect_head" ] && [ "$orig_branch" = "$expect_branch" ] ||
    refuse "the host moved since the plan (now ${orig_branch:-detached} at $orig_head): plan again"
  state=$(busy) && refuse "a merge, rebase or cherry-pick is in progress ($state)"
  [ "$(dirty_count)" = 0 ] || refuse "the working tree is not clean: back it up with \`phase0 backup --clean\` first"
  say orig_head "$orig_head"
  say orig_branch "$orig_branch"
  trap 'abort "interrupted"' HUP INT TERM PIPE
  ident
  if [ -n "$into_before" ]; then
    git checkout -q "$into" 2>"$tmp/err" || abort "cannot check out $into: $(tail -n 1 "$tmp/err")"
  else
    git checkout -q -b "$into" "refs/remotes/$remote/$into" 2>"$tmp/err" ||
      abort "cannot create $into from $remote/$into: $(tail -n 1 "$tmp/err")"
  fi
  if sha_of "refs/remotes/$remote/$into" >/dev/null; then
    git merge -q --ff-only "refs/remotes/$remote/$into" 2>"$tmp/err" </dev/null ||
      abort "$into has commits that $remote/$into does not (diverged): cannot fast-forward it"
  fi
  say into_base "$(sha_of HEAD)"
  if ! git merge -q --no-ff --no-edit -m "Merge branch '$from' into $into" "$source" \
       >"$tmp/merge.out" 2>&1 </dev/null; then
    git diff --name-only --diff-filter=U >"$tmp/conflicts" 2>/dev/null
    while IFS= read -r f; do say conflict "$f"; done <"$tmp/conflicts"
    abort "merging $from into $into conflicts in $(wc -l <"$tmp/conflicts" | tr -d ' ') files"
  fi
  merged=$(sha_of HEAD)
  say merged "$merged"
  if [ -n "$check" ]; then
    # stdin is this script: the check must not read it
    run_check "$check" "$check_timeout" >"$tmp/check.out" 2>&1 </dev/null
    rc=$?
    say check_rc "$rc"
    if [ "$rc" != 0 ]; then
      tail -n 20 "$tmp/check.out" | while IFS= read -r line; do say check_out "$line"; done
      abort "the check failed (exit $rc)"
    fi
  fi
  if [ "$push" = 1 ]; then
    git push -q "$remote" "refs/heads/$into:refs/heads/$into" 2>"$tmp/err" </dev/null ||
      abort "push of $into to $remote failed: $(grep -v '^ *$' "$tmp/err" | tail -n 1)"
    r=$(git ls-remote "$remote" "refs/heads/$into" </dev/null | cut -f1)
    [ "$r" = "$merged" ] || abort "$remote's $into is $r after the push, not $merged"
    say pushed 1
  fi
  trap - HUP INT TERM PIPE
  # Back to where the host was (its sessions were on that branch); INTO keeps the merge.
  if [ "$orig_branch" != "$into" ]; then
    if [ -n "$orig_branch" ]; then git checkout -q "$orig_branch"
    else git checkout -q --detach "$orig_head"; fi || say warning "left on $into: cannot switch back"
  fi
  say done 1
}

sync() {
  target=$1
  b=$(git symbolic-ref -q --short HEAD)
  [ "$b" = "$into" ] || refuse "on ${b:-a detached HEAD}, not $into"
  [ "$(dirty_count)" = 0 ] || refuse "the working tree is not clean"
  state=$(busy) && refuse "a merge, rebase or cherry-pick is in progress ($state)"
  before=$(sha_of HEAD)
  say before "$before"
  [ "$before" = "$target" ] && { say after "$before"; say done 1; exit 0; }
  git fetch -q "$remote" "+refs/heads/$into:refs/remotes/$remote/$into" 2>"$tmp/err" </dev/null ||
    fail "git fetch failed: $(tail -n 1 "$tmp/err")"
  git merge -q --ff-only "$target" 2>"$tmp/err" </dev/null ||
    refuse "$into has local commits that $remote/$into does not: cannot fast-forward"
  say after "$(sha_of HEAD)"
  say done 1
}

case $mode in
  facts) facts "$@" ;;
  merge) merge "$@" ;;
  sync) sync "$@" ;;
  *) fail "unknown mode $mode" ;;
esac
