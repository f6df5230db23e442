"""known_hosts, read the way OpenSSH reads it, and the decision to trust a host's key.

Our own reader rather than paramiko's ``HostKeys``: that one raises on ``@cert-authority`` and
``@revoked`` lines (valid OpenSSH syntax) and on any corrupt line, and compares only the first key
of each type for a host, so a host listed with two keys of one type looked "changed". Keys are
compared as bytes; no key object is built for the hundreds of lines nobody asks about.
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

from miyabi_ctl.errors import HostKeyError

# The server host key algorithms that prove possession of a key of each known_hosts type.
ALGORITHMS_FOR_TYPE = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
}


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

    def matches(self, entry: str) -> bool:
        """Does this line's host field name ``entry`` (``host`` or ``[host]:port``)?"""
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
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (ValueError, binascii.Error):
            continue
        keys.append(KnownKey(fields[0], fields[1], blob, marker))
    return keys


class KnownHosts:
    """known_hosts shared by every connection of a fleet: read once, appended under a lock."""

    def __init__(self, paths: list[Path], strict: str):
        self.strict = strict
        self.paths = paths
        self._lock = threading.Lock()
        self._keys = [k for path in paths for k in read_known_hosts(path)]
        self._matches: dict[str, list[KnownKey]] = {}

    @staticmethod
    def lookup_name(host: str, port: int) -> str:
        return host if port == 22 else f"[{host}]:{port}"

    def known_for(self, host: str, port: int) -> list[KnownKey]:
        """The keys listed for a host; remembered, since each connection asks twice and a hashed
        known_hosts costs an HMAC per line per question."""
        entry = self.lookup_name(host, port)
        with self._lock:
            found = self._matches.get(entry)
            if found is None:
                found = [k for k in self._keys if k.marker is None and k.matches(entry)]
                self._matches[entry] = found
            return found

    def preferred_algorithms(self, host: str, port: int, offered: tuple[str, ...]) -> tuple[str, ...]:
        """Known key types first, as OpenSSH orders them, so a host known only by its RSA key is
        asked for that key instead of being refused for offering ed25519."""
        wanted: list[str] = []
        for key in self.known_for(host, port):
            for algorithm in ALGORITHMS_FOR_TYPE.get(key.key_type, (key.key_type,)):
                if algorithm in offered and algorithm not in wanted:
                    wanted.append(algorithm)
        return (*wanted, *(a for a in offered if a not in wanted))

    def verify(self, name: str, host: str, port: int, key: paramiko.PKey) -> None:
        """Accept the key, or raise HostKeyError saying exactly what to do about it."""
        entry = self.lookup_name(host, port)
        blob, key_type, fingerprint = key.asbytes(), key.get_name(), key.fingerprint
        with self._lock:
            revoked = any(k.marker == "@revoked" and k.blob == blob for k in self._keys)
        if revoked:
            raise HostKeyError(name, f"the host key of {entry} ({fingerprint}) is marked "
                                     "@revoked in known_hosts; refusing to connect")
        known = self.known_for(host, port)
        if any(k.key_type == key_type and k.blob == blob for k in known):
            return
        if known and self.strict != "no":
            types = ", ".join(sorted({k.key_type for k in known}))
            raise HostKeyError(name, (
                f"HOST KEY CHANGED for {entry}: it offers {key_type} {fingerprint}, which is not "
                f"the key known_hosts holds for it ({types}). This may be an attack. If the host "
                f"was really reinstalled, remove the old key with "
                f"`ssh-keygen -f {shlex.quote(str(self.paths[0]))} -R {shlex.quote(entry)}` "
                f"and connect again."))
        if known or self.strict == "no":
            return
        if self.strict == "yes":
            port_flag = f"-p {port} " if port != 22 else ""
            raise HostKeyError(name, (
                f"unknown host key for {entry} ({key_type} {fingerprint}). Verify the "
                f"fingerprint out of band, then trust it with `ssh-keyscan -t {key_type} "
                f"{port_flag}{shlex.quote(host)} >> {shlex.quote(str(self.paths[0]))}`, "
                f"or set ssh.strict_host_keys: accept-new in fleet.yaml"))
        self._remember(entry, key)

    def _remember(self, entry: str, key: paramiko.PKey) -> None:
        """accept-new: trust on first use, and write it down as OpenSSH would."""
        with self._lock:
            self._keys.append(KnownKey(entry, key.get_name(), key.asbytes(), None))
            self._matches.pop(entry, None)
            path = self.paths[0]
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as fh:
                fh.write(f"{entry} {key.get_name()} {key.get_base64()}\n")
