# miyabi-ctl merge, sent on stdin (miyabi_ctl/remote/runner.py) with the arguments `MODE PATH REMOTE FROM INTO [ARGS...]`.
# POSIX sh. Prints key=value lines for miyabi_ctl/phase0/merge.py.
#
#   facts  PATH REMOTE FROM INTO FETCH        where this host stands (FETCH=1 fetches first)
#   merge  PATH REMOTE FROM INTO SOURCE CHECK CHECK_TIMEOUT PUSH [ALSO]
#          merge SOURCE --no-ff onto INTO in a temporary detached worktree, run CHECK there,
#          push that commit to REMOTE's INTO and verify it, then move the local INTO to it by
#          fast-forward only where that is safe. The working tree the agents use, its index and
#          HEAD are never touched (except that fast-forward when the tree is on INTO and clean),
#          and the temporary worktree is always removed, whatever happens. PUSH=check (`land`
#          with a pull request): merge and check only, nothing pushed, the local INTO untouched.
#          ALSO (`land`: refs/heads/issue/N): pushed as SOURCE in the same atomic push as INTO,
#          so the remote holds both or neither.
#   sync   PATH REMOTE FROM INTO TARGET       fast-forward INTO (checked out, clean) to TARGET
LC_ALL=C
export LC_ALL
mode=$1 path=$2 remote=$3 from=$4 into=$5
shift 5
expand_home "$path"; path=$expanded

say() { printf '%s=%s\n' "$1" "$2"; }
refuse() { say refuse "$1"; exit 0; }
fail() { say error "$1"; exit 1; }

