"""What backup.sh saw in a work tree, read from its ``key=value`` lines: the repository's state,
the snapshot's tree, the backup branches that exist, what the backup would publish and what
git cannot keep; for a plan of a whole repository, the same for each linked worktree."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackupRef:
    """An existing backup branch of this label (local or remote-tracking)."""

    ref: str
    commit: str
    tree: str
    index_tree: str | None
    flags_tree: str | None = None  # the index's flags (third parent), if it recorded any

    @property
    def branch(self) -> str:
        """``backup/majin-2025-11-26`` whether the ref is local or remote-tracking."""
        return "backup/" + self.ref.split("/backup/", 1)[1]


@dataclass
class Snapshot:
    """What the backup script saw: the repo, its state and the tree of its working files."""

    path: str
    worktree: str | None = None  # a linked worktree's name (.git/worktrees/NAME), else None
    locked: str | None = None  # a linked worktree's lock reason ("" when it gives none)
    missing: str | None = None  # a linked worktree whose directory is gone: where it was
    top: str | None = None
    remote: str | None = None
    head: str | None = None
    branch: str | None = None
    detached: bool = False
    tree: str | None = None
    head_tree: str | None = None
    index_tree: str | None = None
    flags_tree: str | None = None  # skip-worktree, assume-unchanged, intent-to-add entries
    added: int = 0
    modified: int = 0
    deleted: int = 0
    new_gitlinks: int = 0
    refs: list[BackupRef] = field(default_factory=list)
    unkept: list[str] = field(default_factory=list)  # "fifo PATH", "empty-dir PATH", "mode 0600 PATH"
    publish: list[tuple[int, str]] = field(default_factory=list)  # (size, path) the backup adds
    lfs: int = 0  # of those, files git-lfs tracks: saved as plain blobs
    modes: list[str] = field(default_factory=list)  # "0600 PATH": kept in the commit message
    journal: list[str] = field(default_factory=list)  # the host's clean journal (see reconcile)
    clean_way: list[str] = field(default_factory=list)  # what a clean would write HEAD's over
    index_lock: str | None = None  # index.lock exists: a clean would refuse
    refuse: str | None = None
    norepo: str | None = None


def parse_snapshots(path: str, text: str) -> tuple[Snapshot, list[Snapshot]]:
    """A plan of a repository (``WORKTREE`` ``*``): the tree at ``path``, then each linked
    worktree's, which share its remote and its backup branches."""
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.startswith("worktree="):
            sections.append([])
        sections[-1].append(line)
    main = parse_snapshot(path, "\n".join(sections[0]))
    linked = []
    for lines in sections[1:]:
        snap = parse_snapshot(path, "\n".join(lines))
        snap.path = snap.top or snap.missing or path
        snap.remote, snap.refs = main.remote, main.refs
        linked.append(snap)
    return main, linked


def parse_snapshot(path: str, text: str) -> Snapshot:
    snap = Snapshot(path=path)
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "ref":
            ref, commit, tree, itree, *ftree = value.split(" ")
            flags = ftree[0] if ftree and ftree[0] != "-" else None
            snap.refs.append(BackupRef(ref, commit, tree, None if itree == "-" else itree, flags))
        elif key == "unkept":
            snap.unkept.append(value)
        elif key == "publish":
            size, _, name = value.partition(" ")
            snap.publish.append((int(size) if size.isdigit() else -1, name))
        elif key == "journal":
            snap.journal.append(value)
        elif key == "clean_way":
            snap.clean_way.append(value)
        elif key in ("top", "remote", "head", "branch", "tree", "head_tree", "index_tree",
                     "flags_tree", "refuse", "norepo", "worktree", "missing", "index_lock"):
            setattr(snap, key, value or None)
        elif key == "locked":
            snap.locked = value.strip()
        elif key == "error" and snap.refuse is None:
            snap.refuse = f"snapshot failed: {value}"
        elif key == "detached":
            snap.detached = value == "1"
        elif key == "mode":
            snap.modes.append(value)
        elif key == "lfs":
            snap.lfs = int(value) if value.isdigit() else 0
        elif key in ("count_A", "count_M", "count_D", "count_T"):
            n = int(value or 0)
            if key == "count_A":
                snap.added = n
            elif key == "count_D":
                snap.deleted = n
            else:
                snap.modified += n
        elif key == "gitlinks":
            snap.new_gitlinks += int(value or 0)
        elif key == "head_gitlinks":
            snap.new_gitlinks -= int(value or 0)
    return snap
