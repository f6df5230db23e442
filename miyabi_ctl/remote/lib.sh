# miyabi-ctl's shell library: put in front of every remote script (miyabi_ctl/remote/runner.py).
# POSIX sh: it must run under dash, bash 3.2 (macOS /bin/sh), busybox ash and mksh (Android).
# Functions only; nothing here runs until a script calls it.

# `~` and `~/…` from fleet.yaml, expanded on the host. Sets $expanded: no subshell, so the probe's
# hot path pays nothing for it.
expand_home() {
  case $1 in
    "~") expanded=$HOME ;;
    "~/"*) expanded=$HOME/${1#"~/"} ;;
    *) expanded=$1 ;;
  esac
}

# Put the PATH of the user's login shell in front (where agent CLIs live: ~/.local/bin, npm,
# Homebrew), whatever that shell is: only $PATH is read back, between markers. The command is one
# every shell reads alike (fish joins "$PATH" with colons too); csh and tcsh take -l only as their
# sole flag, so they read it on stdin.
use_login_path() {
  case ${SHELL##*/} in
    csh|tcsh)
      lp=$(printf '%s\n' 'printf "\n@@PATH=%s\n" "$PATH"' | "$SHELL" -l 2>/dev/null |
        sed -n 's/^@@PATH=//p' | tail -n 1) ;;
    *)
      lp=$("${SHELL:-/bin/sh}" -lc 'printf "\n@@PATH=%s\n" "$PATH"' </dev/null 2>/dev/null |
        sed -n 's/^@@PATH=//p' | tail -n 1) ;;
  esac
  [ -n "$lp" ] && PATH=$lp:$PATH
  export PATH
}

# Stop with `error=MESSAGE` on stdout and exit CODE: how a script says why it gave up.
die() {
  code=$1
  shift
  echo "error=$*"
  exit "$code"
}
