"""Agent processes in every form they really run as (issue 8, item 1), for lab hosts.

Each form is a real process started the way the real install starts it, so the kernel, `ps` and
/proc say exactly what they say for the real thing:

- the native installer's layout: ``~/.local/bin/claude`` -> ``~/.local/share/claude/versions/
  2.1.37``, a compiled binary (``agent.c``) that renames itself to ``2.1.37`` like Claude Code
  >= 2.1 (prctl + argv overwrite), and the installer's own ``--bg-spare`` helper;
- npm's global layout under a real node: ``bin/claude`` -> ``../lib/node_modules/@anthropic-ai/
  claude-code/cli.js`` with ``#!/usr/bin/env node`` (so the kernel and env make it
  ``node …/bin/claude``, as under Homebrew's node or Termux's), the same with ``process.title``
  set to ``claude`` as the real cli.js does (2.1.37 … 2.1.112, the last one npm shipped, end
  their start-up with ``process.title="claude"``; libuv overwrites argv with it), and, a harder
  case no release does, set to the version; ``cli.js`` started directly, npx's cache link, bun,
  ``deno run npm:…``;
- codex: the native binary, and npm's ``bin/codex.js`` wrapper that spawns the platform binary
  as its child (one session, two processes);
- decoys with a bare version as title whose executable is not an agent.

The scripts are stand-ins for the packages (they idle instead of calling an API); paths, shebangs,
argv and titles are the packages' own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = "2.1.37"

CLI_JS = """#!/usr/bin/env node
// Stand-in for @anthropic-ai/claude-code/cli.js: idles; with MIYABI_TITLE it renames itself
// (process.title, which overwrites argv: /proc/PID/cmdline and comm on Linux, what ps reads on
// macOS), as the real one does with "claude".
if (process.env.MIYABI_TITLE) process.title = process.env.MIYABI_TITLE;
setInterval(() => {}, 1 << 30);
"""

CODEX_JS = """#!/usr/bin/env node
// Stand-in for @openai/codex/bin/codex.js: spawns its platform's native binary as the real
// wrapper does, forwards signals to it and exits with it.
const { spawn } = require("child_process");
const path = require("path");
const triple = process.env.MIYABI_TRIPLE || "x86_64-unknown-linux-musl";
const bin = path.join(__dirname, "..", "vendor", triple, "codex", "codex");
const child = spawn(bin, process.argv.slice(2), { stdio: "inherit" });
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(sig, () => child.kill(sig));
child.on("exit", (code) => process.exit(code === null ? 1 : code));
"""

SERVER_JS = """// Not an agent: a node server that names itself after its own version.
process.title = process.env.MIYABI_TITLE || "3.4.5";
setInterval(() => {}, 1 << 30);
"""


def node_path() -> str | None:
    return shutil.which("node")


def build_agent_binary(out_dir: Path) -> Path:
    """Compile agent.c once per lab (gcc): the native agents' stand-in binary."""
    out = out_dir / "miyabi-agent"
    if not out.exists():
        subprocess.run(["gcc", "-O2", "-o", str(out), str(HERE / "agent.c")], check=True,
                       capture_output=True)
    return out


def _place(source: Path | str, target: Path) -> None:
    """A hard link where possible (node is 100 MB), else a copy; /proc/PID/exe names the link."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write(path: Path, text: str, mode: int = 0o755) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(target)


@dataclass(frozen=True)
class Layout:
    """Where a host keeps its agents: ``home`` and the npm ``prefix`` as seen outside and inside."""

    home_out: Path
    home_in: str
    prefix_out: Path
    prefix_in: str
    triple: str = "x86_64-unknown-linux-musl"


def install(layout: Layout, agent_binary: Path) -> None:
    """Lay out every install form under a host's home and npm prefix."""
    node = node_path()
    if node is None:
        raise RuntimeError("node is not installed (the npm forms need a real node)")
    home, prefix = layout.home_out, layout.prefix_out
    versions = home / ".local/share/claude/versions"
    _place(agent_binary, versions / VERSION)
    _symlink(f"../share/claude/versions/{VERSION}", home / ".local/bin/claude")
    mods = prefix / "lib/node_modules"
    _write(mods / "@anthropic-ai/claude-code/cli.js", CLI_JS)
    _symlink("../lib/node_modules/@anthropic-ai/claude-code/cli.js", prefix / "bin/claude")
    _write(mods / "@openai/codex/bin/codex.js", CODEX_JS)
    _place(agent_binary, mods / f"@openai/codex/vendor/{layout.triple}/codex/codex")
    _symlink("../lib/node_modules/@openai/codex/bin/codex.js", prefix / "bin/codex")
    _place(node, prefix / "bin/node")
    npx = home / ".npm/_npx/6a9f5b5e1e8c4f1d/node_modules"
    _write(npx / "@anthropic-ai/claude-code/cli.js", CLI_JS)
    _symlink("../@anthropic-ai/claude-code/cli.js", npx / ".bin/claude")
    _place(node, home / ".bun/bin/bun")
    _place(agent_binary, home / ".deno/bin/deno")
    _place(agent_binary, home / ".cargo/bin/codex")
    _place(agent_binary, home / "bin/3.2.1")
    _write(home / "app/server.js", SERVER_JS, 0o644)


