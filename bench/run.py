"""miyabi-ctl's speed, measured against Ansible, parallel-ssh, OpenSSH and bare paramiko.

    pip install -e '.[bench]'            # ansible-core, parallel-ssh (bench only)
    sudo python -m bench.run --hosts 4,60,200 --repeat 5

Brings up the largest fleet of lab hosts once (tests/lab.py: real sshd in namespaces, a clone
and a few fake agent sessions each), then for every fleet size runs the tools in rounds
(A B C D E, then B C D E A, ...) so drift on a shared machine hits all alike. Every run must see
every host answer, or the bench stops: a fast run that lost hosts is not a result.
Prints markdown tables (docs/performance.md holds a copy) and writes the raw figures as JSON.
See docs/performance.md for the method and what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import measure
from bench.lab_fleet import BenchLab

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("miyabi-ctl", "paramiko-floor", "openssh", "parallel-ssh", "ansible-raw")


@dataclass
class Tool:
    name: str
    argv: list[str]
    reported: Callable[[str], int]   # stdout -> hosts that answered fully
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Series:
    """Every measured run of one tool at one fleet size."""

    tool: str
    hosts: int
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    max_rss_mb: list[float | None] = field(default_factory=list)
    tree_rss_mb: float | None = None
    tree_pss_mb: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.wall_s)


class LostHosts(RuntimeError):
    """A run in which not every host answered: the figures would lie."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default="4,60,200",
                        help="fleet sizes to compare at, comma-separated (default 4,60,200)")
    parser.add_argument("--repeat", type=int, default=5, help="measured runs per tool and size")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"subset of {','.join(TOOLS)}")
    parser.add_argument("--forks", type=int, default=None,
                        help="miyabi-ctl --forks and paramiko-floor threads (default: "
                             "miyabi-ctl's own default, ssh.max_parallel)")
    parser.add_argument("--watch-hosts", type=int, default=60)
    parser.add_argument("--check-hosts", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=2, help="fake agent sessions per host")
    parser.add_argument("--out", default="bench-results.json", help="raw figures (JSON)")
    args = parser.parse_args(argv)
    sizes = sorted({int(x) for x in args.hosts.split(",") if x})
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - set(TOOLS)
    if unknown:
        parser.error(f"unknown tools: {', '.join(sorted(unknown))}")
    if "ansible-raw" in tools and shutil.which("ansible") is None:
        parser.error("ansible is not installed: pip install -e '.[bench]'")

    largest = max([*sizes, args.watch_hosts, args.check_hosts])
    state = tempfile.mkdtemp(prefix="bench-state-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MIYABI_STATE_DIR": state,
           "COLUMNS": "200"}
    say(f"starting {largest} lab hosts with {args.sessions} agent sessions each")
    report: dict = {"machine": machine(), "load_before": _loadavg()}
    try:
        with BenchLab(largest, sessions_per_host=args.sessions, log=say) as lab:
            report["startup"] = startup(env, max(10, args.repeat * 2))
            report["check"] = check(lab, env, args.check_hosts, max(5, args.repeat))
            report["status"] = {}
            for n in sizes:
                load = _loadavg()
                series = compare(lab, n, tools, args.repeat, env, args.forks)
                report["status"][n] = [asdict(s) for s in series]
                report.setdefault("load", {})[n] = [load, _loadavg()]
                print(f"\nload average before / after: {load} / {_loadavg()}")
                print_status_table(n, series)
            report["watch"] = watch(lab, env, args.watch_hosts, refreshes=10)
    except KeyboardInterrupt:
        say("interrupted; lab stopped")
        return 130
    finally:
        shutil.rmtree(state, ignore_errors=True)
    report["load_after"] = _loadavg()
    print_summary(report)
    Path(args.out).write_text(json.dumps(report, indent=2))
    say(f"raw figures written to {args.out}")
    return 0


# -- the comparison ---------------------------------------------------------------------------------


