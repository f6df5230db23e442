"""macOS's ps, sysctl, vm_stat, lsof, stat, uptime and uname for the lab's Mac stand-in.

Each computes its answer from the real state of the stand-in host — its real processes (pids,
parents, states, start times, argv, cwd), its load and CPU files, its memory — read from a proc
mounted where only these tools look (hosts.STANDIN_PROC; the login has no /proc), and prints it in
the format the macOS sources print (sources and line numbers in /tmp/research/platforms.md and
docs/platforms.md): adv_cmds ps/print.c, system_cmds sysctl.c and vm_stat.c, shell_cmds w.c,
lsof 4.91. No answer is canned. What cannot be faithful is listed in docs/testing.md.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

PROC = "/mnt/standin/proc"
CPUS = "/mnt/standin/cpu_online"
USER_HZ = 100


# -- the host's real state ------------------------------------------------------------------

def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def _uptime() -> float:
    return float(_read(f"{PROC}/uptime").split()[0])


def _boot() -> float:
    return time.time() - _uptime()


@dataclass
class Proc:
    pid: int
    ppid: int
    state: str
    pgrp: int
    session: int
    tty_nr: int
    tpgid: int
    nice: int
    start: float        # epoch seconds
    argv: list[str]
    comm: str           # the kernel's p_comm

    @classmethod
    def read(cls, pid: int, boot: float) -> Proc | None:
        try:
            stat = _read(f"{PROC}/{pid}/stat")
            with open(f"{PROC}/{pid}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat[stat.rindex(")") + 2:].split()
        argv = [a.decode(errors="replace") for a in raw.split(b"\0")]
        while argv and argv[-1] == "":
            argv.pop()
        return cls(pid, int(f[1]), f[0], int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[16]),
                   boot + int(f[19]) / USER_HZ, argv, comm)

    def cwd(self) -> str | None:
        try:
            return os.readlink(f"{PROC}/{self.pid}/cwd")
        except OSError:
            return None

    def exec_name(self) -> str:
        """The kernel's p_comm on Darwin: the name of the file exec'd (symlinks followed), at most
        MAXCOMLEN (16) bytes, set by exec and changed by nothing else (claude-code#87199: `ps -o
        ucomm` shows the installer's file name, 2.1.233). Linux's comm follows prctl instead."""
        try:
            return os.path.basename(os.readlink(f"{PROC}/{self.pid}/exe"))[:16]
        except OSError:
            return self.comm


def _all(boot: float) -> list[Proc]:
    procs = []
    for entry in os.listdir(PROC):
        if entry.isdigit():
            proc = Proc.read(int(entry), boot)
            if proc is not None:
                procs.append(proc)
    return sorted(procs, key=lambda p: p.pid)


# -- ps (adv_cmds ps/ps.c, keyword.c, print.c) -------------------------------------------------

def _etime(seconds: float) -> str:
    """print.c get_etime: days zero-padded below 100 days; strict comparisons."""
    e = int(seconds)
    days, rest = divmod(e, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    if e > 100 * 86400:
        return f"{days}-{hours:02d}:{mins:02d}:{secs:02d}"
    if e > 86400:
        return f"{days:02d}-{hours:02d}:{mins:02d}:{secs:02d}"
    if e > 3600:
        return f"{hours + days * 24:02d}:{mins:02d}:{secs:02d}"
    return f"{e // 60:02d}:{secs:02d}"


def _state(p: Proc) -> str:
    """First letter from mach's " RUSITH?" table (or T/Z), then < N s + (print.c state())."""
    first = {"R": "R", "S": "S", "D": "U", "T": "T", "t": "T", "Z": "Z", "I": "I"}.get(p.state, "?")
    out = first
    if p.nice < 0:
        out += "<"
    elif p.nice > 0:
        out += "N"
    if p.session == p.pid:
        out += "s"
    if p.tty_nr and p.tpgid == p.pgrp:
        out += "+"
    return out


def _tty(p: Proc) -> str:
    if not p.tty_nr:
        return "??"
    major, minor = (p.tty_nr >> 8) & 0xFFF, (p.tty_nr & 0xFF) | ((p.tty_nr >> 12) & 0xFFF00)
    return f"ttys{minor:03d}" if 136 <= major <= 143 else "console"


def _comm(p: Proc) -> str:
    """argv[0] as exec'd (KERN_PROCARGS2), or ``(p_comm)`` when there is none."""
    if p.state == "Z":
        return "<defunct>"
    return p.argv[0] if p.argv else f"({p.comm})"


def _args(p: Proc) -> str:
    if p.state == "Z":
        return "<defunct>"
    return " ".join(p.argv) if p.argv else f"({p.comm})"


# keyword: (header, justify, value)
KEYWORDS = {
    "pid": ("PID", "r", lambda p: str(p.pid)),
    "ppid": ("PPID", "r", lambda p: str(p.ppid)),
    "stat": ("STAT", "l", _state),
    "state": ("STAT", "l", _state),
    "etime": ("ELAPSED", "r", lambda p: _etime(time.time() - p.start)),
    "lstart": ("STARTED", "l", lambda p: time.strftime("%a %b %e %H:%M:%S %Y",
                                                       time.localtime(p.start))),
    "tty": ("TTY", "l", _tty),
    "comm": ("COMM", "l", _comm),
    "ucomm": ("UCOMM", "l", lambda p: p.exec_name()),
    "args": ("ARGS", "l", _args),
    "command": ("COMMAND", "l", _args),
}
MIN_WIDTH = {"pid": 5, "ppid": 5, "stat": 4, "state": 4, "lstart": 28, "tty": 8}
TRUNCATE = {"comm": 16, "ucomm": 16, "args": 64, "command": 64}
PS_USAGE = ("usage: ps [-AaCcEefhjlMmrSTvwXx] [-O fmt | -o fmt] [-G gid[,gid...]]\n"
            "          [-g grp[,grp...]] [-u [uid,uid...]]\n"
            "          [-p pid[,pid...]] [-t tty[,tty...]] [-U user[,user...]]\n"
            "       ps [-L]\n")


def ps(args: list[str]) -> int:
    fmt: list[tuple[str, str | None]] = []
    pids: list[int] = []
    every = False
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "-":
            sys.stderr.write(PS_USAGE)
            return 1
        j = 1
        while j < len(arg):
            ch = arg[j]
            if ch in "op":
                value = arg[j + 1:] or (args[i + 1] if i + 1 < len(args) else None)
                if value is None:
                    sys.stderr.write(f"ps: option requires an argument -- {ch}\n{PS_USAGE}")
                    return 1
                if not arg[j + 1:]:
                    i += 1
                if ch == "o":
                    for item in value.split(","):
                        name, eq, header = item.partition("=")
                        if name not in KEYWORDS:
                            sys.stderr.write(f"ps: {name}: keyword not found\n")
                            return 1
                        fmt.append((name, header if eq else None))
                else:
                    pids += [int(x) for x in value.replace(" ", ",").split(",") if x]
                break
            if ch in "Aaxe":
                every = every or ch in "Ae" or "x" in arg
            elif ch not in "wc":
                sys.stderr.write(f"ps: illegal option -- {ch}\n{PS_USAGE}")
                return 1
            j += 1
        i += 1
    fmt = fmt or [("pid", None), ("tty", None), ("etime", None), ("command", None)]
    boot = _boot()
    procs = _all(boot)
    if pids:
        procs = [p for p in procs if p.pid in pids]
    elif not every:
        procs = [p for p in procs if p.tty_nr]
    rows = [[KEYWORDS[name][2](p) for name, _ in fmt] for p in procs]
    headers = [KEYWORDS[name][0] if h is None else h for name, h in fmt]
    widths = []
    for k, (name, _) in enumerate(fmt):
        longest = max([len(r[k]) for r in rows] + [0])
        if name in TRUNCATE and k < len(fmt) - 1:
            longest = min(longest, TRUNCATE[name])
        widths.append(max(longest, MIN_WIDTH.get(name, 0), len(headers[k])))
    lines = []
    if any(headers):
        rows = [headers, *rows]
    for row in rows:
        cells = []
        for k, (name, _) in enumerate(fmt):
            last = k == len(fmt) - 1
            text = row[k]
            if KEYWORDS[name][1] == "r":
                cells.append(text.rjust(widths[k]))
            elif last:
                cells.append(text)
            else:
                cells.append(text[:widths[k]].ljust(widths[k]))
        lines.append(" ".join(cells))
    sys.stdout.write("".join(line + "\n" for line in lines))
    # ps exits 1 when a -p pid was not found
    return 1 if pids and not procs else 0


# -- sysctl (system_cmds sysctl/sysctl.c) ---------------------------------------------------------

def _cpus() -> int:
    count = 0
    for part in _read(CPUS).strip().split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return count


def _meminfo() -> dict[str, int]:
    info = {}
    for line in _read(f"{PROC}/meminfo").splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0])
    return info


def _sysctl_value(name: str) -> str | None:
    if name == "kern.boottime":
        boot = _boot()
        sec, usec = int(boot), int((boot - int(boot)) * 1e6)
        return (f"{{ sec = {sec}, usec = {usec} }} "
                + time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(sec)))
    if name == "vm.loadavg":
        one, five, fifteen = _read(f"{PROC}/loadavg").split()[:3]
        return f"{{ {float(one):.2f} {float(five):.2f} {float(fifteen):.2f} }}"
    if name in ("hw.ncpu", "hw.logicalcpu", "hw.activecpu"):
        return str(_cpus())
    if name == "hw.memsize":
        return str(_meminfo()["MemTotal"] * 1024)
    if name == "hw.pagesize":
        return str(os.sysconf("SC_PAGE_SIZE"))
    if name == "kern.ostype":
        return "Darwin"
    if name == "kern.hostname":
        return os.uname().nodename
    return None


def sysctl(args: list[str]) -> int:
    bare = "-n" in args
    rc = 0
    for name in (a for a in args if not a.startswith("-")):
        value = _sysctl_value(name)
        if value is None:
            sys.stderr.write(f"sysctl: unknown oid '{name}'\n")
            rc = 1
            continue
        sys.stdout.write(value + "\n" if bare else f"{name}: {value}\n")
    return rc


# -- vm_stat (system_cmds vm_stat/vm_stat.c) ------------------------------------------------------

def vm_stat(args: list[str]) -> int:
    page = os.sysconf("SC_PAGE_SIZE")
    m = {k: v * 1024 // page for k, v in _meminfo().items()}
    vm = {}
    for line in _read(f"{PROC}/vmstat").splitlines():
        key, value = line.split()
        vm[key] = int(value)
    wired = m.get("Slab", 0) + m.get("KernelStack", 0) + m.get("PageTables", 0)
    rows = [
        ("Pages free:", m["MemFree"]), ("Pages active:", m["Active"]),
        ("Pages inactive:", m["Inactive"]), ("Pages speculative:", 0),
        ("Pages throttled:", 0), ("Pages wired down:", wired), ("Pages purgeable:", 0),
        ('"Translation faults":', vm.get("pgfault", 0)), ("Pages copy-on-write:", 0),
        ("Pages zero filled:", 0), ("Pages reactivated:", vm.get("pgactivate", 0)),
        ("Pages purged:", 0),
        ("File-backed pages:", m.get("Active(file)", 0) + m.get("Inactive(file)", 0)),
        ("Anonymous pages:", m.get("AnonPages", 0)), ("Pages stored in compressor:", 0),
        ("Pages occupied by compressor:", 0), ("Decompressions:", 0), ("Compressions:", 0),
        ("Pageins:", vm.get("pgpgin", 0)), ("Pageouts:", vm.get("pgpgout", 0)),
        ("Swapins:", vm.get("pswpin", 0)), ("Swapouts:", vm.get("pswpout", 0)),
    ]
    out = f"Mach Virtual Memory Statistics: (page size of {page} bytes)\n"
    out += "".join(f"{label:<30} {value:16d}.\n" for label, value in rows)
    sys.stdout.write(out)
    return 0


# -- lsof 4.91 (-F: p and f always selected; lsof-org/lsof lib/dialects/darwin/dproc.c) ---------

def _text_files(pid: int) -> list[str]:
    """What lsof lists as a process's ``txt`` files on Darwin (dproc.c process_text): the files
    behind its memory regions, walked in address order (PROC_PIDREGIONPATHINFO from address 0),
    each vnode once (enter_vn_text) — so the program's own text comes first. Read from the
    stand-in's maps (the same regions, in the same order)."""
    names, seen = [], set()
    try:
        maps = _read(f"{PROC}/{pid}/maps")
    except OSError:
        return []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or not fields[5].startswith("/"):
            continue  # anonymous memory, [stack], [vdso]: no vnode, no path
        vnode = (fields[3], fields[4])
        if vnode not in seen:
            seen.add(vnode)
            names.append(fields[5].removesuffix(" (deleted)"))
    return names


def lsof(args: list[str]) -> int:
    pids: list[int] = []
    descriptors: list[str] = []
    fields = ""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-p", "-d"):
            value = args[i + 1]
            i += 1
            if arg == "-p":
                pids += [int(x) for x in value.split(",") if x]
            else:
                descriptors += value.split(",")
        elif arg.startswith("-F"):
            fields = arg[2:]
        elif arg != "-a":
            sys.stderr.write(f"lsof: the lab's stand-in does not do {arg}\n")
            return 1
        i += 1
    if not descriptors or set(descriptors) - {"cwd", "txt"} or "n" not in fields or not pids:
        sys.stderr.write("lsof: the lab's stand-in does only -a -d cwd,txt -Fn -p PIDS\n")
        return 1
    boot = _boot()
    missing = False
    for pid in pids:
        proc = Proc.read(pid, boot)
        if proc is None:
            missing = True
            continue
        # gather_proc_info: the cwd, then the text files, then the descriptors.
        found = []
        cwd = proc.cwd()
        if "cwd" in descriptors and cwd is not None:
            found.append(("cwd", cwd))
        if "txt" in descriptors:
            found += [("txt", name) for name in _text_files(pid)]
        if not found:
            missing = True
            continue
        sys.stdout.write(f"p{pid}\n" + "".join(f"f{fd}\nn{name}\n" for fd, name in found))
    return 1 if missing else 0


# -- stat (BSD stat -f) ---------------------------------------------------------------------------

STAT_USAGE = "usage: stat [-FLnq] [-f format | -l | -r | -s | -x] [-t timefmt] [file ...]\n"


def stat(args: list[str]) -> int:
    if not args or args[0] != "-f" or len(args) < 3:
        bad = args[0][1:2] if args and args[0].startswith("-") else ""
        sys.stderr.write((f"stat: illegal option -- {bad}\n" if bad else "") + STAT_USAGE)
        return 1
    fmt, rc = args[1], 0
    for name in args[2:]:
        try:
            st = os.stat(name)
        except OSError as exc:
            sys.stderr.write(f"stat: {name}: stat: {exc.strerror}\n")
            rc = 1
            continue
        out = (fmt.replace("%m", str(int(st.st_mtime))).replace("%N", name)
               .replace("%z", str(st.st_size)))
        sys.stdout.write(out + "\n")
    return rc


# -- uptime (shell_cmds w/w.c pr_header; 24-hour, no commas in the load) --------------------------

def uptime(args: list[str]) -> int:
    now = time.localtime()
    up = int(_uptime())
    out = time.strftime("%k:%M", now) + "  up"
    if up > 60:
        up += 30
    days, up = divmod(up, 86400)
    hrs, up = divmod(up, 3600)
    mins, secs = divmod(up, 60)
    if days > 0:
        out += f" {days} day{'s' if days > 1 else ''},"
    if hrs > 0 and mins > 0:
        out += f" {hrs:2d}:{mins:02d},"
    elif hrs > 0:
        out += f" {hrs} hr{'s' if hrs > 1 else ''},"
    elif mins > 0:
        out += f" {mins} min{'s' if mins > 1 else ''},"
    elif days == 0:
        out += f" {secs} sec{'s' if secs > 1 else ''},"
    load = [float(x) for x in _read(f"{PROC}/loadavg").split()[:3]]
    out += " 0 users, load averages: " + " ".join(f"{x:.2f}" for x in load)
    sys.stdout.write(out + "\n")
    return 0


def uname(args: list[str]) -> int:
    u = os.uname()
    flags = "".join(a[1:] for a in args if a.startswith("-")) or "s"
    if "a" in flags:
        flags = "snrvm"
    parts = {"s": "Darwin", "n": u.nodename, "r": u.release, "v": u.version, "m": u.machine}
    sys.stdout.write(" ".join(parts[f] for f in flags if f in parts) + "\n")
    return 0


TOOLS = {"ps": ps, "sysctl": sysctl, "vm_stat": vm_stat, "lsof": lsof, "stat": stat,
         "uptime": uptime, "uname": uname}


def main(tool: str, args: list[str]) -> int:
    return TOOLS[tool](args)
