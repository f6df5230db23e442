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

# git that talks to a remote must never wait for a password nobody is there to type (no
# terminal, no askpass): it fails at once, and the script says why.
no_prompts() {
  GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=true SSH_ASKPASS=true
  export GIT_TERMINAL_PROMPT GIT_ASKPASS SSH_ASKPASS
}

# Read a remote without writing the repository, not even an mtime: a git dir of this run's own,
# a temporary linked-worktree git dir whose `commondir` is the repository's ($common, absolute),
# so the remote, its URL and credentials are the repository's own config. Its objects are new
# ones only (the repository's are its alternates), its refs are refs/worktree/ only, and its
# FETCH_HEAD is its own. Sets $scratch (once); the caller's EXIT trap removes it
# (`rm -rf "$scratch"`, with `scratch=` set before the trap).
make_scratch() {
  [ -z "${scratch:-}" ] || return 0
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/miyabi-read.$$.XXXXXX") || die 3 "mktemp failed"
  mkdir -p "$scratch/objects/info" "$scratch/refs" || die 3 "cannot make $scratch"
  printf '%s\n' "$common/objects" >"$scratch/objects/info/alternates"
  printf '%s\n' "$common" >"$scratch/commondir"
  echo "ref: refs/heads/miyabi-read" >"$scratch/HEAD"
}

# git in that git dir. fetch.unpackLimit=1: what arrives is kept as a pack (index-pack only reads
# the objects it already has), never unpacked object by object, which would freshen — rewrite
# the mtime of — a loose object the repository already holds (the empty tree every claim uses).
scratch_git() {
  GIT_DIR=$scratch GIT_OBJECT_DIRECTORY=$scratch/objects git -c gc.auto=0 \
    -c maintenance.auto=false -c fetch.writeCommitGraph=false -c fetch.unpackLimit=1 "$@"
}

# The repository's common git directory, absolute: what make_scratch shares.
common_dir() {
  common=$(git rev-parse --git-common-dir 2>/dev/null) || die 3 "not a git repository: $repo"
  common=$(cd "$common" && pwd -P) || die 3 "cannot enter the git directory of $repo"
}

# Stop with `error=MESSAGE` on stdout and exit CODE: how a script says why it gave up.
die() {
  code=$1
  shift
  echo "error=$*"
  exit "$code"
}

# What checking out tree FROM's successor TO would write over in the current directory's work
# tree, where the disk holds something FROM does not: an untracked or ignored file, a directory
# (with files, or empty), a nested repository, or such a non-directory where TO needs a parent
# directory. Git treats ignored files as expendable; miyabi-ctl never does. Prints the paths, one
# a line (a newline in a name shows as ?); nothing when the way is clear.
in_the_way() {
  git diff-tree -r -z --no-renames --name-only --diff-filter=AT "$1" "$2" |
    xargs -0 sh -c '
      from=$1; shift
      held() { [ "$(git cat-file -t "$from:$1" 2>/dev/null)" = blob ] &&
        { [ -L "$1" ] || [ ! -d "$1" ]; }; }
      for p do
        if { [ -L "$p" ] || [ -e "$p" ]; } && ! held "$p"; then
          if [ -d "$p" ] && [ ! -L "$p" ]; then
            # A directory: name what is in it (a nested repository by its top), or the dir.
            inside=$(find "$p" -mindepth 1 \( -name .git -prune -o ! -type d \) -print | head -n 5)
            [ -n "$inside" ] && printf "%s\n" "$inside" | tr "\n" "\0" || printf "%s/\0" "$p"
          else printf "%s\0" "$p"; fi
          continue
        fi
        d=$p
        while case $d in */*) true ;; *) false ;; esac; do
          d=${d%/*}
          if [ -L "$d" ] || { [ -e "$d" ] && [ ! -d "$d" ]; }; then
            held "$d" || printf "%s\0" "$d"
            break
          fi
        done
      done' sh "$1" | tr '\n\0' '?\n' | sort -u
}

# Why a push failed, in the remote's words: the refused ref's reason from `push --porcelain`'s
# listing (OUT), and what the remote itself said (`remote:` lines: a hook's message), else the
# last line git printed (ERR).
push_error() {
  why=$(grep '^!' "$1" 2>/dev/null | cut -f3 | head -n 1)
  said=$(sed -n 's/^remote: *//p' "$2" 2>/dev/null | grep -v '^ *$' | tail -n 5 | tr '\n' ' ')
  [ -n "$why" ] || why=$(grep -v '^ *$' "$2" 2>/dev/null | grep -v '^remote:' | tail -n 1)
  printf '%s' "${why:-the push failed}${said:+; the remote said: ${said% }}"
}

# Remove the temporary directories (`miyabi-KIND.PID.XXXXXX`) that runs killed before their own
# cleanup left: ours, and whose process is gone. A live run's, or another user's, stay.
sweep_tmp() {
  for d in "${TMPDIR:-/tmp}"/miyabi-*.[0-9]*.??????; do
    [ -O "$d" ] || continue
    p=${d%.*}
    p=${p##*.}
    case $p in ''|*[!0-9]*) continue ;; esac
    [ "$p" = "$$" ] || kill -0 "$p" 2>/dev/null || rm -rf "$d"
  done
}

# `no space left on the device of DIR: ` for the first DIR whose file system has no space left
# (df's available blocks: 0); nothing otherwise. Words for a failure a full disk may explain.
no_space_on() {
  for d do
    [ -n "$d" ] || continue
    [ "$(df -Pk "$d" 2>/dev/null | awk 'NR == 2 { print $4 }')" = 0 ] &&
      { printf 'no space left on the device of %s: ' "$d"; return 0; }
  done
  return 0
}
