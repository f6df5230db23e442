"""The probe's parsing on every platform's real output formats.

``fixtures/<platform>/probe.txt`` are documents probe.sh really printed on the lab's stand-ins
(captured by ``fixtures/capture.py``; the expected sessions come from how the lab started them,
not from this parser), ``raw.json`` the platform tools' own outputs beside them. The quoted
samples below are the REAL outputs the research collected (docs/platforms.md names the sources)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from miyabi_ctl.inventory import DEFAULT_AGENTS, parse_inventory
from miyabi_ctl.probe.agents import agent_of, parse_busybox_etime, parse_etime, parse_ps_line
from miyabi_ctl.probe.parse import parse_probe, parse_uptime_text

FIXTURES = Path(__file__).parent / "fixtures"
INV = parse_inventory("hosts: {h: {max_sessions: 8}}\n", Path("fleet.yaml"))
PLATFORMS = ["linux", "mac", "termux", "busybox"]


def _fixture(platform: str) -> tuple[str, dict, dict]:
    d = FIXTURES / platform
    return ((d / "probe.txt").read_text(), json.loads((d / "expected.json").read_text()),
            json.loads((d / "raw.json").read_text()))


@pytest.mark.parametrize("platform", PLATFORMS)
def test_sessions_cwds_and_figures_from_each_platforms_probe(platform: str) -> None:
    text, expected, _ = _fixture(platform)
    report = parse_probe(text, INV)
    assert {str(s.pid): s.agent for s in report.sessions} == expected["sessions"]
    for s in report.sessions:
        assert s.cwd == expected["cwds"][str(s.pid)]
    assert report.cpu_count == expected["cpus"]
    assert report.mem_total and report.mem_available and report.uptime_s
    assert report.unknown == {}
    if platform == "termux":  # load and boot time from toybox's uptime: the kernel's own load
        line = next(x for x in text.splitlines() if x.startswith("uptime_text="))
        assert report.load_avg == parse_uptime_text(line)[1]
        assert "denied=/proc/loadavg" in text and "denied=/proc/uptime" in text
        assert report.hostname == "localhost"
    else:
        assert report.load_avg == tuple(expected["load"])
    if platform == "mac":
        assert report.os is not None and report.os.startswith("Darwin")
        assert "uptime_f=" not in text  # from kern.boottime, not /proc


def test_the_raw_formats_are_the_platforms_own() -> None:
    mac = _fixture("mac")[2]
    assert re.fullmatch(r"\{ sec = \d+, usec = \d+ \} \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n",
                        mac["sysctl -n kern.boottime"])
    assert mac["vm_stat"].startswith("Mach Virtual Memory Statistics: (page size of ")
    assert re.fullmatch(r"[ \d]\d:\d\d  up .*, \d+ users?, load averages: [\d.]+ [\d.]+ [\d.]+\n",
                        mac["uptime"])
    termux = _fixture("termux")[2]
    assert termux["ps -axo pid= 2>&1; echo rc=$?"] == \
        "ps: Unknown option 'xo' (see \"ps --help\")\nrc=1\n"
    assert termux["cat /proc/loadavg 2>&1"] == "cat: /proc/loadavg: Permission denied\n"
    busybox = _fixture("busybox")[2]
    assert busybox["ps -axo pid= 2>&1; echo rc=$?"].startswith("ps: invalid option -- 'x'\n")


@pytest.mark.parametrize(("text", "up", "load"), [
    # macOS (shell_cmds w.c), REAL
    ("21:38  up 22:27, 4 users, load averages: 2.05 1.80 1.69", 22 * 3600 + 27 * 60,
     (2.05, 1.80, 1.69)),
    (" 2:22  up 3 days, 4 hrs, 4 users, load averages: 4.18 6.86 7.92", 3 * 86400 + 4 * 3600,
     (4.18, 6.86, 7.92)),
    ("14:30  up 1 day,  2:45, 3 users, load averages: 1.52 1.43 1.41", 86400 + 2 * 3600 + 45 * 60,
     (1.52, 1.43, 1.41)),
    ("16:46  up 30 mins, 0 users, load averages: 2.50 1.75 1.25", 1800, (2.5, 1.75, 1.25)),
    # Termux procps (no users field), REAL (htop#902)
    (" 21:36:10 up 21:10,  load average: 32.12, 34.45, 36.66", 21 * 3600 + 600,
     (32.12, 34.45, 36.66)),
    # toybox, derived from toys/other/uptime.c
    (" 10:00:00 up 3 days,  2:03,  1 user,  load average: 0.10, 0.20, 0.30",
     3 * 86400 + 2 * 3600 + 180, (0.1, 0.2, 0.3)),
    # busybox without utmp, derived from procps/uptime.c
    (" 10:00:00 up 3 days,  2:03,  load average: 0.10, 0.20, 0.30", 3 * 86400 + 2 * 3600 + 180,
     (0.1, 0.2, 0.3)),
    (" 10:00:00 up 5 min,  load average: 1.00, 2.00, 3.00", 300, (1.0, 2.0, 3.0)),
    ("", None, None),
    ("uptime: not found", None, None),
])
def test_uptime_words_on_every_platform(text: str, up: int | None,
                                        load: tuple[float, float, float] | None) -> None:
    assert parse_uptime_text(text) == (up, load)


@pytest.mark.parametrize(("text", "seconds"), [
    # macOS pads days with zeros below 100 days (adv_cmds print.c get_etime)
    ("03-02:03:04", 3 * 86400 + 7384), ("101-00:00:01", 101 * 86400 + 1), ("60:00", 3600),
    # toybox pads days with a space (printed inside its column)
    (" 3-02:03:04", 3 * 86400 + 7384),
])
def test_elapsed_times_of_bsd_and_toybox(text: str, seconds: int) -> None:
    assert parse_etime(text) == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("2h03", 2 * 3600 + 180), ("3d02", 3 * 86400 + 7200), ("123d", 123 * 86400),
])
def test_busybox_rounded_elapsed_times(text: str, seconds: int) -> None:
    assert parse_busybox_etime(text) == seconds


def test_a_busybox_line_without_etime_waits_for_proc() -> None:
    proc = parse_ps_line("    7     1 S    - 2.1.37")
    assert proc is not None and not proc.age_exact and proc.args == "2.1.37"


@pytest.mark.parametrize(("args", "exe", "launcher", "agent"), [
    ("node /opt/homebrew/bin/claude --resume", None, None, "claude"),
    ("node /usr/local/bin/claude", None, None, "claude"),
    ("node /data/data/com.termux/files/usr/bin/claude", None, None, "claude"),
    ("node /x/_npx/6a9f/node_modules/.bin/claude", None, None, "claude"),
    ("/opt/homebrew/bin/node /opt/homebrew/lib/node_modules/@anthropic-ai/claude-code/cli.js",
     None, None, "claude"),
    ("bun /x/node_modules/@anthropic-ai/claude-code/cli.js", None, None, "claude"),
    ("deno run -A npm:@anthropic-ai/claude-code", None, None, "claude"),
    ("deno run -A npm:@anthropic-ai/claude-code@2.1.37 --resume", None, None, "claude"),
    ("/Users/me/.local/share/claude/versions/2.1.144 --resume", None, None, "claude"),
    ("/Users/me/.local/share/claude/versions/2.1.201 --bg-spare /tmp/cc-daemon-501/x.sock",
     None, None, None),
    ("node /usr/local/bin/codex", None, None, "codex"),
    ("/x/@openai/codex/vendor/aarch64-apple-darwin/codex/codex", None, None, "codex"),
    # titles rewritten to a bare version: only what really runs decides
    ("2.1.37", "/home/u/.local/share/claude/versions/2.1.37", None, "claude"),
    ("2.1.37 --resume", "/root/.local/share/claude/versions/2.1.37 (deleted)", None, "claude"),
    ("2.1.37", "/usr/bin/node", "/usr/local/bin/claude", "claude"),
    ("2.1.37", "claude", None, "claude"),
    # macOS: lsof's first program text file (docs/platforms.md); npm's native build; node under
    # a version title, whose script and $_ macOS cannot show: not seen
    ("2.1.37", "/Users/me/.local/share/claude/versions/2.1.37", None, "claude"),
    ("2.1.140", "/opt/homebrew/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe", None,
     "claude"),
    ("2.1.37", "/opt/homebrew/bin/node", None, None),
    ("2.1.37", "/usr/bin/node", "/srv/app/server.js", None),
    ("2.1.37", "/usr/bin/node", None, None),
    ("2.1.37", "/usr/bin/python3", None, None),
    ("2.1.37", "/home/u/bin/3.2.1", None, None),
    ("2.1.37", None, None, None),
    ("3.11", "/usr/bin/python3.11", None, None),
    ("node /srv/npm:@anthropic-ai/claude-code-helper.js", None, None, None),
    ("{2.1.37} 2.1.37", "/root/.local/share/claude/versions/2.1.37", None, "claude"),
])
def test_every_install_form(args: str, exe: str | None, launcher: str | None,
                            agent: str | None) -> None:
    assert agent_of(args, DEFAULT_AGENTS.values(), exe=exe, launcher=launcher) == agent
