# miyabi-ctl claims (miyabi_ctl/dispatch/claims.py): REPO REMOTE OP ...
#   read                    fetch refs/miyabi/claims/* of REMOTE (one fetch), print each claim
#   swap ISSUE OLD MESSAGE  compare-and-swap refs/miyabi/claims/ISSUE on REMOTE: it must hold OLD
#                           ('' = must be absent); it then holds a new claim commit whose message
#                           is MESSAGE ('' = the ref is deleted). On failure, the claim it holds now.
# Each claim is printed as `claim=ISSUE`, `oid=OBJECT`, then its message lines prefixed `m.`
# (so no line of a message can pass for a record of its own).
#
# A read changes nothing in the host's repository, not even an mtime: the fetch runs in a git
# directory of this run's own (a temporary linked-worktree git dir whose `commondir` is the
# repository's, so the remote, its URL and credentials are the repository's own config) with an
# object directory of its own (the repository's objects as alternates). The claims land on
# refs/worktree/, which live in that git dir, and so does FETCH_HEAD; all of it is deleted when
# the script ends. The repository's FETCH_HEAD, refs, packed-refs and loose objects (whose mtimes
# a fetch would freshen) are never written, and two reads at once share nothing.
use_login_path
expand_home "$1"; repo=$expanded
remote=$2 op=$3
ns=refs/miyabi/claims
no_prompts
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
common_dir

scratch=
trap 'rm -rf "$scratch"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
tmp=refs/worktree/miyabi-read

# Fetch the claims ($1: all of them, or one issue's) into $tmp, print them. --refmap= keeps a
# remote.*.fetch refspec that would also match claims from updating the repository's refs.
fetch_and_show() {
  make_scratch
  src=$ns/$1 dst=$tmp/$1
  [ -n "$1" ] || { src=$ns/* dst=$tmp/*; }
  fetched=$(scratch_git fetch -q --no-tags --no-recurse-submodules --refmap= -- "$remote" \
    "+$src:$dst" 2>&1)
  status=$?
  if [ $status -ne 0 ] && [ -n "$1" ] &&
     printf '%s\n' "$fetched" | grep -q "couldn't find remote ref"; then
    status=0  # that one claim is absent: nothing to show
  fi
  if [ $status -eq 0 ]; then
    scratch_git for-each-ref --format='%(objectname) %(refname)' "$tmp" | while read -r oid ref; do
      echo "claim=${ref#"$tmp/"}"
      echo "oid=$oid"
      scratch_git cat-file -p "$oid" 2>/dev/null | sed -e '1,/^$/d' -e 's/^/m./'
    done
  fi
  return $status
}

# git's own reason out of its output: the first fatal:/error: line, else the last line.
reason_of() {
  r=$(printf '%s\n' "$1" | grep -E '^(fatal|error): ' | head -n 1)
  [ -n "$r" ] || r=$(printf '%s\n' "$1" | sed -e '/^[[:space:]]*$/d' | tail -n 1)
  printf '%s' "$r"
}

case $op in
read)
  fetch_and_show "" || die 4 "cannot read the claims on $remote: $(reason_of "$fetched")"
  echo "read=ok"
  ;;
swap)
  issue=$4 old=$5 message=$6
  ref=$ns/$issue
  if [ -n "$message" ]; then
    tree=$(git hash-object -t tree -w /dev/null) || die 5 "cannot write the empty tree"
    new=$(GIT_AUTHOR_NAME=miyabi-ctl GIT_AUTHOR_EMAIL=miyabi-ctl@invalid \
      GIT_COMMITTER_NAME=miyabi-ctl GIT_COMMITTER_EMAIL=miyabi-ctl@invalid \
      git commit-tree -m "$message" "$tree") || die 5 "cannot write the claim commit"
    spec=$new:$ref
  else
    new= spec=:$ref
  fi
  if out=$(git push --porcelain --force-with-lease="$ref:$old" -- "$remote" "$spec" 2>&1); then
    echo "swap=ok"
    echo "oid=$new"
    exit 0
  fi
  # Lost the swap, or could not ask: what does the remote hold now?
  reason=$(printf '%s\n' "$out" | sed -n 's/^!.*\[/[/p' | tail -n 1)
  [ -n "$reason" ] || reason=$(reason_of "$out")
  echo "push_error=$reason"
  echo "swap=conflict"
  fetch_and_show "$issue" || die 4 "cannot reach $remote: $(reason_of "$fetched")"
  ;;
*)
  die 2 "unknown operation: $op"
  ;;
esac
