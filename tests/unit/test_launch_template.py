"""Launch templates: placeholders become quoted variable references, never values. Checked by
running the rendered command in a real sh with hostile values in the variables."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from miyabi_ctl.dispatch.launch import runner_script
from miyabi_ctl.inventory import DEFAULT_AGENTS
from miyabi_ctl.templates import TemplateError, agent_command, render_template

HOSTILE = """$(touch pwned) "; touch pwned2; " `touch pwned3` it's ${HOME} * ~ \\"""


def run_rendered(template: str, tmp_path: Path, test_command: str = "") -> list[str]:
    """Run the rendered template with `agent` (and `claude`, `codex`) a function printing its
    arguments."""
    prompt = tmp_path / "prompt file.md"
    prompt.write_text(f"# Issue #7: {HOSTILE}\n")
    (tmp_path / "decoy").write_text("")  # an unquoted * would expand to this
    env = {**os.environ, "MIYABI_ISSUE": "7", "MIYABI_TITLE": HOSTILE,
           "MIYABI_PROMPT_FILE": str(prompt), "MIYABI_WORKTREE": str(tmp_path / "wt dir"),
           "MIYABI_BRANCH": "issue/7", "MIYABI_TEST_COMMAND": test_command,
           "MIYABI_TEST_TOOL": f"Bash({test_command}:*)" if test_command else ""}
    script = ("agent() { printf '%s\\0' \"$@\"; }\nclaude() { agent \"$@\"; }\n"
              "codex() { agent \"$@\"; }\n" + render_template(template))
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


PROMPT = f"# Issue #7: {HOSTILE}"


def test_default_claude_template_edits_unattended(tmp_path: Path) -> None:
    template = DEFAULT_AGENTS["claude"].launch or ""
    assert run_rendered(template, tmp_path) == [
        "-p", PROMPT, "--permission-mode", "acceptEdits", "--allowedTools", "Bash(git:*)"]
    assert run_rendered(template, tmp_path, "npm run test") == [
        "-p", PROMPT, "--permission-mode", "acceptEdits", "--allowedTools", "Bash(git:*)",
        "Bash(npm run test:*)"]


def test_default_codex_template_writes_in_its_sandbox(tmp_path: Path) -> None:
    assert run_rendered(DEFAULT_AGENTS["codex"].launch or "", tmp_path) == [
        "exec", "--full-auto", PROMPT]


def test_optional_placeholders_vanish_when_empty(tmp_path: Path) -> None:
    assert render_template("agent {test_tool}") == 'agent ${MIYABI_TEST_TOOL:+"${MIYABI_TEST_TOOL}"}'
    assert run_rendered("agent a {test_command} b", tmp_path) == ["a", "b"]
    assert run_rendered('agent "[{test_command}]"', tmp_path) == ["[]"]


@pytest.mark.parametrize(("template", "culprit"), [
    ('sh -c "agent {title}"', "sh -c"),
    ('bash -lc "claude -p \\"$(cat {prompt_file})\\""', "bash -lc"),
    ('sh -c "$(cat {prompt_file})"', "sh -c"),
    ("sh {prompt_file}", "sh"),
    (". {prompt_file}", "."),
    ("eval agent {title}", "eval"),
    ("ssh build-box agent {title}", "ssh"),
    ('su -c "agent {title}" bob', "su"),
    ("printf '%s' {title} | xargs agent", "xargs"),
    ('sudo -u bob sh -c "agent {title}"', "sh -c"),
    ('env A=1 nohup bash -o pipefail -c "agent {title}"', "bash -c"),
    ('timeout -s KILL 5m /bin/sh -xc "agent {issue}"', "sh -xc"),
    ('agent "$(sh -c "echo {title}")"', "sh -c"),
    ('sh -c "agent $MIYABI_TITLE"', "sh -c"),
    ('tmux new-session "agent {title}"', "tmux"),
    ('env -S "agent {title}"', "env -S"),
    ('python3 -c "print(\'{title}\')"', "python3 -c"),
    ('perl -e "print q({title})"', "perl -e"),
    ('busybox sh -c "agent {title}"', "sh -c"),
    ('find . -name x -exec sh -c "agent {title}" \\;', "sh -c"),
    ('awk "BEGIN { print \\"{title}\\" }"', "awk"),
    ('sed -e "s/x/{title}/" notes.txt', "sed -e"),
    ("parallel agent ::: {title}", "parallel"),
])
def test_templates_that_re_parse_values_are_refused(template: str, culprit: str) -> None:
    with pytest.raises(TemplateError, match="parsed again as code by `" + re.escape(culprit)):
        render_template(template)


@pytest.mark.parametrize("template", [
    # The safe forms the refusals name: values as positional parameters after the script.
    "sh -c 'agent --title \"$1\" --prompt-file \"$2\"' sh {title} {prompt_file}",
    "bash -lc 'claude -p \"$(cat \"$MIYABI_PROMPT_FILE\")\"'",  # expanded once, by bash
    "sh ./run-agent.sh {title}",
    "python3 tool.py --title {title}",
    "agent --model ssh {title}",  # `ssh` as an argument, not a program
    "awk -v title={title} 'BEGIN { print title }'",
    "sed -n p {prompt_file}",  # the file is data for sed
    "find {worktree} -name '*.md' -exec agent --title {title} ';'",
])
def test_safe_forms_are_accepted(template: str) -> None:
    render_template(template)


def test_the_safe_shell_form_passes_values_as_data(tmp_path: Path) -> None:
    template = "sh -c 'agent --title \"$1\" -p \"$(cat \"$2\")\"' sh {title} {prompt_file}"
    script_env = {"PATH": os.environ["PATH"]}
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "agent").write_text("#!/bin/sh\nprintf '%s\\0' \"$@\"\n")
    (bindir / "agent").chmod(0o755)
    script_env["PATH"] = f"{bindir}:{script_env['PATH']}"
    prompt = tmp_path / "p.md"
    prompt.write_text(PROMPT)
    proc = subprocess.run(["sh", "-c", render_template(template)], capture_output=True, text=True,
                          env={**script_env, "MIYABI_TITLE": HOSTILE,
                               "MIYABI_PROMPT_FILE": str(prompt)}, cwd=tmp_path, check=True)
    assert proc.stdout.split("\0")[:-1] == ["--title", HOSTILE, "-p", PROMPT]
    assert not list(tmp_path.glob("pwned*"))



def test_a_refused_template_is_a_fleet_yaml_error_with_its_line(tmp_path: Path) -> None:
    from miyabi_ctl.errors import InventoryError
    from miyabi_ctl.inventory import load_inventory

    fleet = tmp_path / "fleet.yaml"
    fleet.write_text('hosts:\n  a:\n    transport: local\nagents:\n  claude:\n'
                     '    launch: sh -c "claude -p {title}"\n')
    with pytest.raises(InventoryError) as info:
        load_inventory(fleet)
    text = str(info.value)
    assert str(fleet) in text and ":6" in text and "agents.claude.launch" in text
    assert "parsed again as code by `sh -c`" in text
