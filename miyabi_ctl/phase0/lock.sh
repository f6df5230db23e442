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
    # Written whole under another name, then linked into place (atomic, fails if it exists): a
    # lock is never an empty file, and a write that fails (a full disk) says so. Such a name a
    # killed acquire left (its process gone) is removed.
    for f in "$lock".[0-9]*; do
      [ -f "$f" ] && [ -O "$f" ] && ! kill -0 "${f##*.}" 2>/dev/null && rm -f "$f"
    done
    if ! err=$({ printf '%s\n' "$owner" >"$lock.$$"; } 2>&1); then
      rm -f "$lock.$$"
      echo "error=cannot write $lock.$$: $(no_space_on "$dir")${err:-write failed}"
      exit 3
    fi
    if ln "$lock.$$" "$lock" 2>/dev/null ||
       # A file system without hard links: an exclusive create instead.
       { [ ! -e "$lock" ] && (set -C; cat "$lock.$$" >"$lock") 2>/dev/null; }; then
      rm -f "$lock.$$"; echo acquired; exit 0
    fi
    rm -f "$lock.$$"
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
