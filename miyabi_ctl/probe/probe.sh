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
if read -r name 2>/dev/null </proc/sys/kernel/hostname; then
  echo "hostname=$name"
else
  echo "hostname=$(hostname 2>/dev/null || uname -n)"
fi
if read -r ostype 2>/dev/null </proc/sys/kernel/ostype &&
   read -r osrelease 2>/dev/null </proc/sys/kernel/osrelease; then
  echo "os=$ostype $osrelease"
else
  ostype=$(uname -s)
  echo "os=$ostype $(uname -r)"
fi
now=$(date +%s)
echo "now=$now"
# Uptime and load: /proc on Linux, sysctl on macOS; where both fail (Termux: SELinux denies
# /proc/uptime and /proc/loadavg to apps) `uptime`, which reads sysinfo(2), is asked instead. A
# figure none of them gives is left out, with the reason (`why_*=`), never guessed.
uptime_s= load=
if read -r up _ 2>/dev/null </proc/uptime; then
  uptime_s=${up%.*}
  echo "uptime_f=$up"
elif boot=$(sysctl -n kern.boottime 2>/dev/null); then
  # `{ sec = 1788963068, usec = 514770 } Wed Sep  9 23:11:08 2026`
  boot=${boot#*"sec = "}
  boot=${boot%%,*}
  case $boot in ""|*[!0-9]*) ;; *) uptime_s=$((now - boot)) ;; esac
fi
if read -r l1 l5 l15 _ 2>/dev/null </proc/loadavg; then
  load="$l1 $l5 $l15"
elif l=$(sysctl -n vm.loadavg 2>/dev/null); then
  # `{ 2.05 1.80 1.69 }`
  set -f
  set -- $l
  set +f
  [ "$1" = "{" ] && [ "$5" = "}" ] && load="$2 $3 $4"
fi
[ -n "$uptime_s" ] && echo "uptime_s=$uptime_s"
[ -n "$load" ] && echo "load=$load"
if [ -z "$uptime_s" ] || [ -z "$load" ]; then
  for f in /proc/uptime /proc/loadavg; do
    if [ -e "$f" ] && [ ! -r "$f" ]; then echo "denied=$f"; fi
  done
  if have uptime; then
    echo "uptime_text=$(uptime 2>/dev/null | tail -n 1)"
    # procps and toybox: the boot time, to the second (busybox and macOS have no -s).
    [ -n "$uptime_s" ] || echo "boot_text=$(uptime -s 2>/dev/null) $(date +%z)"
  else
    echo "denied=uptime: not installed"
  fi
fi
# Online CPUs the way getconf _NPROCESSORS_ONLN counts them on Linux: ranges like "0-3,6".
cpus=
if read -r online 2>/dev/null </sys/devices/system/cpu/online; then
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
[ -n "$cpus" ] || cpus=$(sysctl -n hw.ncpu 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)
echo "cpus=$cpus"
if [ -r /proc/meminfo ]; then
  while read -r key kb _; do
    case $key in
      MemTotal:) echo "mem_total=$((kb * 1024))" ;;
      MemAvailable:) echo "mem_available=$((kb * 1024))" ;;
    esac
  done </proc/meminfo
elif have vm_stat; then
  echo "mem_total=$(sysctl -n hw.memsize 2>/dev/null)"
  # What macOS could hand out without paging: free + inactive + speculative + purgeable pages,
  # at the page size vm_stat states in its header.
  vm_stat 2>/dev/null | awk '
    NR == 1 && match($0, /page size of [0-9]+ bytes/) { ps = substr($0, RSTART + 13, RLENGTH - 19) }
    /^Pages (free|inactive|speculative|purgeable):/ { n += $NF + 0 }
    END { if (ps) print "mem_available=" n * ps }'
fi