@dataclass(frozen=True)
class Form:
    """One way an agent runs: its argv, environment, whether bash starts it (bash exports ``$_``,
    the launcher path, as a login shell would), and the agent it is a session of (None: decoy)."""

    name: str
    argv: tuple[str, ...]
    agent: str | None
    env: dict[str, str] = field(default_factory=dict)
    via_bash: bool = False
    processes: int = 1  # the process tree it starts
    npm: bool = False   # found on PATH in npm's bin (else the installer's ~/.local/bin)


def forms(layout: Layout) -> list[Form]:
    h, p, t = layout.home_in, layout.prefix_in, {"MIYABI_TITLE": VERSION}
    cli = f"{p}/lib/node_modules/@anthropic-ai/claude-code/cli.js"
    return [
        Form("native-title", ("claude",), "claude", t, via_bash=True),
        Form("native-path", (f"{h}/.local/share/claude/versions/{VERSION}", "--resume"), "claude"),
        Form("native-bg-spare", (f"{h}/.local/share/claude/versions/{VERSION}", "--bg-spare",
                                 "/tmp/cc-daemon-0/spare/1.claim.sock"), None),
        Form("npm-bin", ("claude", "--continue"), "claude", via_bash=True, npm=True),
        Form("npm-bin-named", ("claude",), "claude", {"MIYABI_TITLE": "claude"}, via_bash=True,
             npm=True),
        Form("npm-bin-title", ("claude",), "claude", t, via_bash=True, npm=True),
        Form("npm-cli", (f"{p}/bin/node", cli, "--resume"), "claude"),
        Form("npx", (f"{p}/bin/node", f"{h}/.npm/_npx/6a9f5b5e1e8c4f1d/node_modules/.bin/claude"),
             "claude"),
        Form("bun", (f"{h}/.bun/bin/bun", cli), "claude"),
        Form("deno", (f"{h}/.deno/bin/deno", "run", "-A", "npm:@anthropic-ai/claude-code"),
             "claude"),
        Form("codex-native", (f"{h}/.cargo/bin/codex", "exec", "fix the tests"), "codex"),
        Form("codex-node", ("codex",), "codex", {"MIYABI_TRIPLE": layout.triple}, via_bash=True,
             processes=2, npm=True),
        Form("decoy-version-binary", (f"{h}/bin/3.2.1",), None, t),
        Form("decoy-version-node", (f"{p}/bin/node", f"{h}/app/server.js"), None, t,
             via_bash=True),
    ]


def path_of(form: Form, layout: Layout) -> str:
    """The PATH ``form`` runs under: npm's bin or the installer's ~/.local/bin first."""
    npm, native = f"{layout.prefix_in}/bin", f"{layout.home_in}/.local/bin"
    first = f"{npm}:{native}" if form.npm else f"{native}:{npm}"
    return f"{first}:/usr/bin:/bin"


def argv_of(form: Form, path: str) -> list[str]:
    """The argv to start ``form`` with, ``path`` being the PATH it runs under."""
    if not form.via_bash:
        return list(form.argv)
    # bash exports `_` (the launcher's path) to what it starts, and runs a last command in place.
    return ["/bin/bash", "-c", 'PATH=$0; "$@"', path, *form.argv]
