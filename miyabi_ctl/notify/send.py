"""Sending through Apprise (ntfy, Telegram, Slack, Discord, e-mail, JSON webhooks, …).

Apprise costs ~0.1 s to import, so it is imported here, inside ``deliver``, and only when there is
something to send: `--help`, `check` and `status --json` with nothing new never load it. Each
target is one Apprise object, so each failure is known and kept for that target alone; Apprise's
own timeouts bound a send (4 s to connect, 4 s to read; ``?cto=``/``?rto=`` in a URL change
them). What Apprise logs goes nowhere (cli/edge.py) except its last warning, which becomes the
reason of a failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Delivery:
    target: str  # the URL with its secrets masked (Apprise's privacy form)
    error: str | None = None  # None: the target took it

    @property
    def ok(self) -> bool:
        return self.error is None


def target_id(url: str) -> str:
    """A target's key in the record: never the URL itself, which may hold a token."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _plain(url: str) -> str:
    """Apprise's privacy form without its query (the options Apprise fills in)."""
    return url.split("?", 1)[0]


def masked(url: str) -> str:
    """What can be shown of a URL Apprise could not read: its scheme."""
    return url.split("://", 1)[0] + "://…"


def shown(url: str) -> str:
    """The URL as it may be shown: Apprise's privacy form (tokens and passwords masked)."""
    import apprise

    with _apprise_warnings():
        plugin = apprise.Apprise.instantiate(url)
    return _plain(plugin.url(privacy=True)) if plugin is not None else masked(url)


def _scrub(text: str, url: str) -> str:
    """Apprise masks secrets in what it logs, but not in a URL it could not parse: the URL's
    text never reaches a warning."""
    rest = url.split("://", 1)[-1]
    for secret in sorted({url, rest, rest.split("?", 1)[0]}, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "…")
    return text


class _LastWarning(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = " ".join(record.getMessage().split())


@contextlib.contextmanager
def _apprise_warnings() -> Iterator[_LastWarning]:
    """Apprise's warnings while sending, caught; its logger is quiet otherwise (the root logger
    decides, cli/edge.py), so it is opened to warnings for the send and closed after."""
    logger = logging.getLogger("apprise")
    handler = _LastWarning()
    level = logger.level
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def deliver(url: str, title: str, body: str, *, alarm: bool = False) -> Delivery:
    """Send one message to one target; never raises for the target's sake."""
    import apprise

    sender = apprise.Apprise()
    with _apprise_warnings() as warning:
        if not sender.add(url):
            why = _scrub(warning.last or "unknown scheme, or a part it needs is missing", url)
            return Delivery(masked(url), f"not a usable Apprise URL: {why}")
        shown = _plain(sender.urls(privacy=True)[0])
        kind = apprise.NotifyType.WARNING if alarm else apprise.NotifyType.INFO
        try:
            ok = bool(sender.notify(body=body, title=title, notify_type=kind,
                                    body_format=apprise.NotifyFormat.TEXT))
        except Exception as exc:  # a plugin's bug must not end the command that notifies
            return Delivery(shown, _scrub(f"{type(exc).__name__}: {exc}", url))
    return Delivery(shown, None if ok else _scrub(warning.last or "the target did not take it",
                                                  url))