def tools_for(lab: BenchLab, n: int, env: dict[str, str], forks: int | None) -> dict[str, Tool]:
    from miyabi_ctl.inventory import SSHSettings

    py = sys.executable
    floor_forks = forks or SSHSettings().max_parallel
    targets = str(lab.targets(n))
    fleet = str(lab.fleet_yaml(n))
    cfg, inventory = lab.ansible_files(n)
    miyabi = [py, "-m", "miyabi_ctl", "status", "--json", "--fleet", fleet]
    if forks:
        miyabi += ["--forks", str(forks)]
    return {
        "miyabi-ctl": Tool("miyabi-ctl", miyabi, _miyabi_reported, env),
        "paramiko-floor": Tool("paramiko-floor",
                               [py, "-m", "bench.clients", "paramiko", targets, str(floor_forks)],
                               _client_reported, env),
        "openssh": Tool("openssh", [py, "-m", "bench.clients", "openssh", targets, str(n)],
                        _client_reported, env),
        "parallel-ssh": Tool("parallel-ssh", [py, "-m", "bench.clients", "pssh", targets, str(n)],
                             _client_reported, env),
        "ansible-raw": Tool("ansible-raw",
                            ["ansible", "lab", "-i", str(inventory), "-m", "raw",
                             "-a", lab.inline_command(), "--forks", str(n), "--one-line"],
                            _ansible_reported, {**env, "ANSIBLE_CONFIG": str(cfg)}),
    }


def compare(lab: BenchLab, n: int, names: list[str], repeat: int, env: dict[str, str],
            forks: int | None) -> list[Series]:
    tools = tools_for(lab, n, env, forks)
    chosen = [tools[name] for name in names]
    series = {t.name: Series(t.name, n) for t in chosen}
    say(f"{n} hosts: warm-up run of each tool")
    for tool in chosen:
        timed(tool, n)
    for round_no in range(repeat):
        order = chosen[round_no % len(chosen):] + chosen[:round_no % len(chosen)]
        for tool in order:
            m = timed(tool, n)
            s = series[tool.name]
            s.wall_s.append(m.wall_s)
            s.cpu_s.append(m.cpu_s)
            s.max_rss_mb.append(m.max_rss_mb)
        say(f"{n} hosts: round {round_no + 1}/{repeat}: " + "  ".join(
            f"{t.name} {series[t.name].wall_s[-1]:.2f}s" for t in order))
    for tool in chosen:  # peak memory of the whole process tree, in a sampled run of its own
        m = timed(tool, n, sample_memory=True)
        series[tool.name].tree_rss_mb = m.tree_rss_mb
        series[tool.name].tree_pss_mb = m.tree_pss_mb
    return list(series.values())


def timed(tool: Tool, n: int, *, sample_memory: bool = False) -> measure.Measurement:
    m = measure.run(tool.argv, env=tool.env, cwd=str(ROOT), sample_memory=sample_memory)
    reported = tool.reported(m.stdout)
    if reported != n:
        raise LostHosts(f"{tool.name} on {n} hosts: only {reported} reported (exit "
                        f"{m.exit_code}); stderr: {m.stderr[-2000:]}\nstdout: {m.stdout[-1000:]}")
    return m


def _miyabi_reported(stdout: str) -> int:
    doc = json.loads(stdout)
    return sum(1 for h in doc["hosts"] if h["reachable"] and h["repo"] and h["repo"]["head"])


def _client_reported(stdout: str) -> int:
    return json.loads(stdout.strip().splitlines()[-1])["reported"]


def _ansible_reported(stdout: str) -> int:
    return sum(1 for line in stdout.splitlines() if " | CHANGED | rc=0 |" in line and "@@end" in line)


# -- the single-number measurements ------------------------------------------------------------------


def startup(env: dict[str, str], repeat: int) -> dict:
    say("miyabi-ctl --help start-up")
    argv = [sys.executable, "-m", "miyabi_ctl", "--help"]
    measure.run(argv, env=env)
    walls = [measure.run(argv, env=env).wall_s for _ in range(repeat)]
    bare = [measure.run([sys.executable, "-c", "pass"], env=env).wall_s for _ in range(repeat)]
    return {"help_s": walls, "python_s": bare}


def check(lab: BenchLab, env: dict[str, str], n: int, repeat: int) -> dict:
    say(f"check on {n} hosts")
    argv = [sys.executable, "-m", "miyabi_ctl", "check", "--fleet", str(lab.fleet_yaml(n))]
    first = measure.run(argv, env=env)
    if first.exit_code != 0:
        raise LostHosts(f"check on {n} hosts: exit {first.exit_code}: {first.stdout}{first.stderr}")
    runs = [measure.run(argv, env=env) for _ in range(repeat)]
    return {"hosts": n, "wall_s": [m.wall_s for m in runs], "line": first.stdout.strip()}


