"""Agent command templates (``agents.<name>.launch`` in fleet.yaml): rendered without any value.

Each placeholder becomes a quoted reference to an environment variable that the host's
``run.sh`` reads from files, never the value itself; a template that would hand a value to a
program that parses it again is refused (``reparse``). The inventory checks templates with this
when it reads fleet.yaml, and ``dispatch.launch`` renders them on each launch: both import it, it
imports neither.
"""

from __future__ import annotations

import re
import shlex

from miyabi_ctl.errors import MiyabiError
from miyabi_ctl.templates.reparse import reparsing_problem

PLACEHOLDERS = {
    "issue": "MIYABI_ISSUE",
    "title": "MIYABI_TITLE",
    "prompt_file": "MIYABI_PROMPT_FILE",
    "worktree": "MIYABI_WORKTREE",
    "branch": "MIYABI_BRANCH",
    "test_command": "MIYABI_TEST_COMMAND",
    "test_tool": "MIYABI_TEST_TOOL",
}
# Placeholders that may be empty: outside quotes they vanish then instead of passing "".
OPTIONAL = {"test_command", "test_tool"}
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(MiyabiError):
    """A launch template that cannot be rendered safely."""

    exit_code = 2



def render_template(template: str) -> str:
    """The template with each placeholder replaced by a quoted variable reference, never a value.

    A small scanner follows sh quoting: outside quotes a placeholder becomes ``"${VAR}"``; inside
    double quotes (including ``"$(cat {prompt_file})"``, where ``$(`` opens a fresh context)
    ``${VAR}``; inside single quotes or backticks it is refused, since no reference can work there.
    A template that hands a value to a program that parses it again (``sh -c "… {title}"``,
    ``eval``, ``ssh``, ``xargs``…) is refused too (``reparse``).
    """
    out: list[str] = []
    stack = ["plain"]  # plain | dq | sub (inside $( ), unquoted)
    depth = [0]
    i = 0
    while i < len(template):
        ch = template[i]
        context = stack[-1]
        match = _PLACEHOLDER_RE.match(template, i)
        if match and not (i > 0 and template[i - 1] == "$"):
            name = match.group(1)
            if name not in PLACEHOLDERS:
                raise TemplateError(f"launch template: unknown placeholder {{{name}}} "
                                    f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})")
            var = PLACEHOLDERS[name]
            if context == "dq":
                out.append(f"${{{var}}}")
            elif name in OPTIONAL:
                out.append(f'${{{var}:+"${{{var}}}"}}')
            else:
                out.append(f'"${{{var}}}"')
            i = match.end()
            continue
        if ch == "\\" and i + 1 < len(template):
            out.append(template[i:i + 2])
            i += 2
            continue
        if ch == "`":
            raise TemplateError("launch template: use $( ) instead of backticks")
        if context != "dq" and ch == "'":
            end = template.find("'", i + 1)
            if end < 0:
                raise TemplateError("launch template: unterminated single quote")
            if _PLACEHOLDER_RE.search(template, i, end):
                raise TemplateError("launch template: a placeholder inside single quotes would "
                                    "stay literal; put it outside quotes or in double quotes")
            out.append(template[i:end + 1])
            i = end + 1
            continue
        if ch == "$" and template.startswith("${", i):
            end = template.find("}", i)
            if end < 0:
                raise TemplateError("launch template: unterminated ${")
            out.append(template[i:end + 1])
            i = end + 1
            continue
        if ch == "$" and template.startswith("$(", i):
            stack.append("sub")
            depth.append(0)
            out.append("$(")
            i += 2
            continue
        if ch == '"':
            if context == "dq":
                stack.pop()
                depth.pop()
            else:
                stack.append("dq")
                depth.append(0)
        elif context == "sub" and ch == "(":
            depth[-1] += 1
        elif context == "sub" and ch == ")":
            if depth[-1] == 0:
                stack.pop()
                depth.pop()
            else:
                depth[-1] -= 1
        out.append(ch)
        i += 1
    if len(stack) != 1:
        raise TemplateError("launch template: unbalanced quotes or $( )")
    problem = reparsing_problem(template)
    if problem:
        raise TemplateError(problem)
    return "".join(out)


def agent_command(template: str) -> str:
    """The program a template starts (checked on the host before launching); '' if unclear."""
    try:
        words = shlex.split(template)
    except ValueError:
        return ""
    words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)][:1]
    if not words or any(c in words[0] for c in "{}$`"):
        return ""
    return words[0]
