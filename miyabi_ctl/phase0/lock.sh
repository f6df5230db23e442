# miyabi-ctl host lock (miyabi_ctl/phase0/locks.py): REPO MODE OWNER, MODE acquire|release|break|beat.
# One apply at a time per host: an exclusive file in the repository's common git directory.
# Prints `acquired`, or `age=` and `held=` and exits 75 when another owner holds it.
expand_home "$1"; repo=$expanded
mode=$2 owner=$3
cd "$repo" 2>/dev/null || { echo "error=no such directory: $repo"; exit 3; }
dir=$(git rev-parse --git-common-dir 2>/dev/null) || { echo "error=not a git repository: $repo"; exit 3; }
lock=$dir/miyabi-ctl.lock
case $mode in
  acquire)
    if (set -C; printf '%s\n' "$owner" >"$lock") 2>/dev/null; then echo acquired; exit 0; fi
    now=$(date +%s)
    mtime=$(stat -c %Y "$lock" 2>/dev/null || stat -f %m "$lock" 2>/dev/null || echo "$now")
    echo "age=$((now - mtime))"
    echo "held=$(cat "$lock" 2>/dev/null)"
    exit 75 ;;
  release|break)
    [ "$(cat "$lock" 2>/dev/null)" = "$owner" ] && rm -f "$lock"
    exit 0 ;;
  beat)
    # The holder is alive: a fresh mtime keeps a long apply's lock from looking stale.
    [ "$(cat "$lock" 2>/dev/null)" = "$owner" ] && touch "$lock"
    exit 0 ;;
esac