def watch(lab: BenchLab, env: dict[str, str], n: int, refreshes: int) -> dict:
    say(f"status --watch refreshes on {n} hosts")
    inits = ",".join(str(h.init_pid) for h in lab.hosts[:n])
    m = measure.run([sys.executable, "-m", "bench.watch_refresh", str(lab.fleet_yaml(n)),
                     str(refreshes), inits], env=env, cwd=str(ROOT))
    if m.exit_code != 0:
        raise LostHosts(f"watch on {n} hosts: {m.stdout}{m.stderr}")
    return json.loads(m.stdout)


# -- output -------------------------------------------------------------------------------------------


def machine() -> dict:
    import paramiko

    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    versions = {"python": platform.python_version(), "paramiko": paramiko.__version__,
                "openssh": _output(["ssh", "-V"])}
    for dist in ("ansible-core", "parallel-ssh", "ssh2-python", "cryptography"):
        try:
            from importlib.metadata import version

            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "not installed"
    return {"nproc": os.cpu_count(), "mem_gib": round(int(mem) / 2**20, 1),
            "kernel": platform.release(), "cpu": _cpu_model(), "versions": versions}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _output(argv: list[str]) -> str:
    import subprocess

    proc = subprocess.run(argv, capture_output=True, text=True)
    return (proc.stdout or proc.stderr).strip()


def print_status_table(n: int, series: list[Series]) -> None:
    base = next((s for s in series if s.tool == "miyabi-ctl"), None)
    print(f"\n### status, {n} hosts ({len(series[0].wall_s)} runs each)\n")
    print("| tool | median s | min–max s | CPU s (tree) | peak RSS MB (largest process) "
          "| peak tree RSS / PSS MB | miyabi-ctl ÷ tool |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in series:
        ratio = f"{base.median / s.median:.2f}" if base else "–"
        tree = (f"{s.tree_rss_mb:.0f} / {s.tree_pss_mb:.0f}" if s.tree_rss_mb is not None
                else "–")
        rss = [r for r in s.max_rss_mb if r is not None]
        largest = f"{max(rss):.0f}" if rss else "–"
        print(f"| {s.tool} | {s.median:.2f} | {min(s.wall_s):.2f}–{max(s.wall_s):.2f} "
              f"| {statistics.median(s.cpu_s):.2f} | {largest} | {tree} | {ratio} |")
    sys.stdout.flush()


def print_summary(report: dict) -> None:
    m = report["machine"]
    print(f"\nmachine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}; "
          + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    s = report["startup"]
    c = report["check"]
    w = report["watch"]
    print("\n| measurement | median | min–max |")
    print("|---|---:|---:|")
    print(f"| `miyabi-ctl --help` | {_ms(s['help_s'])} | {_range_ms(s['help_s'])} |")
    print(f"| `python -c pass` (for scale) | {_ms(s['python_s'])} | {_range_ms(s['python_s'])} |")
    print(f"| `check` on {c['hosts']} hosts | {_ms(c['wall_s'])} | {_range_ms(c['wall_s'])} |")
    print(f"| `status --watch` refresh, {w['hosts']} hosts | {_ms(w['refresh_s'])} "
          f"| {_range_ms(w['refresh_s'])} |")
    print(f"| `status --watch` first (connecting) refresh, {w['hosts']} hosts "
          f"| {w['connect_s'] * 1000:.0f} ms | – |")
    print(f"| ↳ controller CPU per refresh | {_ms(w['controller_cpu_s'])} "
          f"| {_range_ms(w['controller_cpu_s'])} |")
    if w.get("hosts_cpu_s"):
        print(f"| ↳ lab hosts' CPU per refresh (sshd, shells, probe) | {_ms(w['hosts_cpu_s'])} "
              f"| {_range_ms(w['hosts_cpu_s'])} |")
    print(f"\nload average (other work on the machine): {report['load_before']} before, "
          f"{report['load_after']} after")


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def _range_ms(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f}–{max(values) * 1000:.0f} ms"


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
