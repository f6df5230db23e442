"""A fleet of real OpenSSH test hosts on this machine, for miyabi-ctl's tests.

Each host is a real ``sshd -D`` inside its own PID, mount and UTS namespace
(``unshare``), listening on its own loopback address ``127.0.K.N:22``.  Inside
the namespace the host has its own ``/root``, ``/tmp``, ``/proc/loadavg`` and
``/sys/devices/system/cpu/online`` (bind mounts of files under the lab
directory), so a test can dictate load, CPU count and the processes that run.

Everything lives under ``/var/lib/miyabi-lab/<lab-id>/`` (not ``/tmp``: every
host mounts its own ``/tmp``), so the shared ``origin.git`` and each host's
config are visible at the same path inside and outside the hosts.

Typical use::

    with Lab() as lab:
        host = lab.add_host("alpha", load=(3.0, 2.0, 1.0), cpus=8)
        host.spawn_agent("claude")
        subprocess.run(["ssh", "-F", str(lab.ssh_config()), "alpha", "ps ax"])
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType

DEFAULT_BASE = Path("/var/lib/miyabi-lab")
MAX_HOSTS = 250
SSH_PORT = 22

# Tools run *inside* a host must not come from /root: the host mounts its own.
INNER_PYTHON = "/usr/bin/python3"
INNER_PATH = "/root/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INNER_ENV = {
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/bash",
    "PATH": INNER_PATH,
    "LANG": "C.UTF-8",
    "TERM": "xterm-256color",
}

NPM_ROOT = "/root/.npm-global/lib/node_modules"
# kind -> (executable name, its arguments); node kinds run a script at args[0]
AGENT_KINDS: dict[str, tuple[str, list[str]]] = {
    "claude": ("claude", ["100000000"]),
    "codex": ("codex", ["100000000"]),
    "claude-node": ("node", [f"{NPM_ROOT}/@anthropic-ai/claude-code/cli.js", "--resume"]),
    "codex-node": ("node", [f"{NPM_ROOT}/@openai/codex/bin/codex.js"]),
}

# PID 1 of every host.  A file (not `python -c`) so `ps` inside shows one tidy
# line.  It imports everything before bind-mounting /root, sets up the
# namespace, starts sshd and then reaps orphans forever like a real init;
# without that, killed processes would linger as zombies.
INIT_PY = r'''"""PID 1 of a miyabi lab host: mounts, hostname, sshd, then reap forever."""
import ctypes, json, os, socket, sys, time

with open(sys.argv[1]) as fh:
    spec = json.load(fh)
libc = ctypes.CDLL(None, use_errno=True)
MS_BIND = 4096
for src, dst in spec["binds"]:
    if libc.mount(src.encode(), dst.encode(), None, MS_BIND, None) != 0:
        sys.exit(f"lab init: mount {src} on {dst}: {os.strerror(ctypes.get_errno())}")
# A platform stand-in's own steps, in order: ["bind", src, dst], ["mount", fstype, dst, options],
# ["mkdir", dst], ["touch", dst].
for step in spec.get("steps", []):
    kind, dst = step[0], step[-1] if step[0] in ("bind", "mkdir", "touch") else step[2]
    if kind == "mkdir":
        os.makedirs(dst, exist_ok=True)
        continue
    if kind == "touch":
        open(dst, "a").close()
        continue
    if kind == "bind":
        rc = libc.mount(step[1].encode(), dst.encode(), None, MS_BIND, None)
    else:
        rc = libc.mount(step[1].encode(), dst.encode(), step[1].encode(), 0,
                        step[3].encode() if step[3] else None)
    if rc != 0:
        sys.exit(f"lab init: {step}: {os.strerror(ctypes.get_errno())}")
socket.sethostname(spec["hostname"])
os.chdir("/root")
os.posix_spawn(spec["argv"][0], spec["argv"], spec["env"])
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.2)
'''

# Run inside a host (via nsenter) to start a detached process.  The spawner
# exits without waiting, so the child is reparented to the namespace init.
SPAWN_PY = r"""
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
extra = {"stdin": subprocess.DEVNULL}
if spec["pipe"]:
    # stdin is a pipe whose write end the child itself holds: reads block forever.
    r, w = os.pipe()
    extra = {"stdin": r, "pass_fds": (w,)}
if spec.get("uid") is not None:
    extra.update(user=spec["uid"], group=spec["gid"], extra_groups=[])
p = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, **extra)
print(p.pid, flush=True)
os._exit(0)
"""

ORIGIN_FILES = [
    ({"README.md": "# miyabi-private\n\nScratch project for the lab.\n"}, "Initial commit"),
    ({"src/app.py": "print('hello from miyabi')\n"}, "Add app"),
    ({"notes/todo.txt": "- ship it\n"}, "Add todo"),
]

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Lab Bot",
    "GIT_AUTHOR_EMAIL": "lab@miyabi.invalid",
    "GIT_COMMITTER_NAME": "Lab Bot",
    "GIT_COMMITTER_EMAIL": "lab@miyabi.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def lab_unavailable_reason() -> str | None:
    """Return None when a Lab can run here, else a human-readable reason."""
    if os.geteuid() != 0:
        return "the lab needs root (namespaces, bind mounts, sshd)"
    if not os.path.exists("/usr/sbin/sshd"):
        return "openssh-server is not installed (/usr/sbin/sshd missing)"
    for tool in ("unshare", "nsenter", "ssh-keygen", "ssh", "git", "tmux"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(INNER_PYTHON):
        return f"{INNER_PYTHON} is missing (used inside the hosts)"
    probe = subprocess.run(
        ["unshare", "--pid", "--mount", "--uts", "--fork", "--mount-proc", "true"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip()}"
    return None


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    """subprocess.run that fails loudly with the command's stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _git(*args: str, cwd: Path | None = None) -> str:
    """Run git with a hermetic config (no user/system gitconfig)."""
    return _run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}).stdout.strip()


