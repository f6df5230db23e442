"""Launch templates: placeholders become quoted variable references, never values. Checked by
running the rendered command in a real sh with hostile values in the variables."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from miyabi_ctl.dispatch.launch import TemplateError, agent_command, render_template, runner_script

HOSTILE = """$(touch pwned) "; touch pwned2; " `touch pwned3` it's ${HOME} * ~ \\"""


def run_rendered(template: str, tmp_path: Path) -> list[str]:
    """Run the rendered template with `agent` a function printing its arguments."""
    prompt = tmp_path / "prompt file.md"
    prompt.write_text(f"# Issue #7: {HOSTILE}\n")
    (tmp_path / "decoy").write_text("")  # an unquoted * would expand to this
    env = {**os.environ, "MIYABI_ISSUE": "7", "MIYABI_TITLE": HOSTILE,
           "MIYABI_PROMPT_FILE": str(prompt), "MIYABI_WORKTREE": str(tmp_path / "wt dir"),
           "MIYABI_BRANCH": "issue/7"}
    script = "agent() { printf '%s\\0' \"$@\"; }\n" + render_template(template)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=True)
    assert not list(tmp_path.glob("pwned*"))
    return proc.stdout.split("\0")[:-1]


@pytest.mark.parametrize(("template", "expected"), [
    ('agent -p "$(cat {prompt_file})"', ["-p", f"# Issue #7: {HOSTILE}"]),
    ("agent --title {title} {branch}", ["--title", HOSTILE, "issue/7"]),
    ('agent "#{issue}: {title}" --cwd={worktree}', [f"#7: {HOSTILE}", "--cwd=WT"]),
    ('agent "$(printf "%s" "{title}")"', [HOSTILE]),
    ("agent $(cat {prompt_file} | wc -l)", ["1"]),
])
def test_rendered_templates_pass_values_as_data(template: str, expected: list[str],
                                                tmp_path: Path) -> None:
    expected = [e.replace("WT", str(tmp_path / "wt dir")) for e in expected]
    assert run_rendered(template, tmp_path) == expected


def test_render_shape() -> None:
    assert render_template('claude -p "$(cat {prompt_file})"') == (
        'claude -p "$(cat "${MIYABI_PROMPT_FILE}")"')
    assert render_template("x {title} \"{title}\" ${HOME} '$x'") == (
        "x \"${MIYABI_TITLE}\" \"${MIYABI_TITLE}\" ${HOME} '$x'")


@pytest.mark.parametrize(("template", "message"), [
    ("agent '{title}'", "inside single quotes"),
    ("agent `cat {prompt_file}`", r"use \$\( \) instead of backticks"),
    ("agent {model}", r"unknown placeholder \{model\}"),
    ('agent "{title}', "unbalanced"),
    ("agent $(cat {prompt_file}", "unbalanced"),
])
def test_unsafe_templates_are_refused(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        render_template(template)


def test_agent_command() -> None:
    assert agent_command('claude -p "$(cat {prompt_file})"') == "claude"
    assert agent_command("FOO=1 /opt/bin/codex exec x") == "/opt/bin/codex"
    assert agent_command("$AGENT run") == ""


def test_runner_holds_no_value() -> None:
    script = runner_script('claude -p "$(cat {prompt_file})"')
    assert 'claude -p "$(cat "${MIYABI_PROMPT_FILE}")"' in script
    assert "{" + "prompt_file}" not in script
    subprocess.run(["sh", "-n", "-c", script], check=True)  # valid POSIX sh
