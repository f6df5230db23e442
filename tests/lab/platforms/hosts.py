"""Lab hosts that stand in for the fleet's other platforms (issue 8, item 6; docs/testing.md).

Each is a real lab host (real sshd, real processes, real git) whose login sees what that platform
shows, built from the platform's documented behaviour (/tmp/research sources quoted in
docs/platforms.md), never from what miyabi-ctl expects:

- ``TermuxSetup``: an app's unprivileged uid, /proc mounted ``hidepid=2`` with /proc/loadavg,
  /proc/uptime and /proc/stat unreadable (EACCES, as SELinux denies them to apps), toybox ``ps``
  and ``uptime`` (sysinfo(2)), sshd on 8022, hostname ``localhost``, $PREFIX and $TMPDIR under
  /data/data/com.termux/files, a /tmp the user cannot write;
- ``BusyboxSetup``: every command busybox has is busybox (Debian's build: its ``ps`` has no -p,
  no -x and no etime), root's login shell is busybox ash;
- ``MacSetup``: no /proc and no /sys for anyone inside; ``ps``, ``sysctl``, ``vm_stat``, ``lsof``,
  ``stat``, ``uptime`` and ``uname`` are stand-ins (mac_tools.py) that read the real state of the
  host's processes from a proc mounted where only they look, and print it in the BSD formats;
  ``/bin/sh`` is bash (as macOS's is bash 3.2 in POSIX mode), ``awk`` is BWK awk
  (original-awk), and there is no ``timeout`` and no ``nproc``;
- ``UsersSetup``: users whose login shells are sh, bash, dash, zsh, fish and tcsh.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tests.lab.harness import HostSetup, LabHost, _git
from tests.lab.platforms import forms

HERE = Path(__file__).resolve().parent
TERMUX_FILES = "/data/data/com.termux/files"
TERMUX_PREFIX = f"{TERMUX_FILES}/usr"
TERMUX_HOME = f"{TERMUX_FILES}/home"
STANDIN_PROC = "/mnt/standin/proc"          # the mac stand-ins' view of the host's processes
STANDIN_CPUS = "/mnt/standin/cpu_online"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    shell: str
    home: str  # inside the host


def _users_files(host: LabHost, users: list[User]) -> list[list[str]]:
    """passwd, group and shadow with ``users`` added, bound over the host's /etc files."""
    etc = host.dir / "etc"
    etc.mkdir(exist_ok=True)
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    shadow = Path("/etc/shadow").read_text()
    for u in users:
        passwd += f"{u.name}:x:{u.uid}:{u.uid}:{u.name}:{u.home}:{u.shell}\n"
        group += f"{u.name}:x:{u.uid}:\n"
        shadow += f"{u.name}:*:20000:0:99999:7:::\n"
    (etc / "passwd").write_text(passwd)
    (etc / "group").write_text(group)
    (etc / "shadow").write_text(shadow)
    (etc / "shadow").chmod(0o640)
    return [["bind", str(etc / f), f"/etc/{f}"] for f in ("passwd", "group", "shadow")]


def _home(host: LabHost, outside: Path, uid: int, *, clone: bool = True,
          origin: str | None = None) -> None:
    """A login's home: the lab's key, a git identity, a clone of origin, owned by ``uid``."""
    (outside / ".ssh").mkdir(parents=True, exist_ok=True)
    (outside / ".ssh" / "authorized_keys").write_text(host.lab._client_pub)
    # The lab's origin is a directory owned by root; a user's real origin is a server, which
    # git does not check for ownership: trusted here so a non-root login can fetch from it.
    (outside / ".gitconfig").write_text(
        f"[user]\n\tname = {host.name} dev\n\temail = dev@{host.name}.lab.invalid\n"
        "[init]\n\tdefaultBranch = main\n"
        f"[safe]\n\tdirectory = {host.lab.origin}\n")
    if clone and not (outside / "miyabi-private").exists():
        _git("clone", "-q", str(host.lab.origin), str(outside / "miyabi-private"))
        if origin:
            _git("-C", str(outside / "miyabi-private"), "remote", "set-url", "origin", origin)
    _chown_tree(outside, uid)


def _chown_tree(top: Path, uid: int) -> None:
    for root, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, uid)
    os.lchown(top, uid, uid)


