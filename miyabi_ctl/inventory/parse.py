"""fleet.yaml parsed and validated node by node.

Validation walks YAML *nodes* rather than loaded Python objects so that every error can name the
file, the line, the host and the key — a bad inventory is an operator's typo, not a traceback.
"""


import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from miyabi_ctl.errors import InventoryError
from miyabi_ctl.inventory.model import (
    CLIENTS,
    DEFAULT_AGENTS,
    HOST_NAME_RE,
    STRICT_CHOICES,
    TRANSPORTS,
    AgentSpec,
    HostSpec,
    Inventory,
    RepoSpec,
    SSHSettings,
    Thresholds,
)
from miyabi_ctl.templates import TemplateError, render_template


class _Walker:
    """Reads typed values out of YAML nodes, raising InventoryError with file/line/host/key."""

    def __init__(self, path: Path):
        self.path = path
        self.constructor = SafeConstructor()

    def fail(self, node: Node | None, message: str, host: str | None = None,
             key: str | None = None) -> InventoryError:
        line = node.start_mark.line + 1 if node is not None else None
        return InventoryError(message, path=self.path, line=line, host=host, key=key)

    def value(self, node: Node) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except ConstructorError as exc:
            raise self.fail(node, f"cannot read value: {exc.problem}") from None

    def mapping(self, node: Node, what: str, allowed: set[str] | None,
                host: str | None = None, key: str | None = None) -> dict[str, tuple[Node, Node]]:
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping", host, key)
        out: dict[str, tuple[Node, Node]] = {}
        for knode, vnode in node.value:
            name = self.value(knode)
            if not isinstance(name, str):
                raise self.fail(knode, f"{what}: keys must be strings, got {name!r}", host, key)
            if name in out:
                dup = "duplicate host" if what == "hosts" else "duplicate key"
                raise self.fail(knode, f"{dup} {name!r} (first on line "
                                f"{out[name][0].start_mark.line + 1})",
                                host if what != "hosts" else name, None if what == "hosts" else name)
            if allowed is not None and name not in allowed:
                raise self.fail(knode, f"unknown key {name!r} in {what} "
                                f"(allowed: {', '.join(sorted(allowed))})", host, name)
            out[name] = (knode, vnode)
        return out

    def string(self, node: Node, host: str | None, key: str, *, empty_ok: bool = False) -> str:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(node, f"expected a string, got {_describe(value)}", host, key)
        text = str(value)
        if not text and not empty_ok:
            raise self.fail(node, "must not be empty", host, key)
        return text

    def optional_string(self, node: Node, host: str | None, key: str) -> str | None:
        return None if self.value(node) is None else self.string(node, host, key)

    def number(self, node: Node, host: str | None, key: str, *, integer: bool = False,
               positive: bool = True) -> float:
        value = self.value(node)
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds):
            want = "an integer" if integer else "a number"
            raise self.fail(node, f"expected {want}, got {_describe(value)}", host, key)
        if positive and value <= 0:
            raise self.fail(node, f"must be greater than 0, got {value}", host, key)
        if value < 0:
            raise self.fail(node, f"must not be negative, got {value}", host, key)
        return value

    def string_list(self, node: Node, host: str | None, key: str) -> tuple[str, ...]:
        if isinstance(node, ScalarNode) and self.value(node) is None:
            return ()
        if not isinstance(node, SequenceNode):
            raise self.fail(node, "expected a list of strings", host, key)
        return tuple(self.string(item, host, key) for item in node.value)

    def pair(self, node: Node, key: str) -> tuple[float, float]:
        if not isinstance(node, SequenceNode) or len(node.value) != 2:
            raise self.fail(node, "expected [warning, critical], two numbers", None, key)
        warn, crit = (self.number(n, None, key, positive=False) for n in node.value)
        if crit < warn:
            raise self.fail(node, f"critical ({crit}) is below warning ({warn})", None, key)
        return (warn, crit)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return f"{type(value).__name__} {value!r}"


TOP_KEYS = {"repo", "ssh", "thresholds", "agents", "hosts", "backlog", "dispatch", "schedule",
            "notify"}
REPO_KEYS = {"path", "main", "remote", "feature"}
SSH_KEYS = {"config", "known_hosts", "strict_host_keys", "connect_timeout", "command_timeout",
            "max_parallel", "client", "control_persist"}
