"""Tables that fit the terminal (tests/ptyshot.py: the real CLI in a real pty), piped output one
line per row, and untrusted text shown as it is, never as markup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from miyabi_ctl.tables import Column, Columns, duration, keyed
from tests.ptyshot import assert_fits, run_in_pty

WIDTHS = [60, 80, 120, 200]

BACKLOG = """issues:
  - {number: 1, title: "Handle [/api] prefix in the gateway router", priority: P0}
  - {number: 2, title: "[docs] Update README", priority: P1, needs: [linux, worktree]}
  - number: 3
    title: "[bold red]not styled[/bold red] and ! [rejected] main -> main (fetch first)"
    depends: [1]
  - number: 4
    title: "A title long enough to need wrapping on a phone held upright, with a
      supercalifragilisticexpialidocious word"
    estimate: 3d
  - {number: 5, title: "Done :bug: thing", state: closed}
"""


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "feat/a-rather-long-branch-name"], check=True)
    (repo / "f").write_text("x")
    subprocess.run([*git, "add", "f"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    # an origin, so that `issues` can read the claims on it (docs/dispatch.md)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(tmp_path / "origin.git")], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD"], check=True)
    for i in range(3):
        (repo / f"wip {i}.txt").write_text("w")
    (tmp_path / "backlog.yaml").write_text(BACKLOG)
    (tmp_path / "fleet.yaml").write_text(
        # no findings that depend on this machine's load or agent sessions: the screens compared
        # are taken moments apart
        f"repo: {{path: {repo}}}\nbacklog: {{file: backlog.yaml}}\n"
        "thresholds: {load_per_core: [1000, 2000]}\nhosts:\n"
        "  controller-with-a-long-name: {transport: local, role: maestro}\n"
        "  unreachable-box: {ssh: 'root@127.0.0.1:1'}\n"
        "  second: {transport: local, repo_path: /nonexistent/some/where/deep/in/the/disk}\n")
    state = tmp_path / "state"
    state.mkdir()
    entries = [
        {"time": "2026-11-29T10:00:00+00:00", "host": "controller-with-a-long-name",
         "action": "backup", "result": "ok", "after": {"branch": "backup/controller-2026-11-29",
                                                     "files": 3}},
        {"time": "2026-11-29T10:01:00+00:00", "host": "second", "action": "merge",
         "result": "failed", "error": "git push: ! [rejected] main -> main (fetch first) "
                                      "error: failed to push some refs to 'origin'"},
    ]
    (state / "audit.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    env = {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}
    return tmp_path, env


@pytest.mark.parametrize("command", [["status"], ["issues"], ["phase0", "backup"], ["audit"]])
@pytest.mark.parametrize("columns", WIDTHS)
def test_tables_fit_every_terminal_width(project: tuple[Path, dict[str, str]],
                                         command: list[str], columns: int) -> None:
    base, env = project
    proc = cli(*command, cwd=base, env=env)
    piped = proc.stdout + proc.stderr  # a terminal shows both (status's first-run hint)
    screen = run_in_pty(command, columns, env=env, cwd=base)
    assert "Traceback" not in screen
    assert_fits(screen, columns, piped, extra=["ok", "warning", "critical", "unreachable"])
    if command == ["status"]:
        assert "controller-with-a-long-name" in screen and "unreachable" in screen
        assert "cannot connect to 127.0.0.1:1" in " ".join(screen.split())
        if columns < 120:  # compact: the problems on a line of their own, under the host
            lines = screen.splitlines()
            at = next(i for i, line in enumerate(lines) if line.startswith("unreachable-box"))
            assert lines[at + 1].startswith("    cannot connect")


@pytest.mark.parametrize("command, rows", [(["status"], 3), (["issues"], 5),
                                           (["phase0", "backup"], 3)])
def test_piped_output_is_one_line_per_row_whatever_columns_says(
        project: tuple[Path, dict[str, str]], command: list[str], rows: int) -> None:
    base, env = project
    for columns in ("40", "300"):
        out = cli(*command, cwd=base, env={**env, "COLUMNS": columns}).stdout
        table = [line for line in out.splitlines() if line.strip()]
        assert len(table) >= rows + 1
        header = table[0].split()
        assert header[0] in ("host", "#", "HOST")
        assert all(not line.startswith(" ") for line in table[1:rows + 1]), out


def test_issue_titles_are_shown_verbatim(project: tuple[Path, dict[str, str]]) -> None:
    """`Handle [/api] prefix` crashed rich (MarkupError); `[docs] …` lost its tag."""
    base, env = project
    proc = cli("issues", cwd=base, env=env)
    assert proc.returncode == 0 and proc.stderr == ""
    assert "Handle [/api] prefix in the gateway router" in proc.stdout
    assert "[docs] Update README" in proc.stdout
    assert "[bold red]not styled[/bold red] and ! [rejected] main -> main" in proc.stdout
    assert "Done :bug: thing" in proc.stdout  # not an emoji either
    for columns in (60, 200):
        screen = " ".join(run_in_pty(["issues"], columns, env=env, cwd=base).split())
        assert "[docs] Update README" in screen and "Handle [/api] prefix" in screen
        assert "! [rejected]" in screen


def test_markup_in_a_cell_is_text(tmp_path: Path) -> None:
    columns: Columns[dict[str, str]] = Columns([keyed("a", "A"), keyed("b", "B", wrap=True)])
    console = Console(width=40, force_terminal=True, color_system=None, markup=False)
    with console.capture() as out:
        console.print(columns.table([{"a": "[red]x[/red]", "b": "! [rejected] main -> main"}]))
    assert "[red]x[/red]" in out.get() and "! [rejected]" in out.get()


def test_a_column_is_added_by_name() -> None:
    columns: Columns[int] = Columns([Column("a", "A", str), Column("c", "C", str)])
    columns.add(Column("b", "B", lambda n: str(n * 2)), after="a")
    assert columns.names() == ["a", "b", "c"]
    console = Console(width=80, force_terminal=False)
    with console.capture() as out:
        console.print(columns.table([3], plain=True))
    assert out.get().split() == ["A", "B", "C", "3", "6", "3"]


@pytest.mark.parametrize("seconds, text", [(45, "45s"), (5400, "90m"), (129600, "36h"),
                                           (259200, "3d"), (1209600, "2w"), (5460, "91m"), (5430, "5430s"),
                                           (0, "0s")])
def test_durations_as_people_write_them(seconds: int, text: str) -> None:
    assert duration(seconds) == text


def test_issues_json_keeps_titles_exact(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    doc = json.loads(cli("issues", "--json", cwd=base, env=env).stdout)
    assert doc["issues"][0]["title"] == "Handle [/api] prefix in the gateway router"


def _plain(renderable: object) -> list[str]:
    console = Console(width=100_000, force_terminal=False, markup=False)
    with console.capture() as out:
        console.print(renderable)
    return [line.rstrip() for line in out.get().splitlines()]


def test_prune_lists_what_it_ends_and_counts_what_it_keeps() -> None:
    """405 kept sessions used to be 405 rows; now one line says how many."""
    from miyabi_ctl.phase0.prune import PrunePlan, SessionAction
    from miyabi_ctl.phase0.render import prune_table

    kept = [SessionAction(1000 + i, "claude", 60, "/r", "claude", "keep") for i in range(405)]
    ended = SessionAction(7, "codex", 200_000, "/r", "codex", "kill", reason="older than 2d")
    lines = _plain(prune_table([PrunePlan("macbook", sessions=[ended, *kept]),
                                PrunePlan("majin", error="majin: cannot connect to majin:22")]))
    assert len(lines) == 4
    assert lines[1].split()[:6] == ["macbook", "7", "codex", "2d7h", "kill", "/r"]
    assert lines[2].split()[:2] == ["macbook", "-"] and lines[2].endswith("405 other sessions kept")
    assert lines[3].endswith("ERROR   -    cannot connect to majin:22")  # not "majin: majin: …"


@pytest.mark.parametrize("seconds, words", [(1209600, "older than 2w"), (129600, "older than 36h"),
                                            (45, "older than 45s")])
def test_the_selection_is_echoed_as_people_write_it(seconds: int, words: str) -> None:
    from miyabi_ctl.phase0.prune import Selection
    from miyabi_ctl.phase0.render import describe_selection

    assert describe_selection(Selection(older_than_s=seconds, agent="claude")) == (
        f"{words}, agent claude")


def test_plain_lines_print_remote_errors_verbatim(capsys: pytest.CaptureFixture[str]) -> None:
    """Plans and outcomes (dispatch, recall, merge) go through echo_lines: git's `! [rejected]`
    and a `[/api]` survive, on stdout and stderr."""
    from miyabi_ctl.cli.common import echo_lines

    text = "#7 host: failed — ! [rejected] main -> main (fetch first) [/api] [bold]x :bug:"
    echo_lines(text, "  note: [docs] kept")
    echo_lines(text, err=True)
    out = capsys.readouterr()
    assert out.out == f"{text}\n  note: [docs] kept\n" and out.err == f"{text}\n"
