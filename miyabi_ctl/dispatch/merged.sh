# miyabi-ctl merged (miyabi_ctl/dispatch/merged.py): REPO REMOTE MAIN ISSUE... Which of these issues'
# branches (REMOTE's refs/heads/issue/N) are merged into REMOTE's MAIN: one ls-remote, and a fetch
# of MAIN into a git dir of this run's own (make_scratch: nothing of the repository is written, not
# even an mtime) when this clone lacks its commit. A branch counts when its tip is in MAIN's
# history but not on MAIN's first-parent line: it was merged as a branch (as `land` and a
# `git merge --no-ff` do), not merely created from an old MAIN without a commit of its own.
# Prints `main=SHA`, then `merged=ISSUE TIP` for each.
use_login_path
expand_home "$1"; repo=$expanded
remote=$2 main=$3
shift 3
no_prompts
cd "$repo" 2>/dev/null || die 3 "no such directory: $repo"
common_dir
scratch=
tmp=$(mktemp "${TMPDIR:-/tmp}/miyabi-merged.$$.XXXXXX") || die 3 "mktemp failed"
trap 'rm -f "$tmp" "$tmp.fp"; rm -rf "$scratch"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM
# git where MAIN's commit can be read: the repository's, or the scratch dir that fetched it
rgit() { if [ -n "$scratch" ]; then scratch_git "$@"; else git "$@"; fi; }
git ls-remote -- "$remote" "refs/heads/$main" 'refs/heads/issue/*' >"$tmp" 2>"$tmp.fp" </dev/null ||
  die 4 "cannot reach $remote: $(tail -n 1 "$tmp.fp")"
head=$(awk -v r="refs/heads/$main" '$2 == r { print $1 }' "$tmp")
# No main on the remote (yet): nothing is merged into it.
[ -n "$head" ] || { echo "main="; exit 0; }
if ! git cat-file -e "$head^{commit}" 2>/dev/null; then
  make_scratch
  scratch_git fetch -q --no-tags --no-recurse-submodules --refmap= -- "$remote" \
    "+refs/heads/$main:refs/worktree/miyabi-read/main" 2>"$tmp.fp" </dev/null ||
    die 4 "cannot fetch $remote's $main: $(tail -n 1 "$tmp.fp")"
fi
echo "main=$head"
rgit rev-list --first-parent "$head" >"$tmp.fp" 2>/dev/null
for issue do
  tip=$(awk -v r="refs/heads/issue/$issue" '$2 == r { print $1 }' "$tmp")
  [ -n "$tip" ] || continue
  rgit cat-file -e "$tip^{commit}" 2>/dev/null || continue
  rgit merge-base --is-ancestor "$tip" "$head" 2>/dev/null || continue
  grep -qx "$tip" "$tmp.fp" && continue
  echo "merged=$issue $tip"
done
true
