"""The comparison clients, each run as its own process: ``python -m bench.clients KIND TARGETS FORKS``.

Every client sends the same probe to every host of a targets file (bench/lab_fleet.py), waits for
all answers, and prints one JSON line: how many hosts answered with a complete probe document
(``@@end``) and the first error of any that did not. A run only counts if every host reported.

- ``paramiko``: the floor of miyabi-ctl's own stack — a thread pool of bare paramiko transports
  (connect, verify the host key, publickey auth, exec, probe on stdin). No inventory, no parsing.
- ``pssh``: parallel-ssh's ``ParallelSSHClient`` (libssh2 via ssh2-python, gevent), probe inline.
- ``openssh``: one ``ssh`` process per host, all started at once, probe on stdin.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

END = "@@end"


def run_paramiko(targets: dict[str, Any], forks: int) -> dict[str, str]:
    """Bare threaded paramiko: the least our stack can do per host."""
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import paramiko

    key = paramiko.PKey.from_path(targets["key"])
    known = paramiko.HostKeys(targets["known_hosts"])
    script = targets["script"].encode()

    def probe(host: dict[str, Any]) -> str:
        sock = socket.create_connection((host["address"], host["port"]), timeout=10)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=10)
            offered = transport.get_remote_server_key()
            if (known.lookup(host["address"]) or {}).get(offered.get_name()) != offered:
                return "host key mismatch"
            transport.auth_publickey(host["user"], key)
            channel = transport.open_session(timeout=10)
            channel.exec_command(targets["stdin_command"])
            channel.sendall(script)
            channel.shutdown_write()
            out = []
            while chunk := channel.recv(65536):
                out.append(chunk)
            channel.recv_exit_status()
            return b"".join(out).decode(errors="replace")
        finally:
            transport.close()

    with ThreadPoolExecutor(max_workers=min(forks, len(targets["hosts"]))) as pool:
        futures = {h["name"]: pool.submit(probe, h) for h in targets["hosts"]}
        return {name: _result(f) for name, f in futures.items()}


def run_pssh(targets: dict[str, Any], forks: int) -> dict[str, str]:
    """parallel-ssh's native client; it does not check host keys (one step less than the rest)."""
    from pssh.clients import ParallelSSHClient

    addresses = [h["address"] for h in targets["hosts"]]
    client = ParallelSSHClient(addresses, user=targets["hosts"][0]["user"], pkey=targets["key"],
                               pool_size=forks, num_retries=1, timeout=20, allow_agent=False)
    outputs = client.run_command(targets["inline_command"], stop_on_errors=False)
    client.join(outputs)
    by_address = {}
    for out in outputs:
        if out.exception is not None:
            by_address[out.host] = f"error: {out.exception!r}"
        else:
            by_address[out.host] = "\n".join(out.stdout)
    return {h["name"]: by_address.get(h["address"], "no output") for h in targets["hosts"]}


def run_openssh(targets: dict[str, Any], forks: int) -> dict[str, str]:
    """N ``ssh`` processes at once (forks is ignored: OpenSSH fan-out has no cap)."""
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    script = tmp / "probe.sh"
    script.write_text(targets["script"])
    procs = []
    for host in targets["hosts"]:
        out = (tmp / f"{host['name']}.out").open("wb")
        argv = ["ssh", "-F", "/dev/null", "-i", targets["key"], "-o", "IdentitiesOnly=yes",
                "-o", f"UserKnownHostsFile={targets['known_hosts']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                "-o", "ControlMaster=no", "-o", "ConnectTimeout=10",
                f"{host['user']}@{host['address']}", targets["stdin_command"]]
        with script.open("rb") as stdin:
            procs.append((host, out, subprocess.Popen(argv, stdin=stdin, stdout=out,
                                                      stderr=subprocess.PIPE)))
    results = {}
    for host, out, proc in procs:
        _, err = proc.communicate()
        out.close()
        text = (tmp / f"{host['name']}.out").read_text(errors="replace")
        results[host["name"]] = text if END in text else f"exit {proc.returncode}: {err[-200:]!r}"
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()
    return results


def _result(future: Any) -> str:
    try:
        return future.result()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"


CLIENTS = {"paramiko": run_paramiko, "pssh": run_pssh, "openssh": run_openssh}


def main(argv: list[str]) -> int:
    kind, targets_path, forks = argv[0], argv[1], int(argv[2])
    targets = json.loads(Path(targets_path).read_text())
    started = time.monotonic()
    results = CLIENTS[kind](targets, forks)
    failed = {name: text[:200] for name, text in results.items() if END not in text}
    print(json.dumps({"reported": len(results) - len(failed), "failed": failed,
                      "inner_s": round(time.monotonic() - started, 3)}))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