command -v git >/dev/null 2>&1 || refuse "git is not installed"
cd "$path" 2>/dev/null || refuse "no such directory: $path"
top=$(git rev-parse --show-toplevel 2>/dev/null) || refuse "not a git repository: $path"
cd "$top" || fail "cannot enter $top"
gitdir=$(git rev-parse --absolute-git-dir) || fail "no git directory"
sweep_tmp
tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-merge.$$.XXXXXX") || fail "mktemp failed"
wt=
common=$(cd "$(git rev-parse --git-common-dir)" && pwd) || fail "no git directory"
# Unregister one temporary worktree (ours, or one a killed run left): `git worktree remove`, or
# when its directory is gone, its own admin directory only. Never `git worktree prune`: that
# also drops the admin data of a worktree someone moved or whose disk is not mounted.
drop_worktree() {
  git worktree remove --force "$1" >/dev/null 2>&1 && return 0
  for admin in "$common"/worktrees/*; do
    [ -f "$admin/gitdir" ] && [ "$(cat "$admin/gitdir")" = "$1/.git" ] && rm -rf "$admin"
  done
  return 0
}
# Whatever ends the script (success, failure, a lost connection), the temporary worktree goes.
cleanup() {
  cd "$top" 2>/dev/null
  [ -n "$wt" ] && drop_worktree "$wt"
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 141' PIPE
export GIT_TERMINAL_PROMPT=0
# This script arrives on stdin: every command that might read stdin gets </dev/null instead.

sha_of() { git rev-parse -q --verify "$1^{commit}" 2>/dev/null; }
# Changes of every kind, untracked files included whatever status.showUntrackedFiles says.
dirty_count() {
  git --no-optional-locks -C "${1:-.}" status --porcelain -z --untracked-files=normal 2>/dev/null |
    tr -cd '\0' | wc -c | tr -d ' '
}
busy() {
  for state in MERGE_HEAD CHERRY_PICK_HEAD REVERT_HEAD rebase-merge rebase-apply; do
    [ -e "$gitdir/$state" ] && { echo "$state"; return 0; }
  done
  return 1
}
# The worktree (this one or another) that has INTO checked out, if any.
into_checked_out_at() {
  git worktree list --porcelain 2>/dev/null |
    awk -v want="branch refs/heads/$into" '/^worktree / { wt = substr($0, 10) } $0 == want { print wt; exit }'
}

facts() {
  fetch=$1
  if [ "$fetch" = 1 ]; then
    git fetch -q -- "$remote" 2>"$tmp/err" </dev/null || fail "git fetch $remote failed: $(tail -n 1 "$tmp/err")"
    say fetched 1
  fi
  say top "$top"
  say head "$(sha_of HEAD)"
  b=$(git symbolic-ref -q --short HEAD) && say branch "$b"
  say dirty "$(dirty_count)"
  state=$(busy) && say busy "$state"
  say from_local "$(sha_of "refs/heads/$from")"
  say into_local "$(sha_of "refs/heads/$into")"
  say into_at "$(into_checked_out_at)"
  git ls-remote -- "$remote" "refs/heads/$from" "refs/heads/$into" >"$tmp/ls" 2>"$tmp/err" </dev/null ||
    { say remote_error "$(tail -n 1 "$tmp/err")"; return 0; }
  rfrom=$(awk -v r="refs/heads/$from" '$2 == r { print $1 }' "$tmp/ls")
  rinto=$(awk -v r="refs/heads/$into" '$2 == r { print $1 }' "$tmp/ls")
  say from_remote "$rfrom"
  say into_remote "$rinto"
  # Already merged: FROM (the local one, or else the remote's) is in the remote's INTO.
  f=$(sha_of "refs/heads/$from") || f=$rfrom
  if [ -n "$f" ] && [ -n "$rinto" ] && git cat-file -e "$rinto^{commit}" 2>/dev/null &&
     git cat-file -e "$f^{commit}" 2>/dev/null && git merge-base --is-ancestor "$f" "$rinto"; then
    say from_merged 1
  fi
  # On INTO: what a fast-forward to a merge of FROM would write over (untracked or ignored files
  # at paths FROM adds), as far as this host knows FROM, so the plan says what the apply would.
  if [ "$b" = "$into" ] && [ "$(dirty_count)" = 0 ]; then
    tip=$(sha_of "refs/heads/$from") || tip=$(sha_of "refs/remotes/$remote/$from") || tip=
    if [ -z "$tip" ] && [ -n "$rfrom" ]; then
      # Not fetched here: its objects into $tmp only (no ref, no FETCH_HEAD, no maintenance),
      # with the repository's as an alternate to read from.
      mkdir "$tmp/objects" &&
        GIT_OBJECT_DIRECTORY=$tmp/objects GIT_ALTERNATE_OBJECT_DIRECTORIES=$(cd "$(git rev-parse --git-path objects)" && pwd) &&
        export GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES &&
        git -c maintenance.auto=false -c gc.auto=0 -c fetch.writeCommitGraph=false \
          fetch -q --no-write-fetch-head --refmap= --no-tags --no-recurse-submodules \
          -- "$remote" "refs/heads/$from" >/dev/null 2>&1 </dev/null && tip=$rfrom
    fi
    if [ -n "$tip" ] && git cat-file -e "$tip^{commit}" 2>/dev/null; then
      in_the_way HEAD "$tip" | head -n 10 | while IFS= read -r p; do say way "$p"; done
    fi
  fi
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

run_check() {
  check=$1 limit=$2
  if command -v timeout >/dev/null 2>&1; then timeout "$limit" sh -c "$check"
  elif command -v perl >/dev/null 2>&1; then perl -e 'alarm shift; exec @ARGV' "$limit" sh -c "$check"
  else sh -c "$check"; fi
}

# Move the local INTO from OLD to NEW, by fast-forward only, without touching anyone's files:
# in the working tree only when it is on INTO and clean; by update-ref when INTO is checked out
# nowhere; otherwise leave it, with a note. Prints local=<what happened>.
update_local_into() {
  new=$1 old=$2
  at=$(into_checked_out_at)
  if [ -z "$old" ]; then
    if [ "$push" = 1 ]; then say local none; return 0; fi
    git update-ref -m "miyabi-ctl merge" "refs/heads/$into" "$new" "" 2>"$tmp/err" ||
      { say note "cannot create the local $into: $(tail -n 1 "$tmp/err")"; return 1; }
    say local created; return 0
  fi
  if [ -z "$at" ]; then
    git update-ref -m "miyabi-ctl merge: fast-forward" "refs/heads/$into" "$new" "$old" 2>"$tmp/err" ||
      { say note "the local $into moved during the merge: not updated ($(tail -n 1 "$tmp/err"))"; return 1; }
    say local updated; return 0
  fi
  if [ "$at" != "$top" ]; then
    say note "the local $into is checked out in $at: not updated (fast-forward it there)"
    return 1
  fi
  if state=$(busy); then
    say note "the working tree is on $into with a $state in progress: $into not fast-forwarded"
    return 1
  fi
  if [ "$(dirty_count)" != 0 ]; then
    say note "the working tree is on $into with uncommitted changes: $into not fast-forwarded (git merge --ff-only $remote/$into there once it is clean)"
    return 1
  fi
  way=$(in_the_way HEAD "$new")
  if [ -n "$way" ]; then
    say note "the fast-forward of $into would write over untracked or ignored files: $(printf '%s\n' "$way" | head -n 10 | tr '\n' ' ')- $into not fast-forwarded (move them away, then git merge --ff-only $remote/$into there)"
    return 1
  fi
  git merge -q --ff-only "$new" >"$tmp/err" 2>&1 </dev/null ||
    { say note "cannot fast-forward $into in the working tree: $(tail -n 1 "$tmp/err")"; return 1; }
  say local fast-forwarded
}

merge() {
  source=$1 check=$2 check_timeout=$3 push=$4 also=${5:-}
  sha_of "$source" >/dev/null || refuse "no such commit: $source"
  rinto=$(sha_of "refs/remotes/$remote/$into") || refuse "$remote has no $into branch"
  linto=$(sha_of "refs/heads/$into")
  # The base is INTO as `git checkout INTO && git pull --ff-only` would leave it: the remote's,
  # or the local one when it holds the remote's and more (those commits are pushed too).
  base=$rinto
  if [ -n "$linto" ] && [ "$linto" != "$rinto" ]; then
    if git merge-base --is-ancestor "$rinto" "$linto"; then base=$linto
    elif ! git merge-base --is-ancestor "$linto" "$rinto"; then
      refuse "the local $into has commits that $remote/$into does not, and the other way round (diverged): reconcile them by hand first"
    fi
  fi
  if [ "$push" = 0 ]; then
    # Without a push the local INTO is the only place the merge can go: it must be movable.
    at=$(into_checked_out_at)
    if [ -n "$at" ] && [ "$at" != "$top" ]; then
      refuse "--no-push keeps the merge on the local $into, but $into is checked out in $at"
    elif [ -n "$at" ] && { busy >/dev/null || [ "$(dirty_count)" != 0 ]; }; then
      refuse "--no-push keeps the merge on the local $into, but the working tree is on $into and not clean"
    fi
  fi
  say into_base "$base"
  if git merge-base --is-ancestor "$source" "$base"; then
    say already_merged "$base"
    say done 1
    exit 0
  fi
  ident
  # A run killed before its cleanup (SIGKILL, a host crash) left its temporary worktree
  # registered: drop those (the host lock says no other merge runs here).
  git worktree list --porcelain | sed -n 's/^worktree //p' | while IFS= read -r old; do
    case $old in */miyabi-merge.*/wt)
      drop_worktree "$old"
      say note "removed the temporary worktree a killed merge left: $old" ;;
    esac
  done
  if [ "$(git config --bool commit.gpgSign 2>/dev/null)" = true ]; then
    say note "the merge commit is not signed: commit.gpgSign is on, and signing could wait for a passphrase nobody types"
  fi
  wt=$tmp/wt
  # No hooks in the temporary worktree (a post-checkout hook could run for ever or ask).
  git -c core.hooksPath=/dev/null worktree add --detach "$wt" "$base" >"$tmp/err" 2>&1 </dev/null ||
    fail "cannot create a temporary worktree: $(tail -n 1 "$tmp/err")"
  if ! git -C "$wt" merge -q --no-ff --no-edit --no-gpg-sign -m "Merge branch '$from' into $into" "$source" \
       >"$tmp/merge.out" 2>&1 </dev/null; then
    git -C "$wt" diff --name-only --diff-filter=U >"$tmp/conflicts" 2>/dev/null
    while IFS= read -r f; do say conflict "$f"; done <"$tmp/conflicts"
    n=$(wc -l <"$tmp/conflicts" | tr -d ' ')
    [ "$n" -gt 0 ] && fail "merging $from into $into conflicts in $n files"
    fail "git merge failed: $(grep -v '^ *$' "$tmp/merge.out" | tail -n 1)"
  fi
  merged=$(git -C "$wt" rev-parse HEAD) || fail "cannot read the merge commit"
  say merged "$merged"
  if [ -n "$check" ]; then
    # In the temporary worktree; $MIYABI_REPO names the host's repository (for its tools).
    # stdin is not the script's: the check must not read it.
    (cd "$wt" && MIYABI_REPO=$top && export MIYABI_REPO && run_check "$check" "$check_timeout") \
      >"$tmp/check.out" 2>&1 </dev/null
    rc=$?
    say check_rc "$rc"
    if [ "$rc" != 0 ]; then
      tail -n 20 "$tmp/check.out" | while IFS= read -r line; do say check_out "$line"; done
      fail "the check failed (exit $rc)"
    fi
  fi
  if [ "$push" = check ]; then
    say done 1
    exit 0
  fi
  if [ "$push" = 1 ]; then
    # The merge commit itself (not HEAD: a check that commits must not push its commits).
    git push -q --porcelain ${also:+--atomic} -- "$remote" "$merged:refs/heads/$into" \
      ${also:+"$source:$also"} >"$tmp/out" 2>"$tmp/err" </dev/null ||
      fail "push of the merge to $remote/$into failed: $(push_error "$tmp/out" "$tmp/err")"
    r=$(git ls-remote -- "$remote" "refs/heads/$into" </dev/null | cut -f1)
    [ "$r" = "$merged" ] || fail "$remote's $into is ${r:-missing} after the push, not $merged"
    if [ -n "$also" ]; then
      r=$(git ls-remote -- "$remote" "$also" </dev/null | awk -v r="$also" '$2 == r { print $1 }')
      [ "$r" = "$source" ] || fail "$remote's $also is ${r:-missing} after the push, not $source"
    fi
    say pushed 1
  fi
  if ! update_local_into "$merged" "$linto" && [ "$push" != 1 ]; then
    fail "not pushed, and the local $into could not take the merge $merged"
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
  git fetch -q -- "$remote" "+refs/heads/$into:refs/remotes/$remote/$into" 2>"$tmp/err" </dev/null ||
    fail "git fetch failed: $(tail -n 1 "$tmp/err")"
  git merge-base --is-ancestor HEAD "$target" 2>/dev/null ||
    refuse "$into has local commits that $remote/$into does not: cannot fast-forward"
  # Git writes over ignored files in a fast-forward; this never does.
  way=$(in_the_way HEAD "$target")
  [ -z "$way" ] ||
    refuse "the fast-forward would write over untracked or ignored files: $(printf '%s\n' "$way" | head -n 10 | tr '\n' ' ')- move them away first"
  git merge -q --ff-only "$target" 2>"$tmp/err" </dev/null ||
    fail "cannot fast-forward $into: $(tail -n 1 "$tmp/err")"
  say after "$(sha_of HEAD)"
  say done 1
}

case $mode in
  facts) facts "$@" ;;
  merge) merge "$@" ;;
  sync) sync "$@" ;;
  *) fail "unknown mode $mode" ;;
esac