def _start_time(pid: int) -> str | None:
    """Kernel start time of pid (guards against pid reuse), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class Lab:
    """A fleet of SSH test hosts; use as a context manager (close() cleans all up)."""

    def __init__(self, base: Path | None = None) -> None:
        reason = lab_unavailable_reason()
        if reason:
            raise RuntimeError(f"lab unavailable: {reason}")
        self.base = Path(base or DEFAULT_BASE)
        self.path = self.base / f"lab-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.hosts: dict[str, LabHost] = {}
        self._lock = threading.Lock()
        self._next_n = 2
        self._closed = False
        self.path.mkdir(parents=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd privsep dir
        self.net = self._reserve_net()
        try:
            self._init_py = self.path / "init.py"
            self._init_py.write_text(INIT_PY)
            self.client_key = self.path / "client_ed25519"
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "miyabi-lab-client",
                  "-f", str(self.client_key)])
            self._client_pub = Path(f"{self.client_key}.pub").read_text()
            self.known_hosts = self.path / "known_hosts"
            self.known_hosts.touch()
            self.origin = self.path / "origin.git"
            self._seed_origin()
        except BaseException:
            self.close()
            raise

    def agent_binary(self) -> Path:
        """The native agents' stand-in binary (tests/lab/platforms/agent.c), built once."""
        from tests.lab.platforms.forms import build_agent_binary

        with self._lock:
            return build_agent_binary(self.path)

    # -- net reservation ------------------------------------------------------------

    def _reserve_net(self) -> int:
        """Atomically claim 127.0.K.0/24 for this lab (K = 1..255).

        A reservation is a directory ``nets/K`` holding the owner's pid; it is
        created by renaming a complete temp dir into place (atomic, and fails
        if K is taken).  A reservation whose owner is dead is reclaimed, after
        killing whatever hosts its lab left behind.
        """
        nets = self.base / "nets"
        nets.mkdir(parents=True, exist_ok=True)
        for _attempt in range(3):
            for k in range(1, 256):
                slot = nets / str(k)
                if self._claim(slot) or (self._reclaim_if_stale(slot) and self._claim(slot)):
                    return k
        raise RuntimeError(f"no free lab net under {nets}")

    def _claim(self, slot: Path) -> bool:
        """Rename a complete temp dir onto slot: atomic, fails if slot is taken."""
        tmp = slot.with_name(f".new-{uuid.uuid4().hex}")
        tmp.mkdir()
        owner = {"pid": os.getpid(), "start": _start_time(os.getpid()), "lab": str(self.path)}
        (tmp / "owner").write_text(json.dumps(owner))
        try:
            os.rename(tmp, slot)
            return True
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            return False

    @staticmethod
    def _reclaim_if_stale(slot: Path) -> bool:
        """Remove slot if its owner process is dead; True if it is now free."""
        try:
            owner = json.loads((slot / "owner").read_text())
        except (OSError, ValueError):
            return False  # vanished or being replaced: let the caller move on
        if owner.get("start") and _start_time(owner["pid"]) == owner["start"]:
            return False
        grave = slot.with_name(f".stale-{uuid.uuid4().hex}")
        try:
            os.rename(slot, grave)  # only one reclaimer wins
        except OSError:
            return False
        lab_dir = Path(owner.get("lab", ""))
        if lab_dir.is_absolute() and lab_dir.exists():
            for pid_file in lab_dir.glob("*/init.pid"):
                try:
                    pid = int(pid_file.read_text())
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if str(lab_dir).encode() in cmdline:
                        os.kill(pid, signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            time.sleep(0.2)  # let the killed namespaces release their ports
            shutil.rmtree(lab_dir, ignore_errors=True)
        shutil.rmtree(grave, ignore_errors=True)
        return True

    # -- origin repo --------------------------------------------------------------

    def _seed_origin(self) -> None:
        _git("init", "-q", "--bare", "-b", "main", str(self.origin))
        for files, message in ORIGIN_FILES:
            self.commit_to_origin("main", files, message)

    def commit_to_origin(self, branch: str, files: dict[str, str], message: str) -> str:
        """Commit files on branch of origin (created from main if new); return the sha."""
        scratch = self.path / f"scratch-{uuid.uuid4().hex[:8]}"
        try:
            _git("clone", "-q", str(self.origin), str(scratch))
            if _git("ls-remote", "--heads", "origin", branch, cwd=scratch):
                _git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=scratch)
            elif _git("ls-remote", "--heads", "origin", "main", cwd=scratch):
                _git("checkout", "-q", "-b", branch, "origin/main", cwd=scratch)
            else:  # empty origin: the first commit
                _git("checkout", "-q", "--orphan", branch, cwd=scratch)
            for rel, text in files.items():
                target = scratch / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            _git("add", "-A", cwd=scratch)
            _git("commit", "-q", "--allow-empty", "-m", message, cwd=scratch)
            _git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=scratch)
            return _git("rev-parse", "HEAD", cwd=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- hosts --------------------------------------------------------------------

    def add_host(
        self,
        name: str,
        *,
        load: tuple[float, float, float] = (0.10, 0.10, 0.10),
        cpus: int | None = None,
        clone: bool = True,
        branch: str | None = None,
        setup: HostSetup | None = None,
    ) -> LabHost:
        """Create, start and wait for one host (its sshd answers when this returns).

        ``setup`` makes it another platform's stand-in (tests/lab/platforms/hosts.py): more
        mounts after the usual ones, another port and hostname, more sshd settings, users."""
        with self._lock:
            if self._closed:
                raise RuntimeError("lab is closed")
            if name in self.hosts:
                raise ValueError(f"host {name!r} already exists")
            if self._next_n > MAX_HOSTS + 1:
                raise RuntimeError(f"a lab holds at most {MAX_HOSTS} hosts")
            address = f"127.0.{self.net}.{self._next_n}"
            self._next_n += 1
            host = LabHost(self, name, address, setup or HostSetup())
            self.hosts[name] = host
        try:
            host._create(load=load, cpus=cpus, clone=clone, branch=branch)
            host.setup.prepare(host)
            host._start()
        except BaseException:
            host.kill()
            with self._lock:
                del self.hosts[name]  # so the name can be retried
            raise
        with self._lock, self.known_hosts.open("a") as fh:
            where = address if host.port == 22 else f"[{address}]:{host.port}"
            fh.write(f"{where} {host.host_pub}\n")
        return host

    def add_hosts(self, names: list[str], **kw: object) -> list[LabHost]:
        """Start many hosts in parallel; same keyword arguments as add_host."""
        workers = max(1, min(32, len(names)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(self.add_host, name, **kw) for name in names]  # type: ignore[arg-type]
            return [f.result() for f in futures]

    def ssh_config(self) -> Path:
        """Write an OpenSSH client config with one Host block per host; return its path."""
        lines = []
        for host in list(self.hosts.values()):
            lines += [
                f"Host {host.name}",
                f"    HostName {host.address}",
                f"    Port {host.port}",
                "    User root",
                f"    IdentityFile {self.client_key}",
                "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {self.known_hosts}",
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "",
            ]
        path = self.path / "ssh_config"
        path.write_text("\n".join(lines))
        return path

    # -- lifetime -----------------------------------------------------------------

    def close(self) -> None:
        """Kill every host, remove the lab dir and release the net reservation."""
        with self._lock:
            self._closed = True
            hosts = list(self.hosts.values())
        for host in hosts:
            host.kill()
        shutil.rmtree(self.path, ignore_errors=True)
        net = getattr(self, "net", None)
        if net is not None:
            slot = self.base / "nets" / str(net)
            try:
                owner = json.loads((slot / "owner").read_text())
                if owner.get("lab") == str(self.path):
                    shutil.rmtree(slot, ignore_errors=True)
            except (OSError, ValueError):
                pass

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class HostSetup:
    """How a host differs from the plain Debian lab host; the default differs in nothing.

    A platform stand-in (tests/lab/platforms/hosts.py) subclasses it: ``prepare`` lays out its
    files once the host's own are there, and fills ``steps`` (mounts done by the host's init,
    after the usual ones), ``sshd`` (more sshd_config lines), ``port`` and ``hostname``."""

    port: int = SSH_PORT
    hostname: str | None = None

    def __init__(self) -> None:
        self.steps: list[list[str]] = []
        self.sshd: list[str] = []

    def prepare(self, host: LabHost) -> None:
        """Called after the host's home, repo and keys exist, before its init starts."""


class LabHost:
    """One SSH host of a Lab: a namespace init running sshd on its own address."""

    def __init__(self, lab: Lab, name: str, address: str, setup: HostSetup | None = None) -> None:
        self.lab = lab
        self.name = name
        self.address = address
        self.setup = setup or HostSetup()
        self.port = self.setup.port
        self.dir = lab.path / name
        self.home = self.dir / "home"
        self.repo = self.home / "miyabi-private"
        self.init_pid = 0
        self.host_pub = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._loadavg = self.dir / "loadavg"
        self._cpu_online = self.dir / "cpu_online"

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, {self.address!r}, init_pid={self.init_pid})"

    # -- creation -----------------------------------------------------------------

    def _create(self, *, load: tuple[float, float, float], cpus: int | None,
                clone: bool, branch: str | None) -> None:
        """Lay out the host's files: home, tmp, fake /proc & /sys files, keys, repo."""
        (self.home / ".ssh").mkdir(parents=True, mode=0o700)
        (self.home / ".local" / "bin").mkdir(parents=True)
        tmp = self.dir / "tmp"
        tmp.mkdir()
        tmp.chmod(0o1777)
        self.set_load(*load)
        if cpus is None:
            self._cpu_online.write_text(Path("/sys/devices/system/cpu/online").read_text())
        else:
            self.set_cpus(cpus)
        (self.home / ".ssh" / "authorized_keys").write_text(self.lab._client_pub)
        (self.home / ".gitconfig").write_text(
            f"[user]\n\tname = {self.name} dev\n\temail = root@{self.name}.lab.invalid\n"
            "[init]\n\tdefaultBranch = main\n")
        key = self.dir / "ssh_host_ed25519_key"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.name, "-f", str(key)])
        self.host_pub = " ".join(Path(f"{key}.pub").read_text().split()[:2])
        (self.dir / "sshd_config").write_text("\n".join([
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {key}",
            "PidFile none",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes no",
            "UseDNS no",
            "MaxStartups 200:30:400",
            "MaxSessions 50",
            "LogLevel ERROR",
            "AllowTcpForwarding yes",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "Subsystem sftp /usr/lib/openssh/sftp-server",
            "",
        ]))
        self._sshd_config = self.dir / "sshd_config"
        if clone:
            # Cloned from outside (same paths inside), so `origin` is the shared repo.
            _git("clone", "-q", str(self.lab.origin), str(self.repo))
            if branch:
                if _git("ls-remote", "--heads", "origin", branch, cwd=self.repo):
                    _git("checkout", "-q", branch, cwd=self.repo)
                else:
                    _git("checkout", "-q", "-b", branch, cwd=self.repo)

    def _start(self) -> None:
        """Start the namespace init (which starts sshd) and wait for the SSH banner."""
        if self.setup.sshd:
            with self._sshd_config.open("a") as fh:
                fh.write("\n".join(self.setup.sshd) + "\n")
        spec = {
            "hostname": self.setup.hostname or self.name,
            "steps": self.setup.steps,
            "binds": [
                [str(self.home), "/root"],
                [str(self.dir / "tmp"), "/tmp"],
                [str(self._loadavg), "/proc/loadavg"],
                [str(self._cpu_online), "/sys/devices/system/cpu/online"],
            ],
            "argv": ["/usr/sbin/sshd", "-D", "-f", str(self.dir / "sshd_config"),
                     "-E", str(self.dir / "sshd.log")],
            "env": {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "LANG": "C.UTF-8"},
        }
        spec_file = self.dir / "init.json"
        spec_file.write_text(json.dumps(spec))
        log = (self.dir / "init.log").open("wb")
        self._proc = subprocess.Popen(
            ["unshare", "--pid", "--mount", "--uts", "--fork", "--mount-proc", "--kill-child",
             INNER_PYTHON, str(self.lab._init_py), str(spec_file)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        log.close()
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
        deadline = time.monotonic() + 30
        while not self.init_pid:
            try:
                first = children.read_text().split()
            except OSError:
                first = []
            if first:
                self.init_pid = int(first[0])
            elif self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"host {self.name} did not start: {self._log()}")
            else:
                time.sleep(0.005)
        (self.dir / "init.pid").write_text(str(self.init_pid))
        self._wait_for_banner(deadline)

    def _wait_for_banner(self, deadline: float) -> None:
        while True:
            try:
                with socket.create_connection((self.address, self.port), timeout=2) as sock:
                    if sock.recv(64).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"sshd of {self.name} did not come up: {self._log()}")
            time.sleep(0.02)

    def _log(self) -> str:
        parts = []
        for fname in ("init.log", "sshd.log"):
            with contextlib.suppress(OSError):
                parts.append((self.dir / fname).read_text().strip())
        return " | ".join(p for p in parts if p) or "(no log)"

    # -- running things inside ------------------------------------------------------

    def _nsenter(self) -> list[str]:
        return ["nsenter", "-t", str(self.init_pid), "-p", "-m", "-u", "--"]

    def sh(
        self, script: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run `sh -c script` inside the host as root (HOME=/root, cwd /root)."""
        argv = [*self._nsenter(), "/bin/sh", "-c", 'cd /root && exec /bin/sh -c "$1"', "sh", script]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=INNER_ENV, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, script, proc.stdout, proc.stderr)
        return proc

    def _spawn(self, argv: list[str], *, cwd: str = "/root", pipe: bool = False,
               env: dict[str, str] | None = None, uid: int | None = None,
               gid: int | None = None) -> int:
        spec = {"argv": argv, "cwd": cwd, "env": env or INNER_ENV, "pipe": pipe, "uid": uid,
                "gid": gid if gid is not None else uid}
        proc = subprocess.run([*self._nsenter(), INNER_PYTHON, "-c", SPAWN_PY, json.dumps(spec)],
                              capture_output=True, text=True, timeout=30, env=INNER_ENV,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"spawn {argv!r} on {self.name} failed: {proc.stderr.strip()}")
        return int(proc.stdout.split()[0])

    def spawn(self, argv: list[str], *, cwd: str = "/root", env: dict[str, str] | None = None,
              uid: int | None = None) -> int:
        """Start a detached long-lived process inside; return its pid as seen inside.

        Its parent exits at once, so it is reparented to the namespace init,
        like a daemon or a process whose terminal went away. ``uid`` runs it as that user.
        """
        return self._spawn(argv, cwd=cwd, env=env, uid=uid)

    def _install_exe(self, name: str, source: str) -> None:
        """Copy an existing binary into /root/.local/bin under another name."""
        target = self.home / ".local" / "bin" / name
        if not target.exists():
            shutil.copy2(source, target)

    def spawn_agent(self, kind: str, *, cwd: str = "/root") -> int:
        """Start a fake coding agent whose `ps` line looks like the real thing.

        Native kinds are copies of sleep named claude/codex; node kinds are a
        copy of perl named node running a script at the real cli.js path
        (perl runs it as `sleep`), so comm and args are exactly as in the wild.
        """
        if kind not in AGENT_KINDS:
            raise ValueError(f"unknown agent kind {kind!r}; one of {sorted(AGENT_KINDS)}")
        exe, args = AGENT_KINDS[kind]
        if exe == "node":
            self._install_exe("node", "/usr/bin/perl")
            script = self.home / Path(args[0]).relative_to("/root")
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text("sleep 100000000;\n")
        else:
            self._install_exe(exe, "/bin/sleep")
        return self._spawn([exe, *args], cwd=cwd)

    def spawn_decoys(self) -> list[int]:
        """Start processes a naive `ps | grep claude` counts but a detector must not.

        Returns the pids (inside) of: a blocked `grep claude`, the tmux server
        of session `claude-build`, `vim /root/.claude/settings.json` and
        `less /root/notes/codex-review.txt` (in tmux windows, so they have a
        tty), and a zombie `[claude] <defunct>` whose parent never waits.
        """
        self._install_exe("claude", "/bin/sleep")
        (self.home / ".claude").mkdir(exist_ok=True)
        (self.home / ".claude" / "settings.json").write_text('{"model": "opus"}\n')
        (self.home / "notes").mkdir(exist_ok=True)
        (self.home / "notes" / "codex-review.txt").write_text("codex review notes\n" * 50)
        grep = self._spawn(["grep", "claude"], pipe=True)
        zombie_parent = self._spawn(
            ["sh", "-c", "/root/.local/bin/claude 0 & exec sleep 100000000"])
        out = self.sh(
            "tmux new-session -d -s claude-build"
            " && tmux new-window -d -t claude-build -- vim /root/.claude/settings.json"
            " && tmux new-window -d -t claude-build -- less /root/notes/codex-review.txt"
            " && tmux display-message -p -t claude-build '#{pid}'"
        ).stdout.split("\n")
        tmux_server = int(out[0])
        deadline = time.monotonic() + 10
        while True:  # a busy machine may not have exec'd vim/less in the panes yet
            listing = self.sh("tmux list-panes -s -t claude-build"
                              " -F '#{pane_pid} #{pane_current_command}'").stdout
            panes = dict(line.split()[::-1] for line in listing.splitlines() if line.strip())
            if "vim" in panes and "less" in panes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"decoy panes did not start on {self.name}: {panes}")
            time.sleep(0.05)
        pids = [grep, tmux_server, int(panes["vim"]), int(panes["less"])]
        deadline = time.monotonic() + 10
        while True:  # wait until the zombie really is one
            children = self.sh(f"cat /proc/{zombie_parent}/task/{zombie_parent}/children").stdout
            for child in children.split():
                stat = self.sh(f"cat /proc/{child}/stat", check=False).stdout
                if stat.rsplit(") ", 1)[-1].startswith("Z"):
                    return [*pids, int(child)]
            if time.monotonic() > deadline:
                raise RuntimeError(f"decoy zombie did not appear on {self.name}")
            time.sleep(0.02)

    # -- knobs ----------------------------------------------------------------------

    def set_load(self, one: float, five: float, fifteen: float) -> None:
        """Rewrite the file bind-mounted on the host's /proc/loadavg (in place)."""
        self._loadavg.write_text(f"{one:.2f} {five:.2f} {fifteen:.2f} 1/120 4242\n")

    def set_cpus(self, n: int) -> None:
        """Rewrite the host's /sys/devices/system/cpu/online (getconf reads it)."""
        if n < 1:
            raise ValueError("a host has at least one CPU")
        self._cpu_online.write_text("0\n" if n == 1 else f"0-{n - 1}\n")

    # -- lifetime -------------------------------------------------------------------

    def kill(self) -> None:
        """SIGKILL the namespace init from outside: everything inside dies with it."""
        if self.init_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
        if self._proc is not None:
            if self._proc.poll() is None and not self.init_pid:
                self._proc.kill()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def restart(self) -> None:
        """Start a killed host again: the same address, keys, home and repository (its disk
        outlives it, as a machine's does a power cut)."""
        self.kill()
        self.init_pid = 0
        self._start()

    def alive(self) -> bool:
        """True while the namespace init (and so the host) is running."""
        return self._proc is not None and self._proc.poll() is None

    def parents(self) -> dict[int, int]:
        """Every process of the host as pid -> parent pid (as seen inside), read from outside:
        a stand-in host may have no /proc inside."""
        try:
            ns = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return {}
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                    continue
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            pid = int(fields["NSpid"].split()[-1])
            ppid_outside = int(fields["PPid"])
            try:
                ppid = int(Path(f"/proc/{ppid_outside}/status").read_text()
                           .split("NSpid:", 1)[1].splitlines()[0].split()[-1])
            except (OSError, IndexError):
                ppid = 0
            found[pid] = ppid if pid != 1 else 0
        return found

    def pids(self) -> list[int]:
        """Pids (as seen inside) of every process in the host's PID namespace."""
        return sorted(self.parents())
