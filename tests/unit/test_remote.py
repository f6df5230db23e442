"""Scripts sent on stdin: values stay data, and nothing in a script can eat the rest of it."""

from __future__ import annotations

from miyabi_ctl.connectors.local import LocalHost
from miyabi_ctl.inventory import HostSpec
from miyabi_ctl.remote import run_script

HOST = LocalHost(HostSpec("controller", transport="local"))


def test_a_command_that_reads_stdin_cannot_swallow_the_script() -> None:
    # Longer than the shell's read buffer, so a plain `sh -s` would hand the rest to `cat`.
    script = ('cat\nread -r line || echo "stdin was empty"\n' + "#" * 100_000 + "\n"
              'echo "still running: $1"\n')
    result = run_script(HOST, script, "arg one")
    assert result.ok, result.stderr
    assert result.stdout == "stdin was empty\nstill running: arg one\n"
    unguarded = HOST.run("sh -s -- 'arg one'", stdin=script)
    assert "still running: arg one" not in unguarded.stdout  # cat ate it: what the guard is for


def test_hostile_values_are_data() -> None:
    values = ["$(touch /tmp/miyabi-pwned)", "`id`", "'; exit 7; '", "a\nb", "-n", "", "*"]
    result = run_script(HOST, 'for v in "$@"; do printf "<%s>\\n" "$v"; done\n', *values)
    assert result.ok
    assert result.stdout == "".join(f"<{v}>\n" for v in values)


def test_exit_status_and_functions_inside_the_script() -> None:
    script = "helper() { echo helped; }\nhelper\nexit 3\necho never\n"
    result = run_script(HOST, script)
    assert (result.exit_code, result.stdout) == (3, "helped\n")
