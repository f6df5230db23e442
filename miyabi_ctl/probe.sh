# miyabi-ctl probe, format 1. Sent once per host on stdin (miyabi_ctl/remote.py) with the
# arguments REPO REMOTE MAIN KEYWORDS GIT_TIMEOUT; prints one sectioned document that
# miyabi_ctl/probe.py parses. POSIX sh only, so it runs on Linux, macOS and Termux. It never writes: git runs with --no-optional-locks so a probe
# cannot take the index lock from an agent working in the same tree.
LC_ALL=C
export LC_ALL
repo=$1 remote=$2 main=$3 keywords=$4 git_timeout=$5
case $repo in
  "~") repo=$HOME ;;
  "~/"*) repo=$HOME/${repo#"~/"} ;;
esac
have() { command -v "$1" >/dev/null 2>&1; }

echo "@@miyabi-probe 1"
echo "@@system"
echo "hostname=$(hostname 2>/dev/null || uname -n)"
echo "os=$(uname -s) $(uname -r)"
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
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || nproc 2>/dev/null)
echo "cpus=$cpus"
if [ -r /proc/meminfo ]; then
  awk '/^MemTotal:/ {print "mem_total=" $2 * 1024} /^MemAvailable:/ {print "mem_available=" $2 * 1024}' /proc/meminfo
elif have sysctl; then
  echo "mem_total=$(sysctl -n hw.memsize 2>/dev/null)"
  vm_stat 2>/dev/null | awk -v ps="$(sysctl -n hw.pagesize 2>/dev/null)" '
    /Pages (free|inactive|speculative|purgeable)/ { n += $NF + 0 }
    END { if (ps) print "mem_available=" n * ps }'
fi

# Agent sessions: every process line holding one of the keywords; the controller decides exactly
# which are sessions (a grep, an editor on ~/.claude, a zombie are not).
echo "@@ps"
procs=$(ps -axo pid=,ppid=,stat=,etime=,args= 2>/dev/null || ps -A -o pid=,ppid=,stat=,etime=,args= 2>/dev/null)
matches=$(printf '%s\n' "$procs" | MIYABI_KW=$keywords awk '
  BEGIN { n = split(ENVIRON["MIYABI_KW"], kw, "\n") }
  { for (i = 1; i <= n; i++) if (kw[i] != "" && index($0, kw[i])) { print; next } }')
[ -n "$matches" ] && printf '%s\n' "$matches"
echo "@@cwd"
pids=$(printf '%s\n' "$matches" | awk 'NF { printf "%s%s", sep, $1; sep = "," }')
if [ -n "$pids" ]; then
  if [ -d /proc/self ]; then
    for pid in $(echo "$pids" | tr ',' ' '); do
      cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) && printf 'p%s\nn%s\n' "$pid" "$cwd"
    done
  elif have lsof; then
    lsof -a -d cwd -Fn -p "$pids" 2>/dev/null | grep -E '^[pn]'
  fi
fi

echo "@@repo"
echo "path=$repo"
if ! have git; then
  echo "error=git is not installed"
elif [ ! -d "$repo" ]; then
  echo "error=no such directory: $repo"
elif ! cd "$repo" 2>/dev/null || ! git rev-parse --git-dir >/dev/null 2>&1; then
  echo "error=not a git repository: $repo"
else
  git --no-optional-locks log -1 --format='head=%H%nhead_time=%ct%nhead_subject=%s' 2>/dev/null
  if git rev-parse -q --verify "refs/remotes/$remote/$main" >/dev/null 2>&1; then
    echo "main_ab=$(git rev-list --left-right --count "HEAD...refs/remotes/$remote/$main" 2>/dev/null)"
  fi
  echo "stashes=$(git stash list 2>/dev/null | wc -l | tr -d ' ')"
  echo "worktrees=$(git worktree list --porcelain 2>/dev/null | grep -c '^worktree ')"
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
