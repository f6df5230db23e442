"""Signing in with paramiko the way OpenSSH's ssh does (sshconnect2.c): the ``none`` method
first, then public keys — each key's certificates before the key itself — and never a password
or a prompt.

``none`` first: a server that has already authenticated the client at the network layer
(Tailscale SSH) accepts it, and paramiko never tries it on its own (paramiko#2370, pyinfra#1021);
any other server answers with the methods it does accept, and a server that accepts no public
key is then refused with those named, instead of with every key tried in vain.

Certificates: ``<identity>-cert.pub`` beside a key (paramiko's ``from_path`` reads it) and the
config's ``CertificateFile`` that match a key are offered before the plain key, as ssh does.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path

import paramiko

from miyabi_ctl.connectors.ssh_config import DEFAULT_IDENTITIES, Endpoint, SSHResolver
from miyabi_ctl.errors import AuthFailed, Unreachable


def authenticate(name: str, transport: paramiko.Transport, endpoint: Endpoint,
                 resolver: SSHResolver) -> None:
    """``none``, then identity files, the ssh-agent, the default keys; AuthFailed naming what
    was offered when nothing is accepted."""
    try:
        allowed = _try_none(transport, endpoint.user)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise Unreachable(name, f"connection lost while authenticating: {exc}") from None
    if allowed is None:
        return
    who = f"{endpoint.user}@{endpoint.hostname}"
    if allowed and "publickey" not in allowed:
        raise AuthFailed(name, f"{who} accepts only {', '.join(allowed)}; miyabi-ctl signs in "
                               "with keys (or the none method) only, never with a password or "
                               "a prompt")
    tried, candidates = _candidates(endpoint, resolver)
    for label, key in candidates:
        try:
            transport.auth_publickey(endpoint.user, key)
        except paramiko.AuthenticationException:
            tried.append(label)
            continue
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Unreachable(name, f"connection lost while authenticating: {exc}") from None
        if transport.is_authenticated():
            return
    offered = ", ".join(tried) if tried else "no keys (no identity_file, agent or ~/.ssh/id_*)"
    raise AuthFailed(name, f"{who} refused every key: {offered}")


def _try_none(transport: paramiko.Transport, user: str) -> list[str] | None:
    """None when the server let us in with ``none``; else the methods it accepts ([] when it
    did not say)."""
    try:
        transport.auth_none(user)
    except paramiko.BadAuthenticationType as exc:
        return list(exc.allowed_types)
    except paramiko.AuthenticationException:
        return []
    return None if transport.is_authenticated() else []


def _candidates(endpoint: Endpoint, resolver: SSHResolver
                ) -> tuple[list[str], list[tuple[str, paramiko.PKey]]]:
    """(keys that could not be used, with why; the keys to offer, in order)."""
    tried: list[str] = []
    keys: list[tuple[str, paramiko.PKey]] = []
    for path in endpoint.identity_files:
        key = resolver.load_key(path)
        if key is not None:
            keys.append((path, key))
        else:
            tried.append(f"{path} ({resolver.key_problem(path)})")
    if os.environ.get("SSH_AUTH_SOCK"):
        with contextlib.suppress(paramiko.SSHException):
            keys.extend(("ssh-agent", k) for k in paramiko.Agent().get_keys())
    if not endpoint.identity_files:
        for base in DEFAULT_IDENTITIES:
            path = str(Path("~/.ssh").expanduser() / base)
            if Path(path).is_file():
                key = resolver.load_key(path)
                if key is not None:
                    keys.append((path, key))
    offered = [c for label, key in keys
               for c in _with_certificates(label, key, endpoint.certificate_files)]
    return tried, offered


def _with_certificates(label: str, key: paramiko.PKey,
                       certificates: tuple[str, ...]) -> list[tuple[str, paramiko.PKey]]:
    """The key with each certificate that certifies it, then the key alone. Copies: a parsed key
    is shared by every host of the fleet."""
    if label == "ssh-agent":  # the agent's own certificates are keys it lists
        return [(label, key)]
    found: list[tuple[str, paramiko.PKey]] = []
    plain = key
    if getattr(key, "public_blob", None) is not None:
        found.append((f"{label} with {label}-cert.pub", key))
        plain = copy.copy(key)
        plain.public_blob = None
    for path in certificates:
        certified = copy.copy(plain)
        try:
            certified.load_certificate(path)
        except (ValueError, OSError, paramiko.SSHException):
            continue  # a certificate of another key, or unreadable: ssh skips it too
        found.append((f"{label} with certificate {path}", certified))
    return [*found, (label, plain)]