class UsersSetup(HostSetup):
    """A Linux host with one user per login shell (sh, bash, dash, zsh, fish, tcsh)."""

    SHELLS: ClassVar[dict[str, str]] = {
        "sh": "/bin/sh", "bash": "/bin/bash", "dash": "/bin/dash", "zsh": "/bin/zsh",
        "fish": "/usr/bin/fish", "tcsh": "/bin/tcsh"}

    def __init__(self) -> None:
        super().__init__()
        self.users = [User(f"u-{name}", 2001 + i, shell, f"/home/u-{name}")
                      for i, (name, shell) in enumerate(self.SHELLS.items())]

    def prepare(self, host: LabHost) -> None:
        homes = host.dir / "homes"
        for u in self.users:
            # Each user pushes to an origin of their own (the lab's is root's).
            own = homes / u.name / "origin.git"
            _git("clone", "-q", "--bare", str(host.lab.origin), str(own))
            _home(host, homes / u.name, u.uid, origin=f"{u.home}/origin.git")
            # What each user's login shell puts on PATH: a directory only that shell's own
            # startup file names (use_login_path must find it whatever the shell).
            rc_bin = f"{u.home}/rc-bin"
            (homes / u.name / "rc-bin").mkdir(exist_ok=True)
            _login_rc(homes / u.name, u.shell, rc_bin)
            _chown_tree(homes / u.name, u.uid)
        self.steps += [["bind", str(homes), "/home"], *_users_files(host, self.users)]


def _login_rc(home: Path, shell: str, rc_bin: str) -> None:
    """The startup file each shell reads as a login shell, adding ``rc_bin`` to PATH."""
    name = Path(shell).name
    if name == "fish":
        conf = home / ".config/fish/config.fish"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(f"set -gx PATH {rc_bin} $PATH\n")
    elif name == "tcsh":
        (home / ".login").write_text(f"setenv PATH {rc_bin}:$PATH\n")
    elif name == "zsh":
        (home / ".zprofile").write_text(f"export PATH={rc_bin}:$PATH\n")
    elif name == "bash":
        (home / ".bash_profile").write_text(f"export PATH={rc_bin}:$PATH\n")
    else:  # sh, dash: .profile
        (home / ".profile").write_text(f"PATH={rc_bin}:$PATH; export PATH\n")


class TermuxSetup(HostSetup):
    """Termux on Android, as an app sees it (docs/testing.md says where it is not faithful)."""

    port = 8022
    hostname = "localhost"
    user = User("u0_a123", 10123, f"{TERMUX_PREFIX}/bin/bash", TERMUX_HOME)

    def __init__(self, *, uptime: bool = True) -> None:
        super().__init__()
        self.uptime = uptime  # False: a phone where nothing gives the load (no uptime on PATH)

    def prepare(self, host: LabHost) -> None:
        files = host.dir / "termux-files"
        prefix = files / "usr"
        (prefix / "bin").mkdir(parents=True)
        (prefix / "tmp").mkdir()
        for tool in ("ps", "uptime") if self.uptime else ("ps",):  # Android's own, toybox
            (prefix / "bin" / tool).symlink_to("/usr/bin/toybox")
        forms._place("/usr/bin/bash", prefix / "bin" / "bash")
        forms.install(self.layout(host), host.lab.agent_binary())
        _home(host, files / "home", self.user.uid)
        _chown_tree(files, self.user.uid)
        # A mount point for the tree (empty directories on the machine; mounted only inside).
        Path(TERMUX_FILES).mkdir(parents=True, exist_ok=True)
        denied = host.dir / "denied"
        denied.write_text("")
        denied.chmod(0)
        tmp = host.dir / "root-tmp"
        tmp.mkdir()
        tmp.chmod(0o755)
        self.steps += [
            ["mount", "proc", "/proc", "hidepid=2"],
            *[["bind", str(denied), f"/proc/{f}"] for f in ("loadavg", "uptime", "stat")],
            ["bind", str(files), TERMUX_FILES],
            ["bind", str(tmp), "/tmp"],
            *_users_files(host, [self.user]),
        ]
        path = f"{TERMUX_PREFIX}/bin:/usr/bin:/bin"
        if not self.uptime:  # Debian's procps uptime reads the denied /proc/uptime: leave it out
            bin_dir = host.dir / "termux-system-bin"
            bin_dir.mkdir()
            for tool in ("sh", "git", "sed", "awk", "tr", "cat", "date", "readlink", "head", "tail",
                         "grep", "mktemp", "rm", "sleep", "perl", "timeout", "getconf", "hostname",
                         "uname", "mkdir", "ls", "wc", "cut", "env", "bash", "id", "sort"):
                found = shutil.which(tool)
                if found:
                    (bin_dir / tool).symlink_to(found)
            self.steps.append(["mkdir", f"{TERMUX_FILES}/system-bin"])
            self.steps.append(["bind", str(bin_dir), f"{TERMUX_FILES}/system-bin"])
            path = f"{TERMUX_PREFIX}/bin:{TERMUX_FILES}/system-bin"
        self.sshd += [f"SetEnv PATH={path} TMPDIR={TERMUX_PREFIX}/tmp PREFIX={TERMUX_PREFIX}"]

    def layout(self, host: LabHost) -> forms.Layout:
        files = host.dir / "termux-files"
        return forms.Layout(files / "home", TERMUX_HOME, files / "usr", TERMUX_PREFIX,
                            "aarch64-unknown-linux-musl")

    def env(self) -> dict[str, str]:
        return {"HOME": TERMUX_HOME, "USER": self.user.name, "PREFIX": TERMUX_PREFIX,
                "PATH": f"{TERMUX_PREFIX}/bin:/usr/bin:/bin", "TMPDIR": f"{TERMUX_PREFIX}/tmp",
                "LANG": "C.UTF-8"}


