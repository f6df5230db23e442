"""Per-refresh time of ``status --watch``, measured through the library.

``status --watch`` keeps one ``Fleet`` open and calls ``collect_status(fleet)`` once per refresh;
connections opened by the first call are reused by the next. This does exactly that and prints,
as JSON, the first (connecting) call's time and each following refresh's time.

    python -m bench.watch_refresh FLEET_YAML REFRESHES
"""

from __future__ import annotations

import json
import sys
import time

from miyabi_ctl.fleet import Fleet
from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.status import collect_status


def main(argv: list[str]) -> int:
    inventory = load_inventory(argv[0])
    refreshes = int(argv[1])
    times = []
    lost = 0
    with Fleet(inventory) as fleet:
        for _ in range(refreshes + 1):
            started = time.monotonic()
            result = collect_status(fleet)
            times.append(time.monotonic() - started)
            lost = max(lost, sum(h.error is not None for h in result.hosts))
    print(json.dumps({"hosts": len(inventory.hosts), "connect_s": times[0],
                      "refresh_s": times[1:], "lost": lost}))
    return 0 if not lost else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
