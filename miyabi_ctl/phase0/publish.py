"""What a backup publishes, in words for the plan: secret-like names and files too big for
GitHub are flagged (``--exclude`` keeps them out), and what git has no place for is named."""

from __future__ import annotations

import fnmatch

#: Names that usually hold secrets: a backup branch on a shared remote should not carry them.
SECRET_PATTERNS = (".env*", "*.pem", "id_*", "credentials*", "*.key", "*.p12", "*.pfx")
BIG_FILE = 100 * 1024 * 1024  # GitHub refuses files over 100 MB


def publish_flags(path: str, size: int) -> list[str]:
    """Why a file the backup would publish deserves a look: a secret-like name, or too big."""
    flags = []
    if any(fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], p) for p in SECRET_PATTERNS):
        flags.append("secret-like name")
    if size > BIG_FILE:
        flags.append(f"{size / 1024 / 1024:.0f} MB, over GitHub's 100 MB limit")
    return flags


def publish_note(publish: list[tuple[int, str]], remote: str | None) -> str | None:
    flagged = [(name, publish_flags(name, size)) for size, name in publish]
    flagged = [(name, flags) for name, flags in flagged if flags]
    if not flagged:
        return None
    shown = ", ".join(f"{name} ({'; '.join(flags)})" for name, flags in flagged[:10])
    more = f" and {len(flagged) - 10} more" if len(flagged) > 10 else ""
    return (f"the backup would publish to {remote or 'the remote'}: {shown}{more} — "
            "--exclude PATTERN keeps files out of the backup (they stay on disk as they are, "
            "and --clean leaves them alone)")


def unkept_note(unkept: list[str]) -> str:
    """What git has no place for, in words: FIFOs, sockets and empty directories are in no backup
    (a clean leaves them where they are)."""
    words = []
    for item in unkept:
        kind, _, rest = item.partition(" ")
        words.append(f"{rest} ({kind.replace('-', ' ')}: not in the backup)")
    more = " and maybe more" if len(unkept) >= 20 else ""
    return ("git cannot keep: " + ", ".join(words) + more
            + "; a clean never removes FIFOs, sockets or empty directories")