THRESHOLD_KEYS = {"load_per_core", "uncommitted", "sessions_over_max"}
AGENT_KEYS = {"executables", "scripts", "launch", "follow_up", "like"}
HOST_KEYS = {"transport", "ssh", "role", "max_sessions", "tags", "repo_path", "identity_file",
             "proxy_jump", "client"}
BACKLOG_KEYS = {"file", "github", "api_url", "token_env"}
DISPATCH_KEYS = {"agent", "worktrees_dir", "test_command", "stale_after"}
URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S")
SCHEDULE_KEYS = {"hours_per_day", "default_estimate"}


def _yaml_error(exc: yaml.YAMLError, path: Path) -> InventoryError:
    """Point at where the broken construct opened (an unclosed ``[`` on line 3), not only where
    the parser gave up (often the end of the file), which is said after."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    opened = getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    if opened is not None and context and (mark is None or opened.line != mark.line):
        what = context.removeprefix("while parsing ").removeprefix("while scanning ")
        gave_up = f" (line {mark.line + 1})" if mark is not None else ""
        return InventoryError(f"invalid YAML: {what} opened here (column {opened.column + 1}) is "
                              f"not closed properly: {problem}{gave_up}",
                              path=path, line=opened.line + 1)
    line = mark.line + 1 if mark is not None else None
    return InventoryError(f"invalid YAML: {problem}", path=path, line=line)


def parse_inventory(text: str, path: Path) -> Inventory:
    """Parse fleet.yaml text; every problem becomes an InventoryError naming line, host and key."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, path) from None
    walk = _Walker(path)
    if root is None:
        raise InventoryError("the file is empty; it needs at least a 'hosts:' mapping", path=path)
    top = walk.mapping(root, "the top level", TOP_KEYS)
    if "hosts" not in top:
        raise walk.fail(root, "missing required key 'hosts'", key="hosts")

    repo = _parse_repo(walk, top["repo"][1]) if "repo" in top else RepoSpec()
    ssh = _parse_ssh(walk, top["ssh"][1]) if "ssh" in top else SSHSettings()
    thresholds = (_parse_thresholds(walk, top["thresholds"][1]) if "thresholds" in top
                  else Thresholds())
    agents = _parse_agents(walk, top["agents"][1]) if "agents" in top else dict(DEFAULT_AGENTS)
    profiles = {name: spec for name, spec in agents.items() if spec.like}
    agents = {name: spec for name, spec in agents.items() if not spec.like}
    backlog = _plain_section(walk, top, "backlog", BACKLOG_KEYS)
    dispatch = _plain_section(walk, top, "dispatch", DISPATCH_KEYS)
    if dispatch.get("agent") and dispatch["agent"] not in {**agents, **profiles}:
        raise walk.fail(top["dispatch"][1], f"unknown agent {dispatch['agent']!r} "
                        f"(known: {', '.join({**agents, **profiles})})", key="agent")
    schedule = _parse_schedule(walk, top["schedule"][1]) if "schedule" in top else {}
    hosts = _parse_hosts(walk, top["hosts"][1])
    notify = _parse_notify(walk, top["notify"][1]) if "notify" in top else ()
    return Inventory(source=path, hosts=hosts, repo=repo, ssh=ssh, thresholds=thresholds,
                     agents=agents, backlog=backlog, dispatch=dispatch, profiles=profiles,
                     schedule=schedule, notify=notify)


def _parse_repo(walk: _Walker, node: Node) -> RepoSpec:
    from miyabi_ctl.names import ref_name_problem

    items = walk.mapping(node, "repo", REPO_KEYS, key="repo")
    values = {k: walk.string(v, None, k) for k, (_, v) in items.items()}
    for key in ("main", "remote", "feature"):  # names git will see: refused here, with a line
        problem = ref_name_problem(values[key]) if key in values else None
        if problem:
            what = "remote" if key == "remote" else "branch"
            raise walk.fail(items[key][1], f"{values[key]!r} is not a usable {what} name: "
                            f"{problem}", None, key)
    return RepoSpec(**values)


