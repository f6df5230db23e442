# miyabi-ctl land (miyabi_ctl/dispatch/landing.py): REPO REMOTE OP ARGS...
#   push BRANCH TIP           push TIP to REMOTE's refs/heads/BRANCH (a fast-forward, or a new
#                             branch: the server refuses anything else) and read it back
#   record RUNDIR KEY=VALUE... write the check's result beside the run's log (check.result),
#                             then the lines after a `--` argument as its output (check.log)
# Prints key=value lines; `error=` and a code on failure.
use_login_path
expand_home "$1"; repo=$expanded
remote=$2 op=$3
shift 3
no_prompts
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
case $op in
push)
  branch=$1 tip=$2
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-land.$$.XXXXXX") || die 3 "mktemp failed"
  trap 'rm -rf "$tmp"' EXIT
  git push -q --porcelain -- "$remote" "$tip:refs/heads/$branch" >"$tmp/out" 2>"$tmp/err" </dev/null ||
    die 4 "push of $branch to $remote failed: $(push_error "$tmp/out" "$tmp/err")"
  r=$(git ls-remote -- "$remote" "refs/heads/$branch" </dev/null |
    awk -v r="refs/heads/$branch" '$2 == r { print $1 }')
  [ "$r" = "$tip" ] || die 5 "$remote's $branch is ${r:-missing} after the push, not $tip"
  echo "pushed=$tip"
  ;;
record)
  rundir=$1
  shift
  [ -d "$rundir" ] || die 3 "no such directory: $rundir"
  : >"$rundir/check.result.new" || die 3 "cannot write in $rundir"
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    printf '%s\n' "$1" >>"$rundir/check.result.new"
    shift
  done
  [ $# -gt 0 ] && shift
  : >"$rundir/check.log"
  for line do printf '%s\n' "$line" >>"$rundir/check.log"; done
  mv "$rundir/check.result.new" "$rundir/check.result" || die 3 "cannot write $rundir/check.result"
  echo "recorded=1"
  ;;
*)
  die 2 "unknown operation: $op"
  ;;
esac