# Agent sessions: every process line holding one of the keywords, or whose command line is a
# bare version (Claude Code >= 2.1 renames itself to `2.1.37`); the controller decides exactly
# which are sessions (a grep, an editor on ~/.claude, a zombie, an unrelated `1.2.3` are not).
# procps and macOS take -axo; toybox (Android) refuses -x: -A -o; busybox ignores -A and may be
# built without etime (Debian's is): `-` stands in, and the age comes from /proc (@@proc t).
echo "@@ps"
matches=$({ ps -axo pid=,ppid=,stat=,etime=,args= 2>/dev/null ||
            ps -A -o pid=,ppid=,stat=,etime=,args= 2>/dev/null ||
            ps -o pid=,ppid=,stat=,args= 2>/dev/null | sed 's/^ *[0-9][0-9]* *[0-9][0-9]* *[^ ]*/& -/'; } |
  MIYABI_KW=$keywords awk '
  BEGIN { n = split(ENVIRON["MIYABI_KW"], kw, "\n") }
  $5 ~ /^[0-9]+\.[0-9]+(\.[0-9]+)*([-+][0-9A-Za-z.]+)?$/ { print; next }
  { for (i = 1; i <= n; i++) if (kw[i] != "" && index($0, kw[i])) { print; next } }')
[ -n "$matches" ] && printf '%s\n' "$matches"
# What else the probe can read about each of them (docs/platforms.md), as `p<pid>` then one
# letter per fact: o ours (1: the login's own process), n cwd, e executable, l launcher ($_ of its
# environment), t start (clock ticks after boot), c CPU ticks used, y controlling terminal (0 = none).
# What each session is doing (docs/platforms.md), for its distinct working directories: the branch
# checked out there (HEAD read like git does, without git), the newest write to Claude Code's
# transcripts of that directory (~/.claude/projects/<cwd with every non-alphanumeric as ->/) and to
# Codex's rollouts of the last week whose first line names it. Two or three processes in all.
head_of() {
  d=$1
  while [ -n "$d" ]; do
    if [ -f "$d/.git/HEAD" ]; then
      read -r h <"$d/.git/HEAD" && echo "h$h"
      return 0
    elif [ -f "$d/.git" ]; then
      read -r g <"$d/.git"
      g=${g#gitdir: }
      case $g in /*) ;; *) g=$d/$g ;; esac
      [ -f "$g/HEAD" ] && read -r h <"$g/HEAD" && echo "h$h"
      return 0
    fi
    [ "$d" = / ] && return 0
    d=${d%/*}
    [ -n "$d" ] || d=/
  done
}
activity() {
  echo "@@activity"
  list=$1
  [ -n "$list" ] || return 0
  set --
  projects=${CLAUDE_CONFIG_DIR:-$HOME/.claude}/projects
  tab=$(printf '\t')
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    slug=${line%%"$tab"*} dir=${line#*"$tab"}
    echo "d$dir"
    head_of "$dir"
    newest=
    for f in "$projects/$slug"/*.jsonl; do
      [ -f "$f" ] || continue
      if [ -z "$newest" ] || [ "$f" -nt "$newest" ]; then newest=$f; fi
    done
    [ -n "$newest" ] && set -- "$@" "$newest"
  done <<DIRS
$(printf '%s\n' "$list" | awk 'NF && !seen[$0]++ { s = $0; gsub(/[^A-Za-z0-9]/, "-", s); print s "\t" $0 }')
DIRS
  case $matches in
    *codex*)
      nl='
'
      rollouts=$(find "${CODEX_HOME:-$HOME/.codex}/sessions" -name 'rollout-*.jsonl' -mtime -7 2>/dev/null)
      while IFS= read -r f; do
        [ -n "$f" ] && read -r first 2>/dev/null <"$f" || continue
        case $first in *'"cwd":"'*) ;; *) continue ;; esac
        c=${first#*'"cwd":"'}
        c=${c%%'"'*}
        case "$nl$list$nl" in
          *"$nl$c$nl"*) echo "k$f"; echo "w$c"; set -- "$@" "$f" ;;
        esac
      done <<FILES
$rollouts
FILES
      ;;
  esac
  [ $# -gt 0 ] || return 0
  { stat -c '%Y %n' "$@" 2>/dev/null || stat -f '%m %N' "$@" 2>/dev/null; } | sed 's/^/m/'
}

# What else the probe can read about each of them (docs/platforms.md), as `p<pid>` then one
# letter per fact: o ours (1: the login's own process), n cwd, e executable, l launcher ($_ of its
# environment), t start (clock ticks after boot), c CPU ticks used, y controlling terminal (0 =
# none), g grandparent.
echo "@@proc"
if [ -n "$matches" ]; then
  if [ -r /proc/self/stat ]; then
    # In a subshell, so the probe's own directory and arguments stay put.
    (
      cwds= titled=
      while read -r pid _ _ _ argv0 _; do
        echo "p$pid"
        if [ -O "/proc/$pid" ]; then echo "o1"; else echo "o0"; fi
        if cd -P "/proc/$pid/cwd" 2>/dev/null; then
          echo "n$PWD"
          cwds="$cwds$PWD
"
        fi
        if read -r st 2>/dev/null <"/proc/$pid/stat"; then
          set -f
          set -- ${st##*") "}
          set +f
          # fields 4 ppid, 7 tty_nr, 14 utime, 15 stime, 22 starttime of proc(5), after `(comm) `
          echo "y$5"
          echo "c$((${12} + ${13}))"
          echo "t${20}"
          if read -r st 2>/dev/null <"/proc/$2/stat"; then
            set -f
            set -- ${st##*") "}
            set +f
            echo "g$2"
          fi
        fi
        case $argv0 in [0-9]*.[0-9]*) titled="$titled /proc/$pid/exe" ;; esac
      done <<PIDS
$matches
PIDS
      # A title rewritten to a bare version: what really runs, for all of them in one `ls -l`
      # (`… /proc/7/exe -> /root/.local/share/claude/versions/2.1.37`); for an interpreter also
      # the path its shell started ($_), which names the npm bin link.
      if [ -n "$titled" ]; then
        # shellcheck disable=SC2086
        ls -l $titled 2>/dev/null | while IFS= read -r line; do
          link=${line#* /proc/}
          pid=${link%%/*} exe=${link#* -> }
          [ "$exe" != "$link" ] || continue
          echo "p$pid"
          echo "e$exe"
          case ${exe##*/} in
            node|nodejs|bun|deno)
              launcher=$(tr '\000' '\n' 2>/dev/null <"/proc/$pid/environ" | sed -n 's/^_=//p')
              [ -n "$launcher" ] && echo "l$launcher" ;;
          esac
        done
      fi
      activity "$cwds"
    )
  else
    pids=$(printf '%s\n' "$matches" | awk 'NF { printf "%s%s", sep, $1; sep = "," }')
    # macOS: what runs under a title rewritten to a bare version is the first file lsof lists as
    # its program text (memory regions in address order: the executable's own come first).
    # `ps -o comm` cannot tell: it reads argv[0] as the process's memory holds it now, the title.
    # Only when there is such a title: one more process, and none on a host without one.
    titled=$(printf '%s\n' "$matches" |
      awk '$5 ~ /^[0-9]+\.[0-9]+/ { printf "%s%s", sep, $1; sep = "," }')
    if [ -n "$titled" ] && have lsof; then
      lsof -a -d txt -Fn -p "$titled" 2>/dev/null |
        awk '/^p/ { pid = substr($0, 2); seen = 0; next }
             /^n/ && !seen { print "p" pid; print "e" substr($0, 2); seen = 1 }'
    fi
    cwds=
    if have lsof; then
      found=$(lsof -a -d cwd -Fn -p "$pids" 2>/dev/null | grep -E '^[pn]')
      [ -n "$found" ] && printf '%s\n' "$found"
      cwds=$(printf '%s\n' "$found" | sed -n 's/^n//p')
    fi
    activity "$cwds"
  fi
  # tmux panes and whether a client is attached to their session.
  if have tmux; then
    echo "@@tmux"
    tmux list-panes -a -F '#{pane_pid} #{session_attached}' 2>/dev/null
  fi