def _parse_ssh(walk: _Walker, node: Node) -> SSHSettings:
    items = walk.mapping(node, "ssh", SSH_KEYS, key="ssh")
    values: dict[str, Any] = {}
    for key, (_, vnode) in items.items():
        if key == "config":
            values[key] = walk.optional_string(vnode, None, key)
        elif key == "known_hosts":
            values[key] = walk.string(vnode, None, key)
        elif key == "strict_host_keys":
            raw = walk.value(vnode)
            # YAML 1.1 reads a bare yes/no as a boolean; accept both spellings.
            choice = {True: "yes", False: "no"}.get(raw, raw) if isinstance(raw, bool) else raw
            if choice not in STRICT_CHOICES:
                raise walk.fail(vnode, f"expected one of {', '.join(STRICT_CHOICES)}, "
                                f"got {raw!r}", None, key)
            values[key] = choice
        elif key == "max_parallel":
            values[key] = int(walk.number(vnode, None, key, integer=True))
        elif key == "client":
            values[key] = _client(walk, vnode, None)
        elif key == "control_persist":
            values[key] = float(walk.number(vnode, None, key, positive=False))
        else:
            values[key] = float(walk.number(vnode, None, key))
    return SSHSettings(**values)


def _client(walk: _Walker, node: Node, host: str | None) -> str:
    client = walk.string(node, host, "client")
    if client not in CLIENTS:
        raise walk.fail(node, f"expected one of {', '.join(CLIENTS)}, got {client!r}", host, "client")
    return client


def _parse_thresholds(walk: _Walker, node: Node) -> Thresholds:
    items = walk.mapping(node, "thresholds", THRESHOLD_KEYS, key="thresholds")
    return Thresholds(**{k: walk.pair(v, k) for k, (_, v) in items.items()})


def _check_template(walk: _Walker, node: Node, agent: str, template: str | None,
                    key: str = "launch") -> None:
    """A launch (or follow-up) template that cannot be rendered safely is a fleet.yaml error,
    found when the file is read rather than at each launch."""
    try:
        if template:
            render_template(template)
    except TemplateError as exc:
        raise walk.fail(node, str(exc), None, f"agents.{agent}.{key}") from None


def _parse_agents(walk: _Walker, node: Node) -> dict[str, AgentSpec]:
    agents = dict(DEFAULT_AGENTS)
    for name, (_, vnode) in walk.mapping(node, "agents", None, key="agents").items():
        base = agents.get(name, AgentSpec(name, executables=(name,)))
        if isinstance(vnode, ScalarNode) and walk.value(vnode) is None:
            continue
        items = walk.mapping(vnode, f"agents.{name}", AGENT_KEYS, key=name)
        if "like" in items:
            agents[name] = _parse_profile(walk, name, items, agents)
            continue
        changes: dict[str, Any] = {}
        for key, (_, v) in items.items():
            if key in ("launch", "follow_up"):
                changes[key] = walk.string(v, None, f"agents.{name}.{key}")
                _check_template(walk, v, name, changes[key], key)
            else:
                changes[key] = walk.string_list(v, None, f"agents.{name}.{key}")
        fields = {"executables": base.executables, "scripts": base.scripts,
                  "launch": base.launch, "follow_up": base.follow_up, **changes}
        if not fields["executables"] and not fields["scripts"]:
            raise walk.fail(vnode, "an agent needs at least one executable or script pattern",
                            None, f"agents.{name}")
        agents[name] = AgentSpec(name, **fields)
    return agents


def _parse_profile(walk: _Walker, name: str, items: dict[str, tuple[Node, Node]],
                   agents: dict[str, AgentSpec]) -> AgentSpec:
    """``like: claude``: an agent with a launch template of its own (a CodeGenAgent) that runs
    claude's program — its sessions are claude's, so it recognises none itself."""
    key = f"agents.{name}.like"
    like = walk.string(items["like"][1], None, key)
    if like not in agents or agents[like].like:
        kinds = ", ".join(n for n, a in agents.items() if not a.like)
        raise walk.fail(items["like"][1], f"unknown agent {like!r} (known: {kinds})", None, key)
    for other in ("executables", "scripts"):
        if other in items:
            raise walk.fail(items[other][0], f"an agent with 'like' recognises no sessions of its "
                            f"own: {like}'s {other} are used", None, f"agents.{name}.{other}")
    launch = agents[like].launch
    if "launch" in items:
        launch = walk.string(items["launch"][1], None, f"agents.{name}.launch")
        _check_template(walk, items["launch"][1], name, launch)
    return AgentSpec(name, executables=(), launch=launch, like=like)


