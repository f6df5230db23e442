"""known_hosts, read the way OpenSSH reads it, and the decision to trust a host's key.

Our own reader rather than paramiko's ``HostKeys``: that one raises on ``@cert-authority`` and
``@revoked`` lines (valid OpenSSH syntax) and on any corrupt line, and compares only the first key
of each type for a host, so a host listed with two keys of one type looked "changed". Keys are
compared as bytes; no key object is built for the hundreds of lines nobody asks about.

The rules follow OpenSSH's ssh (sshconnect.c ``check_host_key``, hostfile.c):

- a host is looked up under its ``HostKeyAlias`` (no port appended) or as ``host`` /
  ``[host]:port``, lower-cased, in the user files and then the global files
  (``GlobalKnownHostsFile``, by default /etc/ssh/ssh_known_hosts and ssh_known_hosts2);
- only the lines whose host patterns match that name count, markers included: an ``@revoked``
  line refuses its key for the hosts its patterns name (``@revoked *`` for every host), and
  ``RevokedHostKeys`` files refuse their keys for every host;
- the key matches a plain line: trusted. A plain line exists but none matches: changed. None
  exists: new — for a port other than 22 (and no alias), a matching key listed for the bare
  ``host`` is trusted, as ssh does;
- ``@cert-authority`` lines vouch for host *certificates*. paramiko negotiates no certificate host
  key algorithms, so it only ever sees the plain key and cannot check a certificate: a host known
  only through a CA line is never trusted on first use (OpenSSH would have checked the
  certificate) and the error says so.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path

import paramiko

from miyabi_ctl.connectors.base import Warn, log_warning, unrecorded_key
from miyabi_ctl.errors import HostKeyError

# The server host key algorithms that prove possession of a key of each known_hosts type.
ALGORITHMS_FOR_TYPE = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}
GLOBAL_KNOWN_HOSTS = (Path("/etc/ssh/ssh_known_hosts"), Path("/etc/ssh/ssh_known_hosts2"))
KRL_MAGIC = b"SSHKRL\n\0"


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    """OpenSSH host patterns know only ``*`` and ``?``; ``[host]:port`` brackets are literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern.lower()), re.IGNORECASE)


@dataclass(frozen=True)
class KnownKey:
    patterns: str
    key_type: str
    blob: bytes
    marker: str | None  # None, "@revoked" or "@cert-authority"
    path: Path | None = None
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def matches(self, entry: str) -> bool:
        """Does this line's host field name ``entry`` (``host`` or ``[host]:port``, lower case)?"""
        if self.patterns.startswith("|1|"):
            try:
                _, _, salt, digest = self.patterns.split("|", 3)
                mac = hmac.new(base64.b64decode(salt), entry.encode(), hashlib.sha1).digest()
                return hmac.compare_digest(mac, base64.b64decode(digest))
            except (ValueError, binascii.Error):
                return False
        matched = False
        for pattern in self.patterns.split(","):
            negated = pattern.startswith("!")
            if _glob(pattern[1:] if negated else pattern).fullmatch(entry):
                if negated:
                    return False
                matched = True
        return matched


def read_known_hosts(path: Path) -> list[KnownKey]:
    """Every usable line of one file; comments, blank, malformed and unknown lines skipped."""
    keys = []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if marker not in (None, "@revoked", "@cert-authority") or len(fields) < 3:
            continue  # ssh skips a line with an unknown marker too
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (ValueError, binascii.Error):
            continue
        keys.append(KnownKey(fields[0], fields[1], blob, marker, path, number))
    return keys


@dataclass(frozen=True)
class HostKeyLookup:
    """Where, and under which name, OpenSSH looks up one host's key."""

    name: str  # the HostKeyAlias, else host or [host]:port, lower case
    host: str  # what to connect to, for advice (ssh-keyscan)
    port: int
    user_files: tuple[Path, ...]  # the first one is where accept-new records a key
    global_files: tuple[Path, ...] = GLOBAL_KNOWN_HOSTS
    revoked_files: tuple[Path, ...] = ()
    alias: bool = False

    @classmethod
    def for_host(cls, host: str, port: int, user_files: tuple[Path, ...], *,
                 alias: str | None = None, global_files: tuple[Path, ...] = GLOBAL_KNOWN_HOSTS,
                 revoked_files: tuple[Path, ...] = ()) -> HostKeyLookup:
        host = host.lower()
        name = alias.lower() if alias else host if port == 22 else f"[{host}]:{port}"
        return cls(name, host, port, user_files, global_files, revoked_files, bool(alias))

    @property
    def bare_name(self) -> str | None:
        """ssh's second try for a host on another port: the key listed for ``host`` alone."""
        return None if self.alias or self.port == 22 else self.host

    @property
    def files(self) -> tuple[Path, ...]:
        return self.user_files + tuple(f for f in self.global_files if f not in self.user_files)