class BusyboxSetup(HostSetup):
    """A busybox userland (Alpine-like): busybox's applets first on PATH, ash as root's shell."""

    def prepare(self, host: LabHost) -> None:
        applets = host.dir / "busybox-bin"
        applets.mkdir()
        listed = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True)
        for name in listed.stdout.split():
            (applets / name).symlink_to("/usr/bin/busybox")
        root = User("root", 0, "/usr/local/bin/sh", "/root")
        etc = _users_files(host, [])
        passwd = host.dir / "etc" / "passwd"
        lines = [f"root:x:0:0:root:/root:{root.shell}" if line.startswith("root:") else line
                 for line in passwd.read_text().splitlines()]
        passwd.write_text("\n".join(lines) + "\n")
        self.steps += [["bind", str(applets), "/usr/local/bin"], *etc]
        forms.install(forms.Layout(host.home, "/root", host.home / ".npm-global", "/root/.npm-global"),
                      host.lab.agent_binary())


class MacSetup(HostSetup):
    """macOS as a login sees it: no /proc, no /sys, BSD tools (see the module docstring)."""

    def __init__(self, *, git_shim: bool = False) -> None:
        super().__init__()
        self.git_shim = git_shim

    def prepare(self, host: LabHost) -> None:
        tools = host.dir / "mac-bin"
        tools.mkdir()
        # A copy in the lab's own directory: the checkout may live under /tmp (a CI clone), which
        # every host mounts a /tmp of its own over.
        shutil.copy(HERE / "mac_tools.py", tools / "mac_tools.py")
        for name in ("ps", "sysctl", "vm_stat", "lsof", "stat", "uptime", "uname"):
            (tools / name).write_text(
                f"#!/usr/bin/python3 -I\nimport sys\nsys.path.insert(0, {str(tools)!r})\n"
                f"import mac_tools\nsys.exit(mac_tools.main({name!r}, sys.argv[1:]))\n")
            (tools / name).chmod(0o755)
        if self.git_shim:
            (tools / "git").write_text(XCODE_SHIM)
            (tools / "git").chmod(0o755)
        # Commands macOS does not have are whited out of /usr/bin (an overlay whose upper layer
        # holds whiteouts: the files are simply not there).
        whiteouts = host.dir / "mac-whiteouts"
        whiteouts.mkdir()
        for name in ("timeout", "nproc"):
            os.mknod(whiteouts / name, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        forms.install(forms.Layout(host.home, "/root", host.home / "homebrew", "/opt/homebrew"),
                      host.lab.agent_binary())
        self.steps += [
            ["mount", "tmpfs", "/mnt", "mode=755"],
            ["mkdir", STANDIN_PROC],
            ["mount", "proc", STANDIN_PROC, ""],
            ["bind", str(host.dir / "loadavg"), f"{STANDIN_PROC}/loadavg"],
            ["touch", STANDIN_CPUS],
            ["bind", str(host.dir / "cpu_online"), STANDIN_CPUS],
            ["mount", "tmpfs", "/opt", "mode=755"],
            ["mkdir", "/opt/homebrew"],
            ["bind", str(host.home / "homebrew"), "/opt/homebrew"],
            ["mount", "overlay", "/usr/bin", f"lowerdir={whiteouts}:/usr/bin"],
            ["bind", str(tools), "/usr/local/bin"],
            ["bind", "/usr/bin/bash", "/usr/bin/dash"],           # /bin/sh -> dash -> bash
            ["bind", "/usr/bin/original-awk", "/usr/bin/mawk"],   # awk -> mawk -> BWK awk
            ["mount", "tmpfs", "/proc", "mode=555"],
            ["mount", "tmpfs", "/sys", "mode=555"],
        ]


# /usr/bin/git on a Mac without the command line tools: xcrun's shim, over SSH (no UI), with the
# message conda-build#1746 quotes, exit 1.
XCODE_SHIM = """#!/bin/sh
echo "xcode-select: error: no developer tools were found at '/Applications/Xcode.app', and no \
install could be requested (perhaps no UI is present), please install manually from \
'developer.apple.com'." >&2
exit 1
"""


def need_tools() -> str | None:
    """Why the platform stand-ins cannot run here, or None."""
    for tool in ("gcc", "node", "toybox", "busybox", "original-awk", "fish", "tcsh", "zsh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


class LinuxSetup(HostSetup):
    """The plain Debian lab host with every install form laid out under /root."""

    def prepare(self, host: LabHost) -> None:
        forms.install(forms.Layout(host.home, "/root", host.home / ".npm-global",
                                   "/root/.npm-global"), host.lab.agent_binary())
