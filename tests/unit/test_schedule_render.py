"""The schedule's table and Gantt chart: within the terminal's width (80 columns when piped),
drawn by the real CLI in a real pty (tests/ptyshot.py), titles shown verbatim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from miyabi_ctl.dispatch.estimate import Effort
from miyabi_ctl.dispatch.schedule import Bound
from miyabi_ctl.dispatch.schedule_plan import Item, Schedule
from miyabi_ctl.dispatch.schedule_render import gantt_lines, schedule_table, summary_lines
from tests.ptyshot import assert_fits, run_in_pty

HOSTILE = "[bold red]not styled[/bold red] and ! [rejected] main -> main (fetch first)"
H = 60


def plan(items: list[Item], hosts: list[str], **more: object) -> Schedule:
    makespan = max(i.end for i in items)
    return Schedule(Effort(), datetime(2026, 12, 7, 9, tzinfo=UTC), items=items, hosts=hosts,
                    makespan=makespan, bound=Bound(makespan, [items[0].issue], makespan / 2, 2),
                    **more)


def three_weeks() -> Schedule:
    """A long plan on a host with three slots (bars overlap: lanes) and a long host name."""
    items = [Item(1000 + n, f"issue {n}", "a-rather-long-host-name", "claude", n * 3 * H,
                  n * 3 * H + (n % 4 + 1) * 8 * H) for n in range(30)]
    items += [Item(2001, HOSTILE, "mugen", "CodeGenAgent", 0, 12 * H, running=True),
              Item(2002, "short", "mugen", "claude", 12 * H, 12 * H + 30, default_estimate=True)]
    return plan(items, ["a-rather-long-host-name", "mugen", "idle"])


@pytest.mark.parametrize("width", [30, 40, 60, 80, 120, 200])
def test_the_chart_fits_every_width(width: int) -> None:
    schedule = three_weeks()
    lines = gantt_lines(schedule, width)
    assert all(len(line) <= width for line in lines[1:]), [x for x in lines if len(x) > width]
    rows = lines[2:]
    assert rows[0].startswith("a-rather-lo… ") and any(r.startswith("mugen ") for r in rows)
    assert any(r.startswith("idle") for r in rows)  # a host with nothing planned still shows
    assert lines[1].lstrip().startswith("|1")  # day ticks
    # every bar wide enough to hold its number shows it, running ones filled with =
    scale = float(lines[0].split("one column = ")[1].split("h,")[0]) * H
    drawn = "\n".join(rows)
    for item in schedule.items:
        size = max(1, round(item.end / scale) - round(item.start / scale))
        if size >= len(str(item.issue)) + 2:
            assert f"[{item.issue}" in drawn, (item, scale)
            fill = "=" if item.running else "-"
            assert f"[{item.issue}{fill}" in drawn or f"[{item.issue}]" in drawn, item


def test_the_chart_piped_is_80_columns_and_overlapping_work_gets_lanes() -> None:
    lines = gantt_lines(three_weeks(), None)
    assert max(len(line) for line in lines[1:]) <= 80
    host_rows = [r for r in lines[2:] if r.startswith("a-rather")]
    lanes = [r for r in lines[2:] if r.startswith(" ")]
    assert len(host_rows) == 1 and lanes  # the 3-slot host's parallel work is on extra lines


def test_the_table_shows_titles_verbatim_and_flags() -> None:
    schedule = three_weeks()
    for width in (60, 80, 200):
        console = Console(width=width, markup=False, highlight=False, emoji=False,
                          force_terminal=False)
        with console.capture() as captured:
            console.print(schedule_table(schedule, plain=width == 200))
        text = captured.get()
        assert "[bold red]not styled[/bold red]" in " ".join(text.split())
        assert "12h left" in text and "0.5h*" in text
        assert all(len(line) <= width for line in text.splitlines()) or width == 200
    summary = summary_lines(schedule)
    assert summary[0].startswith("Makespan ") and "lower bound" in summary[0]
    assert summary[1].startswith("Critical path: #1000")


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miyabi_ctl", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env=env, stdin=subprocess.DEVNULL)


BACKLOG = f"""issues:
  - {{number: 1, title: "Handle [/api] prefix in the gateway router", priority: P0, estimate: 4h}}
  - {{number: 2, title: "{HOSTILE}", depends: [1], estimate: 2d, agent: codex}}
  - {{number: 3, title: "A title long enough to need wrapping on a phone held upright, with a
      supercalifragilisticexpialidocious word", estimate: 1w, needs: [worktree]}}
  - {{number: 4, title: "no estimate", depends: [3]}}
  - {{number: 5, title: "needs a GPU nobody has", needs: [gpu]}}
  - {{number: 6, title: "closed", state: closed, estimate: 1h}}
  - {{number: 7, title: "tracking", estimate: 1h}}
  - {{number: 8, title: "child", parent: 7, estimate: 30m}}
"""


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    subprocess.run([*git, "remote", "add", "origin", str(tmp_path / "origin.git")], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD"], check=True)
    (tmp_path / "backlog.yaml").write_text(BACKLOG)
    # Agents recognised by names nothing here runs: the agent sessions of whoever else uses
    # this machine do not take the hosts' slots.
    (tmp_path / "fleet.yaml").write_text(
        f"repo: {{path: {repo}}}\nbacklog: {{file: backlog.yaml}}\n"
        "thresholds: {load_per_core: [1000, 2000]}\n"
        "agents:\n  claude: {executables: [no-such-agent-a], scripts: []}\n"
        "  codex: {executables: [no-such-agent-b], scripts: []}\n"
        "hosts:\n"
        "  builder-with-a-long-name: {transport: local, max_sessions: 1, tags: [worktree]}\n"
        "  second: {transport: local, max_sessions: 1}\n")
    state = tmp_path / "state"
    state.mkdir()
    return tmp_path, {**os.environ, "MIYABI_STATE_DIR": str(state), "NO_COLOR": "1"}


@pytest.mark.parametrize("columns", [60, 80, 120, 200])
def test_schedule_fits_every_terminal(project: tuple[Path, dict[str, str]], columns: int) -> None:
    base, env = project
    piped = cli("schedule", cwd=base, env=env)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
    screen = run_in_pty(["schedule"], columns, env=env, cwd=base)
    assert "Traceback" not in screen
    # The chart is drawn for the width it has (piped: 80): compared apart from the rest.
    lines = screen.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("Gantt: one column = "))
    axis = next(i for i, line in enumerate(lines) if line.lstrip().startswith("|1"))
    end = lines.index("", axis)
    chart, rest = lines[axis:end], lines[:top] + lines[end:]
    assert all(len(line) <= columns for line in lines[top:axis])
    assert all(len(line) <= columns for line in chart) and len(chart) == 3, chart
    assert chart[1].startswith("builder-wit") and chart[2].startswith("second ")
    assert_fits("\n".join(rest), columns, piped.stdout, extra=["WHEN", "…"])
    words = " ".join(screen.split())
    assert HOSTILE in words and "Handle [/api] prefix in the gateway router" in words
    assert "#5: no host can take it (builder-with-a-long-name: lacks tag gpu; second: lacks tag "\
           "gpu)" in words
    assert "Gantt:" in screen and "[3---" in " ".join(chart)


def test_schedule_piped_and_json(project: tuple[Path, dict[str, str]]) -> None:
    base, env = project
    out = cli("schedule", cwd=base, env={**env, "COLUMNS": "300"}).stdout
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("DAY"))
    rows = lines[header + 1:header + 6]
    assert all(not row.startswith("    ") for row in rows), out  # one line per row
    gantt = lines[lines.index(next(line for line in lines if line.startswith("Gantt:"))) + 1:]
    assert all(len(line) <= 80 for line in gantt[:4]), out
    doc = json.loads(cli("schedule", "--json", cwd=base, env=env).stdout)
    items = {i["issue"]: i for i in doc["items"]}
    assert set(items) == {1, 2, 3, 4, 8}  # not closed #6, tracking #7, unschedulable #5
    assert items[2]["effort_h"] == 16 and items[2]["agent"] == "codex"
    assert items[2]["start_h"] >= items[1]["end_h"] and items[3]["host"] == "builder-with-a-long-name"
    assert items[3]["effort_h"] == 40 and items[4]["default_estimate"] is True
    assert doc["unscheduled"] == [{"issue": 5, "reason": "no host can take it (builder-with-a-long"
                                   "-name: lacks tag gpu; second: lacks tag gpu)"}]
    six = json.loads(cli("schedule", "--json", "--hours-per-day", "6", cwd=base, env=env).stdout)
    assert {i["issue"]: i["effort_h"] for i in six["items"]}[2] == 12 and six["hours_per_day"] == 6
