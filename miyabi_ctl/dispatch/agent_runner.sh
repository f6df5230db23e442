#!/bin/sh
# Written by miyabi-ctl: runs one agent for one issue in its worktree. The issue's values are
# read from the files beside this script, never written into it. $1: the prompt's file beside
# it (prompt.md; a follow-up's message.md, `tell`).
cd "$(dirname "$0")" || exit 1
MIYABI_RUN_DIR=$(pwd)
MIYABI_ISSUE=$(cat issue)
MIYABI_TITLE=$(cat title)
MIYABI_WORKTREE=$(cat worktree)
MIYABI_BRANCH=$(cat branch)
MIYABI_PROMPT_FILE=$MIYABI_RUN_DIR/${1:-prompt.md}
MIYABI_TEST_COMMAND=$(cat test_command 2>/dev/null)
# Claude Code's permission rule allowing that command (with any arguments); empty when none.
MIYABI_TEST_TOOL=${MIYABI_TEST_COMMAND:+Bash($MIYABI_TEST_COMMAND:*)}
export MIYABI_RUN_DIR MIYABI_ISSUE MIYABI_TITLE MIYABI_WORKTREE MIYABI_BRANCH MIYABI_PROMPT_FILE
export MIYABI_TEST_COMMAND MIYABI_TEST_TOOL
# The PATH of a login shell: where the user's agent CLIs are installed (~/.local/bin, npm, brew).
login_path=$("${SHELL:-/bin/sh}" -lc 'printf "\n@@PATH=%s\n" "$PATH"' </dev/null 2>/dev/null |
  sed -n 's/^@@PATH=//p' | tail -n 1)
[ -n "$login_path" ] && PATH=$login_path:$PATH
export PATH
exec >>"$MIYABI_RUN_DIR/agent.log" 2>&1
echo "miyabi-ctl: $(date) issue #$MIYABI_ISSUE starting in $MIYABI_WORKTREE${1:+ (follow-up)}"
cd "$MIYABI_WORKTREE" || exit 1
{
@@TEMPLATE@@
}
echo "miyabi-ctl: $(date) agent exited with status $?"
