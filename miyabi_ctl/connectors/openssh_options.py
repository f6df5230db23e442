"""``client: openssh``: the ``ssh`` command line for one host, where its master connection's
socket lives, and ssh's words read back as miyabi-ctl's error kinds. No paramiko here.

fleet.yaml's settings become ssh's own options, given on the command line so they win over the
config file (as the paramiko client applies them): ``strict_host_keys`` is
``StrictHostKeyChecking``; ``known_hosts`` is the first ``UserKnownHostsFile`` (where accept-new
writes), followed by the host's own from the config; ``connect_timeout`` is ``ConnectTimeout``
unless the config's is smaller; ``BatchMode=yes`` (never a prompt); a host's ``identity_file`` is
``-i``, its ``proxy_jump`` is ``-J``, a ``user@host:port`` target is ``-l`` and ``-p``.
Everything else — HostName, ProxyCommand, certificates, FIDO keys, ``Match``, ``IdentityAgent``,
GSSAPI — is the user's ssh config, read by ssh itself.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import stat
import subprocess
import tempfile
from pathlib import Path

from miyabi_ctl.connectors.target import parse_target
from miyabi_ctl.errors import AuthFailed, HostError, HostKeyError, Unreachable
from miyabi_ctl.inventory import HostSpec, SSHSettings
from miyabi_ctl.state import state_dir

DEFAULT_CONFIG = "~/.ssh/config"
#: A unix socket's path holds 104 bytes on macOS (108 on Linux), the final NUL included, and
#: ssh first binds ControlPath plus ".XXXXXXXXXXXXXXXX" before renaming it into place.
SOCKET_PATH_ROOM = 104 - 1 - 17


def config_args(settings: SSHSettings) -> list[str]:
    """``-F`` as fleet.yaml's ``ssh.config`` says: nothing for the default (ssh reads
    ~/.ssh/config and /etc/ssh/ssh_config, as the operator's own ssh does), ``-F none`` for
    ``null`` or a file that does not exist (as the paramiko client reads none), else the file."""
    if settings.config is None:
        return ["-F", "none"]
    path = Path(settings.config).expanduser()
    if path == Path(DEFAULT_CONFIG).expanduser():
        return []
    return ["-F", str(path)] if path.is_file() else ["-F", "none"]


def target_args(spec: HostSpec) -> tuple[list[str], str]:
    """(options naming the user, port and key fleet.yaml gives, the host argument)."""
    return _address(spec.ssh or spec.name) + (
        ["-i", str(Path(spec.identity_file).expanduser())] if spec.identity_file else []), \
        parse_target(spec.ssh or spec.name).host


def _address(text: str) -> list[str]:
    target = parse_target(text)
    return [*(["-p", str(target.port)] if target.port else []),
            *(["-l", target.user] if target.user else [])]


def jump_option(program: str, settings: SSHSettings, jump: str,
                log: Path | None = None) -> list[str]:
    """fleet.yaml's ``proxy_jump`` (one hop) as the ProxyCommand ssh's own ``-J`` would run —
    ``ssh -W [%h]:%p JUMP`` — but with fleet.yaml's host-key settings and BatchMode, which
    ``-J`` does not pass on: the jump host's key is judged like the host's, and never prompts.
    ``log``: where the jump's ssh says why it failed (a master connection's ProxyCommand has
    its stderr at /dev/null)."""
    if "," in jump:
        raise ValueError(f"proxy_jump {jump!r}: one hop only (a chain can be written as "
                         "ProxyJump in the ssh config)")
    argv = [program, *config_args(settings), *_address(jump),
            *fleet_options(settings, {}), *(["-E", str(log)] if log else [])]
    words = " ".join(shlex.quote(a).replace("%", "%%") for a in argv)
    return ["-o", f"ProxyCommand={words} -W '[%h]:%p' -- {shlex.quote(parse_target(jump).host)}"]


def resolved_config(program: str, args: list[str], host: str, timeout: float) -> dict[str, str]:
    """``ssh -G``: the options ssh would use for ``host`` (HostName, Port, User,
    UserKnownHostsFile, ConnectTimeout, …), as it resolves them. ValueError with ssh's words
    when the config is wrong."""
    try:
        proc = subprocess.run([program, "-G", *args, "--", host], capture_output=True,
                              text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ValueError(f"`ssh -G` did not answer within {timeout:g}s (a Match exec "
                         "that hangs?)") from None
    if proc.returncode != 0:
        words = [line for line in proc.stderr.splitlines() if line.strip()]
        raise ValueError(words[-1] if words else f"ssh -G exited {proc.returncode}")
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, value)
    return found


def fleet_options(settings: SSHSettings, resolved: dict[str, str]) -> list[str]:
    """fleet.yaml's SSH settings as ssh options (they win over the config file's)."""
    known = [str(Path(settings.known_hosts).expanduser())]
    # ssh -G writes the list with spaces between, unquoted: the fleet's own file is recognised
    # whatever it holds, the config's others are read as words.
    listed = resolved.get("userknownhostsfile", "")
    listed = listed[len(known[0]):] if listed.startswith(known[0]) else listed
    for path in listed.split():
        if path not in known and path.lower() != "none":
            known.append(path)
    timeout = settings.connect_timeout
    if resolved.get("connecttimeout", "none").isdigit():
        timeout = min(timeout, float(resolved["connecttimeout"]))
    return ["-T", "-o", "BatchMode=yes",
            "-o", f"StrictHostKeyChecking={settings.strict_host_keys}",
            "-o", "UserKnownHostsFile=" + " ".join(_quoted(p) for p in known),
            "-o", f"ConnectTimeout={max(1, math.ceil(timeout))}"]


def _quoted(path: str) -> str:
    return f'"{path}"' if any(c.isspace() for c in path) else path


def control_dir(directory: Path | None = None) -> Path:
    """Where this controller's master connections listen: ``<state dir>/ssh``, or, when that
    path leaves too little room in a unix socket's path (a deep Termux or test home), a short
    per-state-dir directory in the temporary directory. Private (0700) and ours, or refused: a
    socket there is a way into every host. ValueError, in words, when it cannot be."""
    state = directory or state_dir()
    path = state / "ssh"
    if len(os.fsencode(path)) + 1 + 16 > SOCKET_PATH_ROOM:
        digest = hashlib.sha256(os.fsencode(state.resolve())).hexdigest()[:8]
        path = Path(tempfile.gettempdir()) / f"miyabi-{os.getuid()}-{digest}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ValueError(f"cannot make {path} for ssh's master connections: "
                         f"{exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ValueError(f"{path} is not a private directory of this user (mode "
                         f"{stat.filemode(info.st_mode)}, owner uid {info.st_uid}); refusing to "
                         "keep ssh's master connections there")
    return path


def identity(settings: SSHSettings, given: list[str], host: str) -> list[str]:
    """Everything that decides how a host is reached and its key judged: ssh, the config file
    (and when it last changed: an edit takes effect at once, with a new master), the target,
    fleet.yaml's host-key settings."""
    config = (given[given.index("-F") + 1] if "-F" in given
              else str(Path(DEFAULT_CONFIG).expanduser()))
    try:
        changed = str(os.stat(config).st_mtime_ns)
    except OSError:
        changed = "-"
    return [*given, host, changed, str(Path(settings.known_hosts).expanduser()),
            settings.strict_host_keys, f"{settings.connect_timeout:g}",
            f"{settings.control_persist:g}"]


