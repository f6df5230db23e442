# miyabi-ctl claims (miyabi_ctl/dispatch/claims.py): REPO REMOTE OP ...
#   read                    fetch refs/miyabi/claims/* of REMOTE (one fetch), print each claim
#   swap ISSUE OLD MESSAGE  compare-and-swap refs/miyabi/claims/ISSUE on REMOTE: it must hold OLD
#                           ('' = must be absent); it then holds a new claim commit whose message
#                           is MESSAGE ('' = the ref is deleted). On failure, the claim it holds now.
# Each claim is printed as `claim=ISSUE`, `oid=OBJECT`, then its message lines prefixed `m.`
# (so no line of a message can pass for a record of its own). The claims are fetched into a
# namespace of this run's own (refs/miyabi-read/PID), deleted before the script ends: two reads at
# once never contend for a ref lock, and the host's clone keeps no claim refs.
use_login_path
expand_home "$1"; repo=$expanded
remote=$2 op=$3
ns=refs/miyabi/claims
GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=true SSH_ASKPASS=true
export GIT_TERMINAL_PROMPT GIT_ASKPASS SSH_ASKPASS
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
git rev-parse --git-dir >/dev/null 2>&1 || die 3 "not a git repository: $repo"

tmp=refs/miyabi-read/$$

# Fetch the claims ($1: all of them, or one issue's) into $tmp, print them, drop $tmp.
fetch_and_show() {
  src=$ns/$1 dst=$tmp/$1
  [ -n "$1" ] || { src=$ns/* dst=$tmp/*; }
  fetched=$(git fetch -q --no-tags -- "$remote" "+$src:$dst" 2>&1)
  status=$?
  if [ $status -ne 0 ] && [ -n "$1" ] &&
     printf '%s\n' "$fetched" | grep -q "couldn't find remote ref"; then
    status=0  # that one claim is absent: nothing to show
  fi
  if [ $status -eq 0 ]; then
    git for-each-ref --format='%(objectname) %(refname)' "$tmp" | while read -r oid ref; do
      echo "claim=${ref#"$tmp/"}"
      echo "oid=$oid"
      git cat-file -p "$oid" 2>/dev/null | sed -e '1,/^$/d' -e 's/^/m./'
    done
  fi
  git for-each-ref --format='delete %(refname)' "$tmp" | git update-ref --stdin
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
