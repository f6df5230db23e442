"""A backup plan's notes each on lines of their own under the host, at every terminal width
(issue 18, item 8): its DETAIL was one 600-character sentence of reason, embedded
repositories, what git cannot keep, modes, secret-like names… The real CLI in a real pty
(tests/ptyshot.py), as tests/unit/test_tables.py does for every table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ptyshot import assert_fits, run_in_pty

WIDTHS = [60, 80, 120, 200]
NOTES = ("detached HEAD at", "1 embedded repositories are recorded", "git cannot keep:",
         "modes git does not keep", "the backup would publish to")


@pytest.fixture(scope="module")
def noted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A repository whose backup plan has five notes: a detached HEAD, an embedded repository,
    a FIFO and an empty directory, an owner-only file, a secret-like name."""
    base = tmp_path_factory.mktemp("noted")
    repo = base / "repo"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "protocol.file.allow=always"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "f").write_text("x")
    subprocess.run([*git, "-C", str(repo), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "one"], check=True)
    subprocess.run([*git, "-C", str(repo), "switch", "-q", "--detach"], check=True)
    vendor = repo / "vendor" / "lib"
    subprocess.run([*git, "init", "-q", str(vendor)], check=True)
    (vendor / "lib.txt").write_text("lib")
    subprocess.run([*git, "-C", str(vendor), "add", "lib.txt"], check=True)
    subprocess.run([*git, "-C", str(vendor), "commit", "-qm", "lib"], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "vendor/lib"], check=True, capture_output=True)
    os.mkfifo(repo / "pipe")
    (repo / "empty").mkdir()
    key = repo / "deploy.key"
    key.write_text("secret")
    key.chmod(0o600)
    (repo / ".env").write_text("TOKEN=x")
    (base / "fleet.yaml").write_text(
        f"repo: {{path: {repo}}}\nthresholds: {{load_per_core: [1000, 2000]}}\nhosts:\n"
        "  controller-with-a-long-name: {transport: local, role: maestro}\n")
    state = base / "state"
    state.mkdir()
    return base, {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}


@pytest.mark.parametrize("columns", WIDTHS)
def test_backup_plan_notes_have_lines_of_their_own(noted: tuple[Path, dict[str, str]],
                                                  columns: int) -> None:
    base, env = noted
    piped = subprocess.run([sys.executable, "-m", "miyabi_ctl", "phase0", "backup"],
                           capture_output=True, text=True, cwd=base, env=env, timeout=60).stdout
    screen = run_in_pty(["phase0", "backup"], columns, env=env, cwd=base)
    assert "Traceback" not in screen
    # Piped, the notes follow the detail after "; " on the row's one line.
    assert_fits(screen, columns, piped, extra=["note:", *piped.replace("; ", " ").split()])
    lines = screen.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("controller-with-a-long"))
    assert "create" in lines[row]
    starts = [i for i, line in enumerate(lines) if line.startswith("    note: ")]
    # Each note begins a line of its own, in the plan's order, under the host (after the
    # detail, which a narrow terminal puts on the line beneath the row).
    assert [next(n for n in NOTES if lines[i][10:].startswith(n)) for i in starts] == list(NOTES)
    assert row < starts[0] <= row + 3  # the row's own lines: figures, then its wrapped detail
    if columns < 120:  # compact: the detail on a line of its own beneath the row, then notes
        assert lines[row + 1].startswith("    3 added")
    for line in lines[row:starts[0]]:  # the row and its detail hold no note
        assert not any(n in line for n in NOTES), line
    # A note's continuation lines hang under its first word.
    for at, end in zip(starts, [*starts[1:], starts[-1] + 1], strict=True):
        assert all(line.startswith(" " * 10) and line[10] != " " for line in lines[at + 1:end])
    assert " ".join(screen.split()).count("note:") == len(NOTES)


def test_piped_the_row_stays_one_line_with_its_notes(noted: tuple[Path, dict[str, str]]) -> None:
    base, env = noted
    out = subprocess.run([sys.executable, "-m", "miyabi_ctl", "phase0", "backup"],
                         capture_output=True, text=True, cwd=base, env=env, timeout=60).stdout
    row = next(line for line in out.splitlines() if line.startswith("controller-with-a-long"))
    assert all(n in row for n in NOTES)
