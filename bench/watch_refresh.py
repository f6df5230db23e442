"""Per-refresh time of ``status --watch``, measured through the library.

``status --watch`` keeps one ``Fleet`` open and calls ``collect_status(fleet)`` once per refresh;
connections opened by the first call are reused by the next. This does exactly that and prints,
as JSON, the first (connecting) call's time and each following refresh's wall time, the
controller's own CPU per refresh, and — given the lab hosts' init pids — the CPU the hosts spent
(sshd, shells, the probe), which on the lab shares the controller's cores.

    python -m bench.watch_refresh FLEET_YAML REFRESHES [HOST_INIT_PIDS,...]
"""

from __future__ import annotations

import json
import resource
import sys
import time

import psutil

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.status.collect import collect_status


def hosts_cpu(inits: list[psutil.Process]) -> float:
    """CPU seconds of every process in the hosts, including children they have reaped."""
    total = 0.0
    for init in inits:
        for proc in [init, *init.children(recursive=True)]:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    inventory = load_inventory(argv[0])
    refreshes = int(argv[1])
    inits = [psutil.Process(int(p)) for p in argv[2].split(",")] if len(argv) > 2 else []
    walls, controller, hosts = [], [], []
    lost = 0
    with Fleet(inventory) as fleet:
        for _ in range(refreshes + 1):
            host_cpu, cpu, started = hosts_cpu(inits), own_cpu(), time.monotonic()
            result = collect_status(fleet)
            walls.append(time.monotonic() - started)
            controller.append(own_cpu() - cpu)
            hosts.append(hosts_cpu(inits) - host_cpu)
            lost = max(lost, sum(h.error is not None for h in result.hosts))
    print(json.dumps({"hosts": len(inventory.hosts), "connect_s": walls[0],
                      "refresh_s": walls[1:], "controller_cpu_s": controller[1:],
                      "hosts_cpu_s": hosts[1:] if inits else None, "lost": lost}))
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
