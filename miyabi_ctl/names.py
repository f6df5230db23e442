"""Branch and remote names from operators and fleet.yaml, checked before they reach git.

A value that starts with ``-`` is read by git as an option (``--receive-pack=<command>`` runs a
command), and a name git cannot store as a ref fails late and obscurely. Both are refused here,
once, naming the rule that was broken (the rules of ``git check-ref-format``). The scripts also
put such values after ``--`` or inside ``refs/…``, so a check missed somewhere is not code.
"""

from __future__ import annotations

from miyabi_ctl.errors import MiyabiError

_FORBIDDEN = set(" ~^:?*[\\")


class BadName(MiyabiError):
    """A branch or remote name that git would take as an option, or cannot store as a ref."""

    exit_code = 2


def ref_name_problem(name: str) -> str | None:
    """Why ``name`` is not usable as a branch (or remote) name, or None."""
    if not name:
        return "it is empty"
    if name.startswith("-"):
        return "it starts with '-' (git would read it as an option)"
    bad = sorted({c for c in name if c in _FORBIDDEN or ord(c) < 0x20 or ord(c) == 0x7f})
    if bad:
        return f"it contains {', '.join(repr(c) for c in bad)}"
    if name == "@" or "@{" in name:
        return "it is '@' or contains '@{'"
    if ".." in name:
        return "it contains '..'"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "it starts or ends with '/' or contains '//'"
    if name.endswith("."):
        return "it ends with '.'"
    for part in name.split("/"):
        if part.startswith("."):
            return f"a part of it starts with '.' ({part!r})"
        if part.endswith(".lock"):
            return f"a part of it ends with '.lock' ({part!r})"
    return None


def check_branch(name: str, what: str = "branch") -> str:
    """``name``, or BadName saying which rule it breaks."""
    problem = ref_name_problem(name)
    if problem:
        raise BadName(f"{what} {name!r} is not a usable branch name: {problem}")
    return name


def check_remote(name: str, what: str = "repo.remote") -> str:
    """A remote *name* (``origin``), never a URL or an option."""
    problem = ref_name_problem(name)
    if problem:
        raise BadName(f"{what} {name!r} is not a usable remote name: {problem}")
    return name