class KnownHosts:
    """known_hosts files shared by every connection of a fleet: each read once, appended to
    under a lock."""

    def __init__(self, strict: str, warn: Warn = log_warning):
        self.strict = strict
        self.warn = warn
        self._lock = threading.Lock()
        self._files: dict[Path, list[KnownKey]] = {}
        self._matches: dict[tuple[str, tuple[Path, ...]], list[KnownKey]] = {}

    def _keys_of(self, path: Path) -> list[KnownKey]:
        keys = self._files.get(path)
        if keys is None:
            keys = self._files[path] = read_known_hosts(path)
        return keys

    def entries(self, name: str, files: tuple[Path, ...]) -> list[KnownKey]:
        """Every line (markers included) of ``files`` naming ``name``; remembered, since each
        connection asks twice and a hashed file costs an HMAC per line per question."""
        with self._lock:
            found = self._matches.get((name, files))
            if found is None:
                found = [k for path in files for k in self._keys_of(path) if k.matches(name)]
                self._matches[(name, files)] = found
            return found

    def preferred_algorithms(self, lookup: HostKeyLookup,
                             offered: tuple[str, ...]) -> tuple[str, ...]:
        """Known key types first, as OpenSSH orders them, so a host known only by its RSA key is
        asked for that key instead of being refused for offering ed25519."""
        wanted: list[str] = []
        for key in self.entries(lookup.name, lookup.files):
            if key.marker is not None:
                continue
            for algorithm in ALGORITHMS_FOR_TYPE.get(key.key_type, (key.key_type,)):
                if algorithm in offered and algorithm not in wanted:
                    wanted.append(algorithm)
        return (*wanted, *(a for a in offered if a not in wanted))

    def verify(self, label: str, lookup: HostKeyLookup, key: paramiko.PKey) -> None:
        """Accept the key, or raise HostKeyError saying exactly what to do about it."""
        blob, key_type, fingerprint = key.asbytes(), key.get_name(), key.fingerprint
        name = lookup.name
        self._check_revoked_files(label, lookup, blob, f"{key_type} {fingerprint}")
        entries = self.entries(name, lookup.files)
        revoked = next((k for k in entries if k.marker == "@revoked" and k.blob == blob), None)
        if revoked is not None:
            raise HostKeyError(label, f"the host key of {name} ({key_type} {fingerprint}) is "
                                      f"marked @revoked in {revoked.where}; refusing to connect")
        plain = [k for k in entries if k.marker is None]
        if any(k.blob == blob for k in plain):
            return
        if plain:
            if self.strict == "no":
                return
            raise HostKeyError(label, self._changed_message(lookup, plain, key))
        if lookup.bare_name and self._bare_name_lists(lookup, blob):
            return
        if self.strict == "no":
            return
        authorities = [k for k in entries if k.marker == "@cert-authority"]
        if authorities:
            raise HostKeyError(label, (
                f"{name} is known only through @cert-authority ({authorities[0].where}): "
                f"OpenSSH would check the host's certificate against that CA, but miyabi-ctl's "
                f"SSH library (paramiko) cannot negotiate host certificates, so it sees only the "
                f"plain key {key_type} {fingerprint} and cannot verify it"
                + (" and will not trust it on first use" if self.strict == "accept-new" else "")
                + ". Set `client: openssh` for this host (or under ssh:) in fleet.yaml to have "
                "the ssh program check the certificate, or, after checking that fingerprint out "
                f"of band (e.g. `ssh-keygen -lf /etc/ssh/ssh_host_{_short_type(key_type)}_key.pub"
                f"` on the host), add the plain key: {self._add_advice(lookup, key_type)}"))
        if self.strict == "yes":
            raise HostKeyError(label, (
                f"unknown host key for {name} ({key_type} {fingerprint}). Verify the "
                f"fingerprint out of band, then trust it with "
                f"{self._add_advice(lookup, key_type)}"
                + ", or set ssh.strict_host_keys: accept-new in fleet.yaml"))
        self._remember(label, lookup, key)

    def _bare_name_lists(self, lookup: HostKeyLookup, blob: bytes) -> bool:
        assert lookup.bare_name is not None
        entries = self.entries(lookup.bare_name, lookup.files)
        return (any(k.marker is None and k.blob == blob for k in entries)
                and not any(k.marker == "@revoked" and k.blob == blob for k in entries))

    def _check_revoked_files(self, label: str, lookup: HostKeyLookup, blob: bytes,
                             described: str) -> None:
        """``RevokedHostKeys``: a plain list of public keys refused for every host. ssh refuses
        to connect when the file cannot be read, and so do we; a binary KRL we cannot read."""
        for path in lookup.revoked_files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise HostKeyError(label, f"cannot read RevokedHostKeys {path}: "
                                          f"{exc.strerror or exc}; refusing to connect") from None
            if data.startswith(KRL_MAGIC):
                raise HostKeyError(label, f"RevokedHostKeys {path} is a binary KRL, which "
                                          "miyabi-ctl cannot read; list the revoked public keys "
                                          "in a text file instead. Refusing to connect")
            for line in data.decode("utf-8", "replace").splitlines():
                fields = line.split()
                if len(fields) >= 2 and not fields[0].startswith("#"):
                    try:
                        if base64.b64decode(fields[1], validate=True) == blob:
                            raise HostKeyError(label, f"the host key {described} is listed in "
                                                      f"RevokedHostKeys {path}; refusing to "
                                                      "connect")
                    except (ValueError, binascii.Error):
                        continue

    def _changed_message(self, lookup: HostKeyLookup, plain: list[KnownKey],
                         key: paramiko.PKey) -> str:
        types = ", ".join(sorted({k.key_type for k in plain}))
        where = ", ".join(k.where for k in plain)
        files = list(dict.fromkeys(k.path for k in plain if k.path is not None))
        fixes = " and ".join(f"`ssh-keygen -f {shlex.quote(str(f))} -R {shlex.quote(lookup.name)}`"
                             for f in files)
        return (f"HOST KEY CHANGED for {lookup.name}: it offers {key.get_name()} "
                f"{key.fingerprint}, which is not the key known_hosts holds for it ({types}, "
                f"{where}). This may be an attack. If the host was really reinstalled, remove "
                f"the old key with {fixes} and connect again.")

    def _add_advice(self, lookup: HostKeyLookup, key_type: str) -> str:
        port_flag = f"-p {lookup.port} " if lookup.port != 22 else ""
        target = shlex.quote(str(lookup.user_files[0]))
        scan = f"ssh-keyscan -t {key_type} {port_flag}{shlex.quote(lookup.host)}"
        if lookup.alias:  # recorded under the alias, as ssh looks it up
            rename = shlex.quote(f"s/^[^ ]*/{lookup.name.replace('/', chr(92) + '/')}/")
            return f"`{scan} | sed {rename} >> {target}` (HostKeyAlias {lookup.name})"
        return f"`{scan} >> {target}`"

    def _remember(self, label: str, lookup: HostKeyLookup, key: paramiko.PKey) -> None:
        """accept-new: trust on first use, and write it down as OpenSSH would. A file that cannot
        be written is said in words, and the connection goes on, as ssh's does."""
        path = lookup.user_files[0]
        with self._lock:
            try:
                lines = len(path.read_bytes().splitlines())
            except OSError:
                lines = 0
            self._keys_of(path).append(KnownKey(lookup.name, key.get_name(), key.asbytes(), None,
                                                path, lines + 1))
            self._matches.clear()
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(f"{lookup.name} {key.get_name()} {key.get_base64()}\n")
            except OSError as exc:
                self.warn(unrecorded_key(label, path, exc.strerror or str(exc)))


def _short_type(key_type: str) -> str:
    """``ssh-ed25519`` → ``ed25519``, ``ecdsa-sha2-nistp256`` → ``ecdsa``: host key file names."""
    return "ecdsa" if key_type.startswith("ecdsa") else key_type.removeprefix("ssh-")
