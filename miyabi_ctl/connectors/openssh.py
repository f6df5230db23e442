"""``client: openssh``: a machine reached with the system's ``ssh`` program and the operator's own
ssh config, so everything OpenSSH can do works — host certificates, FIDO keys, ``Match``,
agents named by ``IdentityAgent`` (1Password, Secretive), GSSAPI, ProxyCommand — with the same
remote command (``sh -s``, values on stdin), the same timeouts and the same error kinds as the
paramiko client. Never imports paramiko.

Multiplexed: the first command to a host leaves a master connection (``ControlMaster=auto``)
listening on miyabi-ctl's own socket under the state directory for ``ssh.control_persist``
seconds, so the next command — the rest of a plan, the next ``--watch`` refresh, cron's next
``check`` — costs one round trip instead of a handshake. ``close()`` leaves the master to
ControlPersist, as ssh does; a command that times out ends it, so the next one starts afresh.

ssh's own messages go to a log file of their own (``-E``), so a remote script's stderr is never
mistaken for ssh's: exit status 255 with words in the log is ssh failing, read back as
unreachable, auth, hostkey (``openssh_options.failure``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from miyabi_ctl.connectors import openssh_options as opts
from miyabi_ctl.connectors.base import Host, RunResult, Warn, log_warning, unrecorded_key
from miyabi_ctl.connectors.local import end_group
from miyabi_ctl.errors import CommandTimeout, HostError, Unreachable
from miyabi_ctl.inventory import HostSpec, SSHSettings


class OpenSSHHost(Host):
    """A machine reached with the ssh program; one master connection per host, kept alive."""

    def __init__(self, spec: HostSpec, settings: SSHSettings, *, warn: Warn = log_warning,
                 program: str | None = None):
        super().__init__(spec)
        self.settings = settings
        self.warn = warn
        self.program = program or shutil.which("ssh")
        self._argv: list[str] | None = None  # ssh and every option but the per-call ones
        self._host_arg = ""
        self.control_path: Path | None = None  # None: not multiplexed (control_persist: 0)
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()

    # -- the command line, worked out once -----------------------------------------------

    def _command(self) -> list[str]:
        with self._lock:
            if self._argv is None:
                self._argv = self._resolve()
            return self._argv

    def _resolve(self) -> list[str]:
        """ssh's command line for this host. With a master listening, the one it was made with
        (saved beside its socket): a warm command costs no ``ssh -G``."""
        if self.program is None:
            raise HostError(self.name, "client: openssh runs the ssh program, and there is none "
                                       "on PATH (Debian: apt install openssh-client; Termux: "
                                       "pkg install openssh)")
        target, self._host_arg = opts.target_args(self.spec)
        given = [self.program, *opts.config_args(self.settings), *target]
        jump = self.spec.proxy_jump
        if self.settings.control_persist <= 0:
            return [*self._options(given + self._jump(None)), "-o", "ControlMaster=no",
                    "-o", "ControlPath=none"]
        try:
            directory = opts.control_dir()
        except ValueError as exc:
            raise HostError(self.name, str(exc)) from None
        self.control_path = opts.control_path(directory, opts.identity(
            self.settings, [*given, *(["-J", jump] if jump else [])], self._host_arg))
        given += self._jump(self.jump_log)
        saved = opts.saved_command(self.control_path)
        if saved is not None and master_listening(self.control_path):
            return saved
        argv = [*self._options(given), "-o", "ControlMaster=auto",
                "-o", "ControlPath=" + str(self.control_path).replace("%", "%%"),
                "-o", f"ControlPersist={max(1, round(self.settings.control_persist))}"]
        opts.save_command(self.control_path, argv)
        return argv

    @property
    def jump_log(self) -> Path | None:
        """Where the jump host's ssh writes why it failed (beside the master's socket)."""
        return Path(f"{self.control_path}.jump") if self.control_path else None

    def _jump(self, log: Path | None) -> list[str]:
        if not self.spec.proxy_jump:
            return []
        try:
            return opts.jump_option(self.program or "ssh", self.settings, self.spec.proxy_jump,
                                    log)
        except ValueError as exc:
            raise HostError(self.name, str(exc)) from None

    def _options(self, given: list[str]) -> list[str]:
        """``given`` and fleet.yaml's settings as ssh options, after ``ssh -G``."""
        try:
            resolved = opts.resolved_config(given[0], given[1:], self._host_arg,
                                            self.settings.connect_timeout)
        except ValueError as exc:
            raise HostError(self.name, f"ssh config: {exc}") from None
        return [*given, *opts.fleet_options(self.settings, resolved)]

    # -- commands ------------------------------------------------------------------------

    def _run(self, command: str, stdin: str | None, timeout: float | None) -> RunResult:
        limit = timeout or self.settings.command_timeout
        started = time.monotonic()
        argv = self._command()
        log_dir = self.control_path.parent if self.control_path else None
        fd, log_name = tempfile.mkstemp(prefix="log-", dir=log_dir)
        os.close(fd)
        log = Path(log_name)
        try:
            with tempfile.TemporaryFile() as err:
                code, out = self._call([*argv, "-E", log_name, "--", self._host_arg, command],
                                       stdin, err, limit, log)
                err.seek(0)
                stderr = err.read()
            said = log.read_text(errors="replace")
        finally:
            log.unlink(missing_ok=True)
        if code == 255 and any(not opts.benign(w) for w in opts.ssh_words(said)):
            raise opts.failure(self.name, said, stderr.decode(errors="replace")
                               + self._jump_said())
        if code < 0:
            raise Unreachable(self.name, f"ssh was ended by signal {-code}")
        for path in opts.unrecorded_files(said):
            self.warn(unrecorded_key(self.name, path, "ssh could not write it"))
        return RunResult(self.name, command, code, out.decode(errors="replace"),
                         stderr.decode(errors="replace"), time.monotonic() - started)

    def _jump_said(self) -> str:
        """What the jump host's ssh logged (then forgotten: the next failure has its own)."""
        log = self.jump_log
        if log is None or not self.spec.proxy_jump:
            return ""
        try:
            said = log.read_text(errors="replace")
            log.unlink()
        except OSError:
            return ""
        return said

    def _call(self, argv: list[str], stdin: str | None, err: object, limit: float,
              log: Path) -> tuple[int, bytes]:
        """Run ssh: the connection within the connect timeout, the command within ``limit``
        from when the connection is there — the master's socket listening, which is also how a
        command that overran is told from a host that never let us in."""
        # stderr to a file, not a pipe: a ProxyCommand started by a new master inherits it
        # and lives as long as the master, so a pipe would not see its end for a minute.
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else
                                subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err,
                                start_new_session=True)
        with self._lock:
            self._running.add(proc)
        now = started = time.monotonic()
        multiplexed = self.control_path is not None
        connected = now if multiplexed and master_listening(self.control_path) else None
        if not multiplexed:  # no socket to watch: connection and command share one budget
            limit += self.settings.connect_timeout
            connected = now
        feed = stdin.encode() if stdin is not None else None
        try:
            while True:
                waiting = connected is None
                try:
                    out, _ = proc.communicate(feed, timeout=0.05 if waiting else
                                              max(0.0, connected + limit - now))
                    return proc.returncode, out
                except subprocess.TimeoutExpired:
                    feed = None  # sent (Popen keeps sending it); never twice
                now = time.monotonic()
                if waiting and self.control_path and master_listening(self.control_path):
                    connected = now
                elif waiting and "disabling multiplexing" in log.read_text(errors="replace"):
                    # ssh could not make its socket and connects without one: as unmultiplexed
                    connected, limit = started, limit + self.settings.connect_timeout
                elif waiting and now - started > self.settings.connect_timeout:
                    end_group(proc)
                    raise Unreachable(self.name, "no SSH session within the connect timeout "
                                                 f"({self.settings.connect_timeout:g}s)")
                elif not waiting and now >= connected + limit:
                    end_group(proc)
                    if multiplexed:
                        self.end_master()  # a connection that let a command hang is not reused
                    raise CommandTimeout(self.name, f"command timed out after {limit:g}s")
        finally:
            with self._lock:
                self._running.discard(proc)

    def close(self) -> None:
        """End the ssh processes still running (a fleet deadline passed). The master connection
        stays for ControlPersist seconds, for the next command."""
        with self._lock:
            running = list(self._running)
        for proc in running:  # the worker waiting on it sees it end
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def end_master(self) -> None:
        """Ask this host's master connection, if any, to exit now."""
        if self.control_path is None or self.program is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([self.program, "-F", "none", "-o",
                            "ControlPath=" + str(self.control_path).replace("%", "%%"),
                            "-O", "exit", "--", self._host_arg or self.name],
                           capture_output=True, timeout=5, stdin=subprocess.DEVNULL)


def end_masters(state: Path | None = None, program: str = "ssh") -> int:
    """Ask every master connection of this controller (or of the state directory ``state``) to
    exit now, rather than when ControlPersist runs out; how many there were."""
    try:
        directory = opts.control_dir(state)
    except ValueError:
        return 0
    ended = 0
    for sock in directory.iterdir():
        if sock.is_socket() and master_listening(sock):
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([program, "-F", "none", "-o",
                                "ControlPath=" + str(sock).replace("%", "%%"), "-O", "exit",
                                "--", "master"], capture_output=True, timeout=5,
                               stdin=subprocess.DEVNULL)
                ended += 1
    return ended


def master_listening(path: Path) -> bool:
    """Is a master connection listening on ``path``? (A socket file left by a master that died
    refuses; ssh then replaces it.)"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True
