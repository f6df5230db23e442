"""Notifications end to end without the lab: the real CLI (a subprocess, as cron runs it) on a
fleet of this machine alone, whose level a test moves by writing files into its repository
(`thresholds.uncommitted: [1, 2]`), and a local HTTP server as the Apprise json:// target."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory import parse_inventory
from miyabi_ctl.notify.diff import Change
from miyabi_ctl.notify.message import clean, compose
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]


class Box:
    """A fleet of one local host (``me``) on a repository of its own, and a state directory."""

    def __init__(self, base: Path, name: str = "fleet.yaml") -> None:
        self.base = base
        self.repo = base / "repo"
        self.state = base / "state"
        self.fleet = base / name
        if not self.repo.exists():
            subprocess.run(["git", "init", "-q", "-b", "main", str(self.repo)], check=True)
            subprocess.run(["git", "-C", str(self.repo), "-c", "user.name=t", "-c",
                            "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init"],
                           check=True)

    def write(self, *urls: str) -> None:
        # the load is this machine's, busy with other tests: never what moves the level here
        self.fleet.write_text(
            f"repo: {{path: {self.repo}}}\n"
            "thresholds: {load_per_core: [1000, 2000], uncommitted: [1, 2]}\n"
            "hosts:\n  me: {transport: local}\n"
            + (f"notify: {json.dumps(list(urls))}\n" if urls else ""))

    def dirty(self, n: int) -> None:
        for old in self.repo.glob("dirty-*"):
            old.unlink()
        for i in range(n):
            (self.repo / f"dirty-{i}").write_text("x\n")

    def cli(self, *args: str, extra: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MIYABI_STATE_DIR": str(self.state), "PYTHONPATH": str(ROOT)}
        return subprocess.run([sys.executable, *(extra or []), "-m", "miyabi_ctl", *args,
                               "--fleet", str(self.fleet)], capture_output=True, text=True,
                              timeout=60, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_message_per_change_and_none_for_the_baseline(box: Box) -> None:
    with Receiver() as target:
        box.write(target.url)
        assert box.cli("check").returncode == 0
        assert target.messages == []  # the first look records a baseline
        box.dirty(2)
        for _ in range(3):  # cron's check every minute: one message, not three
            proc = box.cli("check")
            assert (proc.returncode, proc.stderr) == (2, "")
        box.dirty(0)
        proc = box.cli("status")
        assert (proc.returncode, proc.stderr) == (0, "")
        box.cli("sessions")
        assert box.cli("check", "--json").returncode == 0
    assert target.bodies() == [["me: ok → critical: 2 uncommitted files"], ["me: critical → ok"]]
    assert [m["title"] for m in target.messages] == ["miyabi-ctl: me critical",
                                                     "miyabi-ctl: me ok"]
    assert [m["type"] for m in target.messages] == ["warning", "info"]
    assert target.messages[0]["message"].endswith(f"(seen by miyabi-ctl check; fleet {box.fleet})")


@pytest.mark.parametrize("refusal", ["http 500", "connection refused"])
def test_a_failed_send_is_one_warning_the_same_exit_code_and_is_retried(box: Box,
                                                                         refusal: str) -> None:
    with Receiver() as target:
        url = target.url if refusal == "http 500" else f"json://127.0.0.1:{free_port()}/hook"
        box.write(url)
        box.cli("check")
        box.dirty(2)
        target.status = 500
        proc = box.cli("check")
        assert proc.returncode == 2 and proc.stdout.startswith("MIYABI CRITICAL - ")
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        shown = url.split("?")[0]
        assert lines[0].startswith(f"miyabi-ctl: warning: notification to {shown} not sent (")
        assert lines[0].endswith("; it is tried again with the next command")
        assert ("500" in lines[0]) == (refusal == "http 500")
        assert "Traceback" not in proc.stderr and "apprise" not in proc.stderr.lower()
        waiting = box.cli("notify")
        assert waiting.stdout == f"{shown}  1 change waiting\n"
        box.write(target.url)  # the target answers again (the same URL in the 500 case)
        target.status = 200
        if refusal == "http 500":
            proc = box.cli("check")
            assert (proc.returncode, proc.stderr) == (2, "")
            assert target.bodies() == [["me: ok → critical: 2 uncommitted files"]]
            assert box.cli("notify").stdout == f"{shown}  no changes waiting\n"
        else:  # a target no longer in fleet.yaml is forgotten, what it missed with it
            assert box.cli("check").returncode == 2
            assert target.messages == []


def test_a_target_that_never_answers_costs_check_at_most_apprises_read_timeout(box: Box) -> None:
    with socket.socket() as mute:  # accepts connections (the kernel's backlog), never replies
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        url = f"json://127.0.0.1:{mute.getsockname()[1]}/hook"
        box.write(url)
        box.cli("check")
        box.dirty(2)
        started = time.monotonic()
        proc = box.cli("check")
        took = time.monotonic() - started
    assert proc.returncode == 2 and proc.stderr.startswith(f"miyabi-ctl: warning: notification "
                                                           f"to {url} not sent (")
    assert 4 <= took < 12, took  # Apprise's 4 s read timeout, plus the command itself


def test_a_change_that_folds_back_while_the_target_was_down_is_not_sent(box: Box) -> None:
    with Receiver() as target:
        box.write(target.url)
        box.cli("check")
        target.status = 500
        box.dirty(2)
        assert "not sent" in box.cli("check").stderr
        box.dirty(1)
        assert "not sent" in box.cli("check").stderr  # still waiting: ok → warning now
        target.status = 200
        box.cli("check")
        box.dirty(2)
        box.dirty(0)
        assert box.cli("check").stderr == ""  # critical → … → ok, never sent: nothing waits
    assert target.bodies() == [["me: ok → warning: 1 uncommitted files"], ["me: warning → ok"]]


def test_concurrent_commands_send_a_change_once(box: Box) -> None:
    with Receiver() as target:
        box.write(target.url)
        box.cli("check")
        box.dirty(2)
        procs = []
        threads = [threading.Thread(target=lambda: procs.append(box.cli("check")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [p.returncode for p in procs] == [2] * 4 and all(p.stderr == "" for p in procs)
    assert len(target.messages) == 1


def test_two_fleets_on_one_controller_keep_separate_records(tmp_path: Path) -> None:
    one, two = Box(tmp_path / "a"), Box(tmp_path / "b")
    two.state = one.state  # one state directory, two fleet files (and repositories)
    with Receiver() as target:
        one.write(target.url)
        two.write(target.url)
        one.cli("check")
        two.cli("check")
        one.dirty(2)
        one.cli("check")
        two.cli("check")  # its own record: still ok, nothing to tell
    assert len(list((one.state / "notify").glob("*.json"))) == 2
    assert target.bodies() == [["me: ok → critical: 2 uncommitted files"]]


def test_notify_test_is_delivered_and_a_refusal_exits_1(box: Box) -> None:
    with Receiver() as target:
        dead = f"json://127.0.0.1:{free_port()}/x"
        box.write(target.url)
        proc = box.cli("notify", "--test")
        assert (proc.returncode, proc.stderr) == (0, "")
        assert proc.stdout == f"{target.url}: sent\n"
        assert target.messages[0]["title"] == "miyabi-ctl: test notification"
        box.write(target.url, dead)
        proc = box.cli("notify", "--test")
        assert proc.returncode == 1 and proc.stderr == ""
        assert proc.stdout.splitlines()[0] == f"{target.url}: sent"
        assert proc.stdout.splitlines()[1].startswith(f"{dead}: not sent (")
    assert len(target.messages) == 2


def test_a_url_apprise_cannot_read_is_named_by_its_scheme_only(box: Box) -> None:
    box.write("tgram://SECRET-not-a-bot-token", "nosuchscheme://SECRET-token@x/y")
    proc = box.cli("notify", "--test")  # neither gets as far as the network
    assert proc.returncode == 1 and proc.stderr == "", proc
    assert "SECRET" not in proc.stdout and "token" not in proc.stdout
    first, second = proc.stdout.splitlines()
    assert first.startswith("tgram://…: not sent (not a usable Apprise URL: Unparseable Telegram")
    assert second.startswith("nosuchscheme://…: not sent (not a usable Apprise URL: ")


def test_notify_without_targets_is_a_usage_error(box: Box) -> None:
    box.write()
    proc = box.cli("notify", "--test")
    assert proc.returncode == 2
    assert proc.stderr == (f"miyabi-ctl: error: {box.fleet}: key 'notify': no targets: add a "
                           "list of Apprise URLs (docs/fleet.md)\n")


def test_apprise_is_imported_only_to_send(box: Box) -> None:
    """`check` with nothing new, `--help`: Apprise (~0.15 s) is never imported."""
    with Receiver() as target:
        box.write(target.url)
        box.cli("check")
        quiet = box.cli("check", extra=["-X", "importtime"])
        assert quiet.returncode == 0
        assert " apprise" not in quiet.stderr and "miyabi_ctl.notify" in quiet.stderr
        helped = box.cli("--help", extra=["-X", "importtime"])
        assert "miyabi_ctl.notify" not in helped.stderr and " apprise" not in helped.stderr
        box.dirty(2)
        loud = box.cli("check", extra=["-X", "importtime"])
        assert " apprise" in loud.stderr and len(target.messages) == 1


def test_no_targets_no_record(box: Box) -> None:
    box.write()
    box.cli("check")
    assert not (box.state / "notify").exists()


# -- fleet.yaml ---------------------------------------------------------------------------------

FLEET = "hosts:\n  a:\n"


def test_notify_key_is_a_list_of_urls() -> None:
    inv = parse_inventory(FLEET + "notify:\n  - ntfy://miyabi-ops\n  - json://h:8080/x?a=b\n",
                          Path("f.yaml"))
    assert inv.notify == ("ntfy://miyabi-ops", "json://h:8080/x?a=b")
    assert parse_inventory(FLEET, Path("f.yaml")).notify == ()
    assert parse_inventory(FLEET + "notify:\n", Path("f.yaml")).notify == ()


@pytest.mark.parametrize("text, message", [
    ("notify: ntfy://x\n", "f.yaml:3: key 'notify': expected a list of strings"),
    ("notify:\n  - ntfy://x\n  - secret-token-1234\n",
     "f.yaml:5: key 'notify': entry 2 is not an Apprise URL (scheme://…, no spaces)"),
    ("notify: ['tgram://a b']\n",
     "f.yaml:3: key 'notify': entry 1 is not an Apprise URL (scheme://…, no spaces)"),
    ("notify: [{url: x}]\n", "f.yaml:3: key 'notify': expected a string, got a mapping"),
])
def test_a_bad_notify_entry_names_line_and_key_never_the_value(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(FLEET + text, Path("f.yaml"))
    assert str(caught.value) == message
    assert "secret-token" not in str(caught.value)


# -- the words ----------------------------------------------------------------------------------

NOW = datetime(2026, 12, 4, 10, 30, tzinfo=UTC)


def test_message_lines_quote_outside_text_verbatim() -> None:
    title = 'Fix [docs] **bold** <b>x</b> $(id) "q"\nforged: line\u202eevil'
    changes = [
        Change("run:1169", "running", "ended", NOW.isoformat(), host="majin", title=title,
               commits=3),
        Change("host:mugen", "ok", "unreachable", NOW.isoformat(), reason="refused\x1b[31m"),
        Change("run:1170", None, "waiting", "2026-12-04T10:02:00+00:00", host="mugen"),
        Change("run:1171", "ended", "pr-open", NOW.isoformat(), host="mugen", title="t"),
    ]
    heading, body = compose(changes, now=NOW, command="runs", fleet="/f.yaml")
    assert heading == "miyabi-ctl: #1169 ended, mugen unreachable, #1170 waiting and 1 more"
    assert body.splitlines() == [
        '#1169 "Fix [docs] **bold** <b>x</b> $(id) "q"\\nforged: line\\u202eevil" on majin: '
        "running → ended with 3 commits (ready to land)",
        "mugen: ok → unreachable: refused\\x1b[31m",
        "#1170 on mugen: waiting for input (at 2026-12-04 10:02 UTC)",
        '#1171 "t" on mugen: ended with commits (ready to land) → pull request open',
        "(seen by miyabi-ctl runs; fleet /f.yaml)",
    ]


def test_long_text_and_many_changes_are_bounded() -> None:
    assert clean("x" * 1000) == "x" * 299 + "…"
    changes = [Change(f"host:h{i}", "ok", "critical", NOW.isoformat()) for i in range(45)]
    _, body = compose(changes, now=NOW, command="check", fleet="/f.yaml")
    assert body.splitlines()[-2] == "… and 5 more changes" and len(body.splitlines()) == 42


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # apprise's imghdr import, in-process
def test_outside_text_reaches_markdown_and_html_targets_as_text_never_markup() -> None:
    """Sent as Apprise's text format: a Markdown or HTML target gets it escaped, a text target
    as it is (Apprise ≥ 2.0 escapes Markdown; 1.x passed it through, hence the lower bound)."""
    from miyabi_ctl.notify.send import deliver

    text = '#7 "**bold** [link](http://x) <b>tag</b> `code`" on h: launch failed'
    with Receiver() as target:
        for form in ("", "?format=markdown", "?format=html"):
            assert deliver(target.url + form, "t", text).ok
    plain, markdown, html = (m["message"] for m in target.messages)
    assert plain == text
    assert "**bold**" not in markdown and "\\*\\*bold\\*\\*" in markdown
    assert "\\[link\\]\\(http://x\\)" in markdown and "\\`code\\`" in markdown
    assert "<b>" not in html and "&lt;b&gt;tag&lt;/b&gt;" in html
