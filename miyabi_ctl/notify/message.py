"""The words of one notification: plain text, one line per change.

Text from outside — issue titles, host errors, branch names in problems — is shown as it is,
never as markup (it is sent as Apprise's ``text`` format, which Apprise escapes for HTML and
Markdown targets); only control and bidirectional-override characters are written as escapes
(``\\n``, ``\\u202e``), so a title cannot forge a line of its own or turn the text around.
"""

from __future__ import annotations

from datetime import datetime

from miyabi_ctl.dispatch.lifecycle import RUN_STATES
from miyabi_ctl.notify.diff import Change

MAX_LINES = 40
MAX_TEXT = 300  # characters of one title or reason
_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
TEST_TITLE = "miyabi-ctl: test notification"


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` as it is, but for control and bidi characters (escaped), cut at ``limit``."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif code in _BIDI:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    line = "".join(out)
    return line if len(line) <= limit else line[:limit - 1] + "…"


def state_words(change: Change) -> str:
    """How a person reads where the subject went."""
    if not change.is_run:
        return change.after
    if change.after == "ended" and change.commits:
        plural = "s" if change.commits != 1 else ""
        return f"ended with {change.commits} commit{plural} (ready to land)"
    return RUN_STATES.get(change.after, change.after)


def change_line(change: Change, now: datetime) -> str:
    when = ""
    at = datetime.fromisoformat(change.at)
    if (now - at).total_seconds() >= 60:  # held back by a failed send: say when it happened
        when = f" (at {at:%Y-%m-%d %H:%M} UTC)"
    if change.is_run:
        title = f' "{clean(change.title)}"' if change.title else ""
        where = f" on {change.host}" if change.host else ""
        moved = f"{RUN_STATES.get(change.before, change.before)} → " if change.before else ""
        return f"#{change.name}{title}{where}: {moved}{state_words(change)}{when}"
    reason = f": {clean(change.reason)}" if change.reason and change.after != "ok" else ""
    return f"{change.name}: {change.before} → {change.after}{reason}{when}"


def short(change: Change) -> str:
    after = change.after.removeprefix("pr-")
    return f"#{change.name} {after}" if change.is_run else f"{change.name} {change.after}"


def compose(changes: list[Change], *, now: datetime, command: str, fleet: str
            ) -> tuple[str, str]:
    """(title, body) of the one message telling ``changes``."""
    heads = [short(c) for c in changes[:3]]
    more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
    title = f"miyabi-ctl: {', '.join(heads)}{more}"
    lines = [change_line(c, now) for c in changes[:MAX_LINES]]
    if len(changes) > MAX_LINES:
        lines.append(f"… and {len(changes) - MAX_LINES} more changes")
    lines.append(f"(seen by miyabi-ctl {command}; fleet {fleet})")
    return title, "\n".join(lines)


def test_message(fleet: str) -> tuple[str, str]:
    return TEST_TITLE, (f"This is a test from miyabi-ctl notify --test (fleet {fleet}). "
                        "Changes in hosts and runs will arrive here.")
