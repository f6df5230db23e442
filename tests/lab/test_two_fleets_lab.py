"""One controller, two fleets (two repositories on one machine), the second's claims unreadable
(issue 18, item 9): nothing of the first fleet's — its assignment of issue #5 in the run cache,
its audit entries — shows in the second's `issues`, `runs`, `dispatch` or `audit`; the first
fleet still falls back to its own cache. The host (prefix tf-) holds both repositories, each
cloned from a bare origin of this module's own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from tests.lab.fleets import ssh_entry, write_fleet
from tests.lab.harness import Lab
from tests.lab.test_dispatch_lab import cli, install_fake_agent


def states(proc: subprocess.CompletedProcess[str]) -> dict[int, str]:
    return {i["number"]: i["state"] for i in json.loads(proc.stdout)["issues"]}


def test_a_second_repository_never_sees_the_firsts_runs(lab: Lab, tmp_path: Path) -> None:
    host = lab.add_host("tf-one", load=(0.2, 0.2, 0.2), cpus=4)
    install_fake_agent(host)
    fleets = {}
    for name, repo in (("first", "miyabi-private"), ("second", "second-repo")):
        origin = lab.path / f"two-fleets-{name}.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(lab.origin), str(origin)], check=True)
        host.sh(f"[ -d /root/{repo} ] || git clone -q {lab.origin} /root/{repo}")
        host.sh(f"git -C /root/{repo} remote set-url origin {origin}"
                f" && git -C /root/{repo} fetch -q origin")
        backlog = tmp_path / f"{name}-backlog.yaml"
        backlog.write_text(yaml.safe_dump({"issues": [
            {"number": 5, "title": f"five of the {name}"}, {"number": 6, "title": "six"}]}))
        path = write_fleet(tmp_path / f"{name}.yaml", lab,
                           {"tf-one": ssh_entry(host, lab, max_sessions=4)},
                           extra=f"backlog:\n  file: {backlog}\n")
        doc = yaml.safe_load(path.read_text())
        doc["repo"]["path"] = f"~/{repo}"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        fleets[name] = (path, origin)
    first, second = (("--fleet", str(fleets[n][0])) for n in ("first", "second"))
    launched = cli("dispatch", "--apply", "--yes", "--max", "1", *first, state=tmp_path)
    assert launched.returncode == 0, launched.stdout + launched.stderr
    assert "#5 tf-one: ok" in launched.stdout

    gone = fleets["second"][1].with_suffix(".gone")
    fleets["second"][1].rename(gone)  # the second repository's claims cannot be read
    try:
        issues = cli("issues", "--json", *second, state=tmp_path)
        assert issues.returncode == 0, issues.stderr
        assert "warning: the claims could not be read" in issues.stderr
        assert states(issues) == {5: "ready", 6: "ready"}  # the first fleet's #5 is not its
        runs = cli("runs", "--json", *second, state=tmp_path)
        assert runs.returncode == 1 and json.loads(runs.stdout)["runs"] == [], runs.stdout
        plan = cli("dispatch", "--json", *second, state=tmp_path)
        assert [a["issue"] for a in json.loads(plan.stdout)["assignments"]] == [5, 6]
        audit = json.loads(cli("audit", "--json", *second, state=tmp_path).stdout)
        assert audit["entries"] == []
    finally:
        gone.rename(fleets["second"][1])
    # The first fleet, its claims unreadable too, still shows its own assignment from the cache.
    fleets["first"][1].rename(fleets["first"][1].with_suffix(".gone"))
    try:
        assert states(cli("issues", "--json", *first, state=tmp_path)) == {
            5: "assigned", 6: "ready"}
    finally:
        fleets["first"][1].with_suffix(".gone").rename(fleets["first"][1])
    entries = json.loads(cli("audit", "--json", *first, state=tmp_path).stdout)["entries"]
    assert [e["action"] for e in entries] == ["dispatch"]
    assert entries[0]["scope"] == f"fleet:{fleets['first'][0].resolve()}"
    host.sh("tmux kill-server", check=False)

