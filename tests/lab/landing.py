"""What the lab tests of `show`, `tell` and `land` share: stand-in agents that do what a real one
does to a worktree (commit and end, wait for an answer, fail, leave work uncommitted, continue
when started with a follow-up), and lab hosts whose clones push to an origin of their own, so
landing onto its main changes nothing another test reads.

A stand-in records every start's argv (NUL-separated) beside the run, as `<agent>-argv-<n>`;
what it does is chosen per issue by the file `~/fake-mode-<issue>` on its host (default: idle,
like a long headless session); started with a follow-up template (`--continue`, `resume
--last`), it commits its prompt — the operator's message — as `followup.txt`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import GIT_ENV, Lab, LabHost

ROOT = Path(__file__).resolve().parents[2]

FAKE_AGENT = r"""#!/bin/bash
out=$MIYABI_RUN_DIR/$(basename "$0")
n=$(ls "$out"-argv-* 2>/dev/null | wc -l)
printf '%s\0' "$@" >"$out-argv-$n"
mode=$(cat "$HOME/fake-mode-$MIYABI_ISSUE" 2>/dev/null || echo idle)
case " $* " in *" --continue "*|*" resume --last "*) mode=followup ;; esac
case $mode in
  commit) sleep 2; echo "work for #$MIYABI_ISSUE" >"issue-$MIYABI_ISSUE.txt"
          git add -A && git commit -qm "Add [/api] \$(x) \`id\` for #$MIYABI_ISSUE"
          echo "committed"; exit 0 ;;
  conflict) sleep 2; echo "the agent's version" >shared.txt
            git add -A && git commit -qm "Rewrite shared.txt"; exit 0 ;;
  dirty) sleep 2; echo "committed work" >committed.txt; git add committed.txt
         git commit -qm "Half the work"; echo "not yet committed" >draft.txt; exit 0 ;;
  fail) sleep 2; echo "cannot work here"; exit 3 ;;
  ask) printf 'Proceed with the edit to lambda.tf? (y/n) '; IFS= read -r answer
       printf '%s' "$answer" >answer.txt; git add answer.txt && git commit -qm "Answered"
       exit 0 ;;
  followup) sleep 6; cp "$MIYABI_PROMPT_FILE" followup.txt
            git add followup.txt && git commit -qm "Follow-up"; exit 0 ;;
  *) exec -a "$(basename "$0")" /bin/sleep 100000 ;;
esac
"""


def cli(*args: str, state: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "MIYABI_STATE_DIR": str(state), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=300, env=full, stdin=subprocess.DEVNULL)


def git(repo: Path | str, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                          check=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def refs(repo: Path | str) -> dict[str, str]:
    """Every ref of a repository (an origin: what a refused land must leave as it was)."""
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


@dataclass
class LandLab:
    lab: Lab
    host: LabHost
    origin: Path  # this module's own bare origin
    fleet: Path
    state: Path

    def cli(self, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        return cli(*args, "--fleet", str(self.fleet), state=self.state, env=env)

    def mode(self, issue: int, mode: str) -> None:
        (self.host.home / f"fake-mode-{issue}").write_text(mode)

    def worktree(self, issue: int) -> Path:
        return self.host.home / f".miyabi/worktrees/issue-{issue}"

    def run_dir(self, issue: int) -> Path:
        return self.host.home / f".miyabi/worktrees/.runs/issue-{issue}"

    def argv(self, issue: int, agent: str = "claude") -> list[list[str]]:
        starts = sorted(self.run_dir(issue).glob(f"{agent}-argv-*"),
                        key=lambda p: int(p.name.rsplit("-", 1)[1]))
        return [p.read_text().split("\0")[:-1] for p in starts]

    def alive(self, issue: int) -> bool:
        return self.host.sh(f"tmux has-session -t =miyabi-{issue}", check=False).returncode == 0

    def wait_ended(self, issue: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.alive(issue):
            assert time.monotonic() < deadline, f"the agent of #{issue} did not end"
            time.sleep(0.2)

    def commit_to_origin(self, files: dict[str, str], message: str) -> str:
        """A commit on this origin's main, as another developer's push."""
        scratch = self.lab.path / f"scratch-{uuid.uuid4().hex[:8]}"
        subprocess.run(["git", "clone", "-q", str(self.origin), str(scratch)], check=True,
                       env={**os.environ, **GIT_ENV})
        for rel, text in files.items():
            (scratch / rel).write_text(text)
        git(scratch, "add", "-A")
        git(scratch, "commit", "-qm", message)
        git(scratch, "push", "-q", "origin", "HEAD:main")
        return git(scratch, "rev-parse", "HEAD")

    def assign(self, issue: int, mode: str, agent: str = "claude") -> None:
        self.mode(issue, mode)
        proc = self.cli("assign", str(issue), self.host.name, "--agent", agent, "--apply",
                        "--yes")
        assert proc.returncode == 0, proc.stdout + proc.stderr


def land_lab(lab: Lab, base: Path, name: str, backlog: list[dict], *,
             extra: dict | None = None) -> LandLab:
    """A host with the stand-in agents whose clone's origin is a bare repository of its own
    (seeded from the lab's), and a fleet file with the backlog."""
    origin = lab.path / f"{name}-origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(lab.origin), str(origin)], check=True,
                   env={**os.environ, **GIT_ENV})
    host = lab.add_host(name, load=(0.1, 0.1, 0.1), cpus=8)
    git(host.repo, "remote", "set-url", "origin", str(origin))
    git(host.repo, "fetch", "-q", "origin")
    for agent in ("claude", "codex"):
        exe = host.home / ".local" / "bin" / agent
        exe.write_text(FAKE_AGENT)
        exe.chmod(0o755)
    (host.home / ".profile").write_text('PATH="$HOME/.local/bin:$PATH"\n')
    (base / "backlog.yaml").write_text(yaml.safe_dump({"issues": backlog}))
    doc = {"backlog": {"file": str(base / "backlog.yaml")}, **(extra or {})}
    fleet = write_fleet(base / "fleet.yaml", lab, {name: ssh_entry(host, lab, max_sessions=20)},
                        extra=yaml.safe_dump(doc))
    state = base / "state"
    state.mkdir()
    return LandLab(lab, host, origin, fleet, state)
