"""``ProxyCommand``, run the way OpenSSH runs it (sshconnect.c ``ssh_proxy_connect``): the
command, its tokens expanded, is run by the user's shell as ``exec COMMAND`` and speaks SSH on
its stdin and stdout — cloudflared, ``tailscale nc``, IAP tunnels, ``nc`` on a bastion.

Not paramiko's ``ProxyCommand``: that one splits the command into words itself (no shell, so no
quoting, variables or ``~``) and its tokens come from the config file, not from the host's final
user and port. Here the command's end of the connection is one end of a socketpair, so paramiko
sees a real socket (its timeouts, and our shutdown-before-close, work as for TCP), and the
command runs in its own process group, ended with the connection.

No paramiko import: the tokens are the ssh config's, whatever client reads them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess

#: The tokens OpenSSH expands in ProxyCommand and ProxyJump (ssh_config(5), TOKENS).
PROXY_TOKENS = "%hnpr"
#: In CertificateFile and IdentityFile, of those miyabi-ctl knows (%C, %i, %k, %L, %l are not).
FILE_TOKENS = "%dhnpru"


def expand_tokens(text: str, values: dict[str, str], allowed: str, keyword: str) -> str:
    """``%h`` → ``values["h"]`` for each token ``allowed``, ``%%`` → ``%``; ValueError for any
    other, as ssh refuses (``unknown key %x``)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "%":
            out.append(char)
            i += 1
            continue
        token = text[i + 1:i + 2]
        if token == "%":
            out.append("%")
        elif token and token in allowed and token in values:
            out.append(values[token])
        else:
            raise ValueError(f"{keyword} {text!r}: unknown token %{token}")
        i += 2
    return "".join(out)


class ProxyProcess:
    """A running ProxyCommand: ``sock`` is our end of its stdin/stdout."""

    def __init__(self, command: str):
        ours, theirs = socket.socketpair()
        shell = os.environ.get("SHELL") or "/bin/sh"  # as ssh: the user's shell, else sh
        try:
            self.process = subprocess.Popen(
                [shell, "-c", f"exec {command}"], stdin=theirs, stdout=theirs,
                stderr=subprocess.PIPE, start_new_session=True)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.command = command

    def end(self) -> None:
        """End the command and everything it started (its process group): the connection is
        closed, or was never made."""
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 2.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, sig)
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # what it left behind in its group
        self.process.poll()

    def last_words(self) -> str:
        """What the command said on stderr before it ended ('' while it runs): why a proxy
        could not reach the host is in its own words."""
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        os.set_blocking(self.process.stderr.fileno(), False)
        try:
            said = self.process.stderr.read() or b""
        except OSError:
            said = b""
        lines = said.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"it exited with status {self.process.returncode}"

    def close(self) -> None:
        self.end()
        if self.process.stderr is not None:
            self.process.stderr.close()
