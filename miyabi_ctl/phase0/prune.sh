# miyabi-ctl prune, sent on stdin (miyabi_ctl/remote/runner.py) with the arguments `MODE ...`.
# POSIX sh: Linux (procps), macOS (BSD ps, no /proc), Termux (toybox ps, hidepid /proc), busybox.
#
#   ident PID...                    print `ident=PID START EXE` for each live process
#   kill GRACE PID START EXE [PID START EXE]...
#                                   SIGTERM each session and its descendants, wait up to GRACE
#                                   seconds, SIGKILL survivors; a pid whose start time or
#                                   executable changed is never signalled (`mismatch`)
#
# START never holds a space or a colon (it is kept in `pid:start` words below): the kernel's
# clock ticks from /proc on Linux, `ps -o lstart` with both turned into `_` elsewhere (macOS).
LC_ALL=C
export LC_ALL
mode=$1
shift

# The kernel's start time of a process: with the pid it names one process for ever. /proc where
# there is one (Linux, Termux and busybox: their ps differ, /proc does not); ps elsewhere (macOS).
start_of() {
  if read -r st 2>/dev/null <"/proc/$1/stat"; then
    set -f
    set -- ${st##*") "}
    set +f
    echo "${20}"
  elif [ ! -d /proc/self ]; then
    # `Mon Nov  4 10:00:00 2025` -> `Mon_Nov_4_10_00_00_2025`
    ps -o lstart= -p "$1" 2>/dev/null | sed 's/^ *//; s/ *$//' | tr -s ' :' '__'
  fi
}
# The name it was started as (argv[0]'s last component).
exe_of() {
  if [ -r "/proc/$1/cmdline" ]; then
    tr '\000' '\n' 2>/dev/null <"/proc/$1/cmdline" | awk '{ n = split($1, p, "/"); print p[n]; exit }'
  elif [ ! -d /proc/self ]; then
    ps -o args= -p "$1" 2>/dev/null | awk '{ n = split($1, p, "/"); print p[n]; exit }'
  fi
}
state_of() {
  if read -r st 2>/dev/null <"/proc/$1/stat"; then
    set -f
    set -- ${st##*") "}
    set +f
    echo "$1"
  elif [ ! -d /proc/self ]; then
    ps -o stat= -p "$1" 2>/dev/null | tr -d ' '
  fi
}
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  case $(state_of "$1") in Z*|"") return 1 ;; esac
  return 0
}
same() { [ -n "$2" ] && [ "$(start_of "$1")" = "$2" ]; }
# Every process as `pid ppid`: procps and macOS take -axo; toybox refuses -x, busybox has no -x.
all_parents() {
  ps -axo pid=,ppid= 2>/dev/null || ps -A -o pid=,ppid= 2>/dev/null
}
descendants() {
  all_parents | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      want[root] = 1; changed = 1
      while (changed) { changed = 0
        for (i = 1; i <= NR; i++) { p = pids[i]
          if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1; print p } } }
    }'
}

case $mode in
  ident)
    for pid in "$@"; do
      s=$(start_of "$pid") && [ -n "$s" ] && echo "ident=$pid $s $(exe_of "$pid")"
    done ;;
  kill)
    grace=$1
    shift
    sweep_tmp
    trees=$(mktemp "${TMPDIR:-/tmp}/miyabi-prune.$$.XXXXXX") || { echo "error=mktemp failed"; exit 1; }
    trap 'rm -f "$trees"' EXIT
    while [ $# -ge 3 ]; do
      pid=$1 start=$2 exe=$3
      shift 3
      if ! alive "$pid"; then echo "result=$pid gone"; continue; fi
      if ! same "$pid" "$start" || [ "$(exe_of "$pid")" != "$exe" ]; then
        echo "result=$pid mismatch"; continue
      fi
      # The session's process tree, each member pinned by its own start time.
      tree="$pid:$start"
      for child in $(descendants "$pid"); do
        cs=$(start_of "$child") && [ -n "$cs" ] && tree="$tree $child:$cs"
      done
      for member in $tree; do kill -TERM "${member%%:*}" 2>/dev/null; done
      echo "$pid $tree" >>"$trees"
    done
    [ -s "$trees" ] || exit 0
    # Wait up to GRACE seconds for every member of every tree to exit.
    waited=0
    while :; do
      left=0
      while read -r _session members; do
        for member in $members; do
          alive "${member%%:*}" && same "${member%%:*}" "${member#*:}" && left=1
        done
      done <"$trees"
      [ "$left" = 0 ] && break
      [ "$waited" -ge "$((grace * 5))" ] && break
      sleep 0.2
      waited=$((waited + 1))
    done
    while read -r session members; do
      killed=0
      for member in $members; do
        m=${member%%:*}
        if alive "$m" && same "$m" "${member#*:}"; then kill -KILL "$m" 2>/dev/null && killed=1; fi
      done
      first=${members%% *} n=0
      while alive "$session" && same "$session" "${first#*:}" && [ "$n" -lt 25 ]; do
        sleep 0.2; n=$((n + 1))
      done
      if alive "$session" && same "$session" "${first#*:}"; then echo "result=$session survived"
      elif [ "$killed" = 1 ]; then echo "result=$session killed"
      else echo "result=$session terminated"; fi
      echo "members=$session $(echo "$members" | wc -w | tr -d ' ')"
    done <"$trees"
    ;;
  *) echo "error=unknown mode $mode"; exit 1 ;;
esac