def _parse_schedule(walk: _Walker, node: Node) -> dict[str, Any]:
    from miyabi_ctl.dispatch.estimate import parse_estimate  # pure, no further imports

    items = walk.mapping(node, "schedule", SCHEDULE_KEYS, key="schedule")
    values: dict[str, Any] = {}
    if "hours_per_day" in items:
        vnode = items["hours_per_day"][1]
        values["hours_per_day"] = float(walk.number(vnode, None, "schedule.hours_per_day"))
        if values["hours_per_day"] > 24:
            raise walk.fail(vnode, "a day has at most 24 hours", None, "schedule.hours_per_day")
    if "default_estimate" in items:
        vnode = items["default_estimate"][1]
        values["default_estimate"] = walk.string(vnode, None, "schedule.default_estimate")
        try:
            parse_estimate(values["default_estimate"])
        except ValueError as exc:
            raise walk.fail(vnode, str(exc), None, "schedule.default_estimate") from None
    return values


def _plain_section(walk: _Walker, top: dict[str, tuple[Node, Node]], name: str,
                   allowed: set[str]) -> dict[str, Any]:
    if name not in top:
        return {}
    items = walk.mapping(top[name][1], name, allowed, key=name)
    return {k: walk.string(v, None, f"{name}.{k}") for k, (_, v) in items.items()}


def _parse_notify(walk: _Walker, node: Node) -> tuple[str, ...]:
    """Apprise URLs (``ntfy://topic``, ``tgram://token/chat``, ``json://host/path``). Only their
    form is checked here (Apprise itself is imported when a message is sent); an error never
    shows the value, which may hold a token."""
    urls = walk.string_list(node, None, "notify")
    items = node.value if isinstance(node, SequenceNode) else []
    for n, (url, item) in enumerate(zip(urls, items, strict=True), 1):
        if not URL_RE.match(url) or any(c.isspace() for c in url):
            raise walk.fail(item, f"entry {n} is not an Apprise URL (scheme://…, no spaces)",
                            None, "notify")
    return urls


def _parse_hosts(walk: _Walker, node: Node) -> tuple[HostSpec, ...]:
    entries = walk.mapping(node, "hosts", None, key="hosts")
    if not entries:
        raise walk.fail(node, "'hosts' is empty; name at least one host", key="hosts")
    hosts = []
    for name, (knode, vnode) in entries.items():
        if not HOST_NAME_RE.match(name):
            raise walk.fail(knode, "host names use letters, digits, '.', '_' and '-' only",
                            name, None)
        hosts.append(_parse_host(walk, name, knode, vnode))
    return tuple(hosts)


def _parse_host(walk: _Walker, name: str, knode: Node, vnode: Node) -> HostSpec:
    if isinstance(vnode, ScalarNode) and walk.value(vnode) is None:
        items: dict[str, tuple[Node, Node]] = {}
    else:
        items = walk.mapping(vnode, f"host {name!r}", HOST_KEYS, host=name)
    values: dict[str, Any] = {}
    for key, (_, v) in items.items():
        if key == "max_sessions":
            values[key] = int(walk.number(v, name, key, integer=True, positive=False))
        elif key == "tags":
            values[key] = walk.string_list(v, name, key)
        elif key == "transport":
            transport = walk.string(v, name, key)
            if transport not in TRANSPORTS:
                raise walk.fail(v, f"expected one of {', '.join(TRANSPORTS)}, got {transport!r}",
                                name, key)
            values[key] = transport
        elif key == "client":
            values[key] = _client(walk, v, name)
        else:
            values[key] = walk.string(v, name, key)
    values.setdefault("transport", "ssh")
    if values["transport"] == "ssh" and "ssh" not in values:
        values["ssh"] = name  # like OpenSSH: the host name is the alias to look up
    if values["transport"] == "local" and "ssh" in values:
        raise walk.fail(items["ssh"][0], "a local host takes no 'ssh' target", name, "ssh")
    if values["transport"] == "local" and "client" in values:
        raise walk.fail(items["client"][0], "a local host takes no SSH 'client'", name, "client")
    if "ssh" in values:
        from miyabi_ctl.connectors.target import parse_target  # local import: keeps parsing light

        try:
            parse_target(values["ssh"])
        except ValueError as exc:
            raise walk.fail(items["ssh"][1], str(exc), name, "ssh") from None
    return HostSpec(name=name, line=knode.start_mark.line + 1, **values)