def control_path(directory: Path, identity: list[str]) -> Path:
    """One socket per distinct way of reaching a host: a master made under other host-key
    settings or another config is never reused."""
    return directory / hashlib.sha256("\0".join(identity).encode()).hexdigest()[:16]


def saved_command(path: Path) -> list[str] | None:
    """The ssh command line the master at ``path`` was made with, if it was saved."""
    try:
        argv = json.loads(Path(f"{path}.argv").read_text())
    except (OSError, ValueError):
        return None
    return argv if isinstance(argv, list) and all(isinstance(a, str) for a in argv) else None


def save_command(path: Path, argv: list[str]) -> None:
    """Keep ``argv`` beside the socket (private directory; written whole, then renamed)."""
    saved = Path(f"{path}.argv")
    partial = Path(f"{path}.argv.{os.getpid()}")
    try:
        partial.write_text(json.dumps(argv))
        os.replace(partial, saved)
    except OSError:
        partial.unlink(missing_ok=True)  # only costs an ssh -G next time


HOSTKEY_WORDS = ("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
                 "host key is known for", "Certificate invalid", "revoked")
AUTH_WORDS = ("Permission denied (", "Too many authentication failures",
              "No more authentication methods")
CONFIG_WORDS = ("Bad configuration option", "Can't open user config file",
                "Bad owner or permissions", "no argument after keyword", "unknown key %",
                "Unsupported option", "garbage at end of line", "Missing argument")
UNRECORDED = re.compile(r"Failed to add the host to the list of known hosts \((.*)\)\.?$")


def ssh_words(log: str) -> list[str]:
    """ssh's own lines, without the frames of its banners (``@@@@``) and blank lines."""
    return [line.strip() for line in log.replace("\r", "").splitlines()
            if line.strip() and not set(line.strip()) <= {"@"}]


def failure(name: str, log: str, proxy_said: str = "") -> HostError:
    """ssh exited 255 having said ``log``: the error of the kind the paramiko client would
    raise (hostkey, auth, unreachable; a config error is a plain HostError). ``proxy_said`` is
    what a ProxyCommand (a jump host's ssh) printed: why the connection closed under ssh."""
    text = " ".join(w.strip("@ ").strip() for w in ssh_words(log) if not benign(w))
    text = text or "ssh failed without saying why"
    said = " ".join(w.strip("@ ").strip() for w in ssh_words(proxy_said))
    for words, kind, message in ((HOSTKEY_WORDS, HostKeyError, "ssh refused the host key: {}"),
                                 (AUTH_WORDS, AuthFailed, "{} (ssh)"),
                                 (CONFIG_WORDS, HostError, "ssh config: {}")):
        if any(k in text for k in words):
            return kind(name, message.format(text))
        if any(k in said for k in words):
            return kind(name, message.format(f"{said} (the ProxyCommand); {text}"))
    return Unreachable(name, f"ssh: {text}" + (f" (the ProxyCommand said: {said})" if said else ""))


def benign(line: str) -> bool:
    """What ssh says at INFO level on a connection that worked (accept-new's note)."""
    return line.startswith("Warning: Permanently added") or bool(UNRECORDED.search(line))


def unrecorded_files(log: str) -> list[str]:
    """known_hosts files accept-new could not write (ssh went on, as it should)."""
    return [m[1] for w in ssh_words(log) if (m := UNRECORDED.search(w))]
