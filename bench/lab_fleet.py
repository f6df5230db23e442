"""The bench's fleet: N lab hosts (tests/lab.py) and the files every tool needs to reach them.

One lab serves every fleet size: the hosts are started once for the largest N, and a fleet of n
hosts is the first n of them. Each host has a clone of the lab's origin and a few fake agent
sessions, so every tool's probe does the same real work (ps, readlink, git status) everywhere.

For each size the lab writes: a fleet.yaml for miyabi-ctl, an Ansible inventory, and a
``targets-N.json`` that the bench's own clients (paramiko, parallel-ssh, OpenSSH) read. All use
the same client key, the same known_hosts and the same probe command.
"""

from __future__ import annotations

import json
import shlex
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType, TracebackType

import yaml

from miyabi_ctl.inventory import load_inventory
from miyabi_ctl.probe.look import PROBE_SCRIPT, probe_args
from miyabi_ctl.remote.runner import COMMAND, guarded, script_input
from tests.lab.harness import Lab, LabHost

SESSION_KINDS = ("claude", "claude-node", "codex-node")
GIT_TIMEOUT_S = 12.0  # what miyabi-ctl passes with command_timeout 20 (0.6 × 20)


class BenchLab:
    """A lab of ``size`` hosts with sessions; a context manager that always tears it down.

    SIGTERM and SIGHUP are turned into KeyboardInterrupt while it is open, so `kill` of the
    bench, like Ctrl-C, still runs ``Lab.close()`` and no sshd is left behind.
    """

    def __init__(self, size: int, *, sessions_per_host: int = 2, log=print) -> None:
        self.size = size
        self.sessions_per_host = sessions_per_host
        self.log = log
        self.lab: Lab | None = None
        self.hosts: list[LabHost] = []
        self._old_handlers: dict[int, object] = {}

    # -- lifetime -------------------------------------------------------------------------------

    def __enter__(self) -> BenchLab:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, _interrupt)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.lab is not None:
            self.log(f"stopping {len(self.hosts)} lab hosts")
            self.lab.close()
            self.lab = None
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _start(self) -> None:
        self.lab = Lab()
        names = [f"bn-{i:03d}" for i in range(self.size)]
        self.hosts = self.lab.add_hosts(names)
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(self._add_sessions, self.hosts))
        self.probe_args = self._probe_args()

    def _add_sessions(self, host: LabHost) -> None:
        for i in range(self.sessions_per_host):
            cwd = "/root/miyabi-private" if i % 2 == 0 else "/root"
            host.spawn_agent(SESSION_KINDS[i % len(SESSION_KINDS)], cwd=cwd)

    # -- files for each fleet size ----------------------------------------------------------------

    @property
    def dir(self) -> Path:
        assert self.lab is not None
        return self.lab.path

    def fleet_yaml(self, n: int) -> Path:
        """miyabi-ctl's fleet.yaml for the first n hosts (tests/conftest.py's shape; defaults for
        max_parallel, so the bench measures what an operator gets)."""
        assert self.lab is not None
        path = self.dir / f"fleet-{n}.yaml"
        doc = {
            "repo": {"path": "~/miyabi-private", "main": "main", "remote": "origin"},
            "ssh": {"config": None, "known_hosts": str(self.lab.known_hosts),
                    "strict_host_keys": "yes", "connect_timeout": 10, "command_timeout": 20},
            "hosts": {h.name: {"ssh": f"root@{h.address}",
                               "identity_file": str(self.lab.client_key)}
                      for h in self.hosts[:n]},
        }
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def _probe_args(self) -> list[str]:
        """The probe's arguments, exactly as miyabi-ctl computes them for this fleet."""
        inventory = load_inventory(self.fleet_yaml(1))
        return probe_args(inventory.hosts[0], inventory, GIT_TIMEOUT_S)

    def stdin_command(self) -> str:
        """``sh -s``: the probe and its arguments read from stdin (miyabi-ctl, paramiko, OpenSSH)."""
        return COMMAND

    def inline_command(self) -> str:
        """``sh -c SCRIPT sh ARGS``: the same probe for tools that cannot send stdin (Ansible raw,
        parallel-ssh)."""
        return (f"sh -c {shlex.quote(guarded(PROBE_SCRIPT.text()))} sh "
                + " ".join(shlex.quote(a) for a in self.probe_args))

    def targets(self, n: int) -> Path:
        """What the bench's own clients read: addresses, key, known_hosts, the probe."""
        assert self.lab is not None
        path = self.dir / f"targets-{n}.json"
        path.write_text(json.dumps({
            "hosts": [{"name": h.name, "address": h.address, "port": h.port, "user": "root"}
                      for h in self.hosts[:n]],
            "key": str(self.lab.client_key),
            "known_hosts": str(self.lab.known_hosts),
            "stdin_command": self.stdin_command(),
            "inline_command": self.inline_command(),
            "script": script_input(PROBE_SCRIPT, *self.probe_args),
        }))
        return path

    def ansible_files(self, n: int) -> tuple[Path, Path]:
        """(ansible.cfg, inventory) for the first n hosts.

        Same key and known_hosts as everyone, host keys checked, and no ControlMaster/
        ControlPersist: every tool starts each run cold, so none reuses connections from the
        previous run (Ansible's default would keep sockets for 60 s between runs).
        """
        assert self.lab is not None
        inventory = self.dir / f"ansible-hosts-{n}.ini"
        inventory.write_text("[lab]\n" + "".join(
            f"{h.name} ansible_host={h.address}\n" for h in self.hosts[:n]))
        cfg = self.dir / "ansible.cfg"
        ssh_args = " ".join([
            "-o ControlMaster=no", "-o ControlPersist=no", "-o IdentitiesOnly=yes",
            f"-o UserKnownHostsFile={self.lab.known_hosts}", "-o StrictHostKeyChecking=yes",
            "-o BatchMode=yes",
        ])
        cfg.write_text("\n".join([
            "[defaults]",
            "host_key_checking = True",
            "remote_user = root",
            f"private_key_file = {self.lab.client_key}",
            "timeout = 10",
            f"local_tmp = {self.dir / 'ansible-tmp'}",
            "retry_files_enabled = False",
            "deprecation_warnings = False",
            "[ssh_connection]",
            f"ssh_args = {ssh_args}",
            "pipelining = False",
            "",
        ]))
        return cfg, inventory


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
