# miyabi-ctl probe, format 1. Sent once per host on stdin (miyabi_ctl/remote/runner.py) with the
# arguments REPO REMOTE MAIN KEYWORDS GIT_TIMEOUT; prints one sectioned document that
# miyabi_ctl/probe/parse.py parses. POSIX sh only, so it runs on Linux, macOS and Termux. It never writes: git runs with --no-optional-locks so a probe
# cannot take the index lock from an agent working in the same tree.
# It runs on every host at every refresh, so it starts as few processes as it can: on Linux the
# system values come from /proc and /sys through shell builtins (docs/performance.md).
LC_ALL=C
export LC_ALL
repo=$1 remote=$2 main=$3 keywords=$4 git_timeout=$5
expand_home "$repo"; repo=$expanded
have() { command -v "$1" >/dev/null 2>&1; }
# Sets $common; fails outside a repository. A plain clone keeps it in ./.git; anything else (a
# linked worktree, a subdirectory) asks git.
find_common_dir() {
  if [ -f .git/HEAD ]; then common=.git; else common=$(git rev-parse --git-common-dir 2>/dev/null); fi
}

echo "@@miyabi-probe 1"
echo "@@system"
if read -r name </proc/sys/kernel/hostname 2>/dev/null; then
  echo "hostname=$name"
else
  echo "hostname=$(hostname 2>/dev/null || uname -n)"
fi
if read -r ostype </proc/sys/kernel/ostype 2>/dev/null &&
   read -r osrelease </proc/sys/kernel/osrelease 2>/dev/null; then
  echo "os=$ostype $osrelease"
else
  echo "os=$(uname -s) $(uname -r)"
fi
now=$(date +%s)
echo "now=$now"
if [ -r /proc/uptime ]; then
  read -r up _ </proc/uptime && echo "uptime_s=${up%.*}"
else
  boot=$(sysctl -n kern.boottime 2>/dev/null | sed -n 's/.*sec = \([0-9]*\).*/\1/p')
  [ -n "$boot" ] && echo "uptime_s=$((now - boot))"
fi
if [ -r /proc/loadavg ] && read -r l1 l5 l15 _ </proc/loadavg 2>/dev/null; then
  echo "load=$l1 $l5 $l15"
else
  l=$(sysctl -n vm.loadavg 2>/dev/null | tr -d '{}')
  [ -n "$l" ] && echo "load=$(echo $l)"
fi
# Online CPUs the way getconf _NPROCESSORS_ONLN counts them on Linux: ranges like "0-3,6".
cpus=
if read -r online </sys/devices/system/cpu/online 2>/dev/null; then
  cpus=0
  IFS=,
  for range in $online; do
    case $range in
      *-*) cpus=$((cpus + ${range#*-} - ${range%-*} + 1)) ;;
      *) cpus=$((cpus + 1)) ;;
    esac
  done
  unset IFS
fi
[ -n "$cpus" ] || cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || nproc 2>/dev/null)
echo "cpus=$cpus"
if [ -r /proc/meminfo ]; then
  while read -r key kb _; do
    case $key in
      MemTotal:) echo "mem_total=$((kb * 1024))" ;;
      MemAvailable:) echo "mem_available=$((kb * 1024))" ;;
    esac
  done </proc/meminfo
elif have sysctl; then
  echo "mem_total=$(sysctl -n hw.memsize 2>/dev/null)"
  vm_stat 2>/dev/null | awk -v ps="$(sysctl -n hw.pagesize 2>/dev/null)" '
    /Pages (free|inactive|speculative|purgeable)/ { n += $NF + 0 }
    END { if (ps) print "mem_available=" n * ps }'
fi

# Agent sessions: every process line holding one of the keywords; the controller decides exactly
# which are sessions (a grep, an editor on ~/.claude, a zombie are not).
echo "@@ps"
matches=$({ ps -axo pid=,ppid=,stat=,etime=,args= 2>/dev/null ||
            ps -A -o pid=,ppid=,stat=,etime=,args= 2>/dev/null; } |
  MIYABI_KW=$keywords awk '
  BEGIN { n = split(ENVIRON["MIYABI_KW"], kw, "\n") }
  { for (i = 1; i <= n; i++) if (kw[i] != "" && index($0, kw[i])) { print; next } }')
[ -n "$matches" ] && printf '%s\n' "$matches"
echo "@@cwd"
if [ -n "$matches" ]; then
  if [ -d /proc/self ]; then
    # Step into each /proc/PID/cwd and print where that is: what readlink would say, without a
    # process per session. In a subshell, so the probe's own directory stays put.
    (
      while read -r pid _; do
        cd -P "/proc/$pid/cwd" 2>/dev/null && printf 'p%s\nn' "$pid" && pwd -P
      done <<PIDS
$matches
PIDS
    )
  elif have lsof; then
    pids=$(printf '%s\n' "$matches" | awk 'NF { printf "%s%s", sep, $1; sep = "," }')
    lsof -a -d cwd -Fn -p "$pids" 2>/dev/null | grep -E '^[pn]'
  fi
fi

echo "@@repo"
echo "path=$repo"
if ! have git; then
  echo "error=git is not installed"
elif [ ! -d "$repo" ]; then
  echo "error=no such directory: $repo"
elif ! cd "$repo" 2>/dev/null || ! find_common_dir; then
  echo "error=not a git repository: $repo"
else
  git --no-optional-locks log -1 --format='head=%H%nhead_time=%ct%nhead_subject=%s' 2>/dev/null
  # Fails (and prints nothing) when the remote's main is not fetched: no figure, not a wrong one.
  if ab=$(git rev-list --left-right --count "HEAD...refs/remotes/$remote/$main" -- 2>/dev/null); then
    echo "main_ab=$ab"
  fi
  # Stashes are the entries of refs/stash's reflog: count its lines rather than start git (a
  # reftable repository keeps no such file, so git counts there).
  stashes=0
  if [ -f "$common/logs/refs/stash" ]; then
    while read -r _; do stashes=$((stashes + 1)); done <"$common/logs/refs/stash"
  elif [ -d "$common/reftable" ]; then
    stashes=$(git rev-list --walk-reflogs --count refs/stash -- 2>/dev/null || echo 0)
  fi
  echo "stashes=$stashes"
  # The main worktree plus one metadata directory per linked one: what `git worktree list` counts.
  worktrees=1
  for dir in "$common"/worktrees/*/; do
    [ -d "$dir" ] && worktrees=$((worktrees + 1))
  done
  echo "worktrees=$worktrees"
  echo "@@status"
  # A slow `git status` (huge tree, cold cache) is bounded, and reported as such.
  if have timeout; then
    timeout "$git_timeout" git --no-optional-locks status --porcelain=v2 --branch --untracked-files=all 2>/dev/null
  elif have perl; then
    perl -e 'alarm shift; exec @ARGV' "$git_timeout" git --no-optional-locks status --porcelain=v2 --branch --untracked-files=all 2>/dev/null
  else
    git --no-optional-locks status --porcelain=v2 --branch --untracked-files=all 2>/dev/null
  fi
  echo "@@status_rc $?"
fi
echo "@@end"