fi

echo "@@repo"
echo "path=$repo"
if ! have git; then
  echo "error=git is not installed"
elif [ "$ostype" = Darwin ] && ! shim=$(git --version 2>&1); then
  # /usr/bin/git on a Mac without the command line tools is only xcrun's shim.
  echo "error=git is only the Xcode command line tools shim, and the tools are not installed" \
       "(run xcode-select --install on the Mac): $(printf '%s\n' "$shim" | head -n 1)"
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
  # Each linked worktree: w name, p path, h HEAD (as its file holds it), l lock reason, x its
  # directory is gone, u uncommitted files (porcelain lines: names with newlines are quoted), e
  # status failed (124: timed out). Read from its admin directory; one bounded status each.
  if [ "$worktrees" -gt 1 ]; then
    echo "@@worktrees"
    for dir in "$common"/worktrees/*/; do
      dir=${dir%/}
      [ -f "$dir/gitdir" ] || continue
      echo "w${dir##*/}"
      read -r wt <"$dir/gitdir"
      case $wt in /*) ;; *) wt=$dir/$wt ;; esac
      wt=${wt%/.git}
      echo "p$wt"
      read -r h 2>/dev/null <"$dir/HEAD" && echo "h$h"
      if [ -f "$dir/locked" ]; then
        reason=
        while IFS= read -r line; do reason="$reason${reason:+ }$line"; done <"$dir/locked"
        echo "l$reason"
      fi
      [ -d "$wt" ] || { echo "x"; continue; }
      if have timeout; then
        out=$(timeout "$git_timeout" git -C "$wt" --no-optional-locks status --porcelain --untracked-files=all 2>/dev/null)
      else
        out=$(git -C "$wt" --no-optional-locks status --porcelain --untracked-files=all 2>/dev/null)
      fi
      rc=$?
      if [ "$rc" != 0 ]; then echo "e$rc"; continue; fi
      n=0
      if [ -n "$out" ]; then
        while IFS= read -r _; do n=$((n + 1)); done <<LINES
$out
LINES
      fi
      echo "u$n"
    done
  fi
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
