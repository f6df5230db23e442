"""A far host: ``check`` of one host over a slow link, with client: openssh (cold and warm) and
paramiko, beside one cold ``ssh host true`` — issue 17's targets (docs/performance.md).

    sudo python -m bench.reach [--rtt 0.1] [--repeat 7] [--typer DIR] [--out reach.json]

One lab host (a real sshd, tests/lab/harness.py) behind the lab's delaying TCP proxy
(tests/lab/delay_proxy.py: ``--rtt`` seconds of round trip, 100 ms by default). In each round,
in rotating order:

- ``ssh true``: ``ssh -F CONFIG -o ControlMaster=no far true`` — the reference, a full handshake;
- ``ssh sh -s < probe``: the same with the probe check sends, on stdin — what the cold check's
  ssh does, without Python (sshd opens a session's window only after the exec: one more round
  trip for any command that reads stdin);
- ``openssh cold``: ``miyabi-ctl check`` with ``client: openssh`` and no master connection (ended
  before the run): it connects, leaves a master behind, and runs the probe over it;
- ``openssh warm``: the same with the master left by the previous command (cron's next check);
- ``paramiko``: ``miyabi-ctl check`` with the default client (a handshake every time);
- with ``--typer DIR``: ``openssh warm`` again with DIR first on PYTHONPATH — e.g. a directory
  made by ``pip install --no-deps --target DIR typer==0.29.2`` (pydantic must be importable) —
  and ``miyabi-ctl --help`` with both, for the cost of typer 0.29's pydantic at every start.

Every ``check`` must report the host (its load in the perfdata), or the bench stops.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from bench import measure
from miyabi_ctl.connectors.openssh import end_masters
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.probe.look import PROBE_SCRIPT, probe_args
from miyabi_ctl.remote.runner import COMMAND, script_input
from tests.lab.delay_proxy import DelayProxy
from tests.lab.harness import Lab

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reach", description=__doc__.split("\n")[0])
    parser.add_argument("--rtt", type=float, default=0.1, help="round trip added, seconds")
    parser.add_argument("--repeat", type=int, default=7, help="rounds")
    parser.add_argument("--typer", help="a directory holding another typer, to compare with")
    parser.add_argument("--out", default="reach-results.json", help="raw figures (JSON)")
    args = parser.parse_args(argv)
    # Bytecode, as pip writes it at install (a checkout run with PYTHONDONTWRITEBYTECODE would
    # compile every module at every start).
    compileall.compile_dir(str(ROOT / "miyabi_ctl"), quiet=1)
    state = Path(tempfile.mkdtemp(prefix="bench-reach-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIYABI_STATE_DIR": str(state / "state")}
    other_env = {**env, "PYTHONPATH": f"{args.typer}:{ROOT}"} if args.typer else None
    load_before = _loadavg()
    with Lab() as lab:
        host = lab.add_host("far")
        with DelayProxy((host.address, 22), rtt=args.rtt) as link:
            config = state / "ssh_config"
            known = state / "known_hosts"
            known.write_text(f"[127.0.0.1]:{link.port} {host.host_pub}\n")
            config.write_text("\n".join([
                "Host far", "    HostName 127.0.0.1", f"    Port {link.port}", "    User root",
                f"    IdentityFile {lab.client_key}", "    IdentitiesOnly yes",
                f"    UserKnownHostsFile {known}", "    StrictHostKeyChecking yes",
                "    BatchMode yes", ""]))
            fleets = {client: _fleet(state, config, known, client)
                      for client in ("openssh", "paramiko")}

            def check(client: str, run_env: dict[str, str]) -> measure.Measurement:
                m = measure.run([sys.executable, "-m", "miyabi_ctl", "check", "--fleet",
                                 str(fleets[client])], env=run_env)
                if "'far_load'=" not in m.stdout:
                    raise SystemExit(f"check did not reach the host: {m.stdout}{m.stderr}")
                return m

            def cold() -> measure.Measurement:
                end_masters(state / "state")
                return check("openssh", env)

            inventory = load_inventory(str(fleets["paramiko"]))
            probe = script_input(PROBE_SCRIPT, *probe_args(inventory.hosts[0], inventory, 12.0))
            tools = {
                "ssh true": lambda: measure.run(["ssh", "-F", str(config), "-o",
                                                 "ControlMaster=no", "far", "true"]),
                "ssh sh -s < probe": lambda: measure.run(
                    ["ssh", "-F", str(config), "-o", "ControlMaster=no", "far", COMMAND],
                    stdin_text=probe),
                "openssh cold": cold,
                "openssh warm": lambda: check("openssh", env),
                "paramiko": lambda: check("paramiko", env),
            }
            if other_env is not None:
                tools["openssh warm, other typer"] = lambda: check("openssh", other_env)
            figures = _rounds(tools, args.repeat)
            end_masters(state / "state")
    # Start-up: --help, and a command whose options are parsed and coerced (typer 0.29 does that
    # through pydantic) that then stops at once: check of a fleet file that does not exist.
    starts = {"--help": ["--help"], "check, no fleet file": ["check", "--fleet",
                                                             str(state / "missing.yaml")]}
    envs = {"installed typer": env, **({"other typer": other_env} if other_env else {})}
    startup: dict[str, list[float]] = {f"{s}, {e}": [] for s in starts for e in envs}
    for _ in range(args.repeat * 2):  # alternating, so drift hits both alike
        for start, words in starts.items():
            for name, run_env in envs.items():
                argv = [sys.executable, "-m", "miyabi_ctl", *words]
                startup[f"{start}, {name}"].append(measure.run(argv, env=run_env).wall_s)
    report = {"rtt_s": args.rtt, "repeat": args.repeat, "wall_s": figures,
              "help_s": startup, "typer_dir": args.typer, "load": [load_before, _loadavg()]}
    _print(report)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _fleet(base: Path, config: Path, known: Path, client: str) -> Path:
    path = base / f"fleet-{client}.yaml"
    path.write_text(yaml.safe_dump({
        "ssh": {"config": str(config), "known_hosts": str(known), "client": client,
                "connect_timeout": 10, "command_timeout": 20},
        "hosts": {"far": {"ssh": "far"}}}))
    return path


def _rounds(tools: dict, repeat: int) -> dict[str, list[float]]:
    """One warm-up each, then ``repeat`` rounds rotating who goes first. ``openssh warm`` always
    follows a command that left a master (the warm-up, or the previous tool)."""
    names = list(tools)
    for name in names:
        tools[name]()
    walls: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            if name.startswith("openssh warm"):
                tools["openssh warm"]()  # make sure a master is there, whatever ran before
            walls[name].append(tools[name]().wall_s)
        print(f"[bench] round {r + 1}/{repeat}", file=sys.stderr, flush=True)
    return walls


def _print(report: dict) -> None:
    walls = report["wall_s"]
    reference = statistics.median(walls["ssh true"])
    print(f"\n#### One host, {report['rtt_s'] * 1000:.0f} ms round trip "
          f"({report['repeat']} rounds)\n")
    print("| command | median s | min–max s | ÷ cold `ssh host true` |")
    print("|---|---:|---:|---:|")
    for name, values in walls.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {min(values):.3f}–{max(values):.3f} | "
              f"{median / reference:.2f}× |")
    print(f"\nload average before / after: {report['load'][0]} / {report['load'][1]}")
    print("\n| start-up of `miyabi-ctl` | median ms | min–max ms |")
    print("|---|---:|---:|")
    for name, values in report["help_s"].items():
        print(f"| {name} | {statistics.median(values) * 1000:.0f} | "
              f"{min(values) * 1000:.0f}–{max(values) * 1000:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
