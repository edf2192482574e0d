"""Is the spool one filesystem for all nodes, or each node's own? ([accounting] shared_spool)

The two delivery paths differ (docs/accounting.md): on a shared spool the node that
completes a job's set merges it and writes the record once; on node-local spools each
node delivers its own part and reads it back. Taking one for the other loses parts of
records, so the answer comes from what the spool really is, in this order:

1. `[accounting] shared_spool = true | false`: the admin's word wins;
2. a marker file MARKER in the spool directory or a directory above it on the same
   mount: the admin puts it on the shared filesystem once, and exactly the nodes
   that share the filesystem see it (a node-local disk never has it);
3. the filesystem type of the spool's mount (/proc/self/mountinfo): a network or
   cluster filesystem (NFS, Lustre, GPFS, BeeGFS, CephFS, ...) is shared, any
   other (ext4, xfs, tmpfs, ...) is a node's own.

The spool directory need not exist yet (`slurm-ai install` makes it): its nearest
existing ancestor is judged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MARKER = ".slurm-ai-shared-spool"
MOUNTINFO = Path("/proc/self/mountinfo")

# Filesystems whose contents the nodes of a cluster share (types as mountinfo names them).
SHARED_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "fuse.ceph",
        "fuse.cephfs", "glusterfs", "fuse.glusterfs", "panfs", "wekafs", "orangefs",
        "pvfs2", "ocfs2", "gfs2", "fuse.sshfs", "afs", "quobyte", "fuse.quobyte",
        "fuse.juicefs", "fuse.weka", "fuse.s3fs", "virtiofs", "9p",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SpoolMode:
    shared: bool
    why: str  # one line for `slurm-ai doctor` and the log

    @property
    def name(self) -> str:
        return "shared" if self.shared else "node-local"


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_of(path: Path, mountinfo: str) -> tuple[Path, str] | None:
    """(mount point, filesystem type) of the mount holding `path` (already resolved)."""
    best: tuple[Path, str] | None = None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = Path(_unescape(fields[4]))
        if (path == point or path.is_relative_to(point)) and (
            best is None or len(point.parts) >= len(best[0].parts)
        ):
            best = (point, tail[0])  # later lines (mounts on top) win a tie
    return best


def _resolved(path: Path) -> tuple[Path, Path]:
    """(the nearest existing ancestor with symlinks resolved, the whole path below it)."""
    path = Path(os.path.abspath(path))
    rest: list[str] = []
    while not path.exists() and path != path.parent:
        rest.insert(0, path.name)
        path = path.parent
    existing = path.resolve()
    return existing, existing.joinpath(*rest)


def decide(configured: object, spool_dir: Path, mountinfo: str | None = None) -> SpoolMode:
    """The spool's mode and why; `configured` is the raw [accounting] shared_spool value
    (True, False, or "auto"/absent)."""
    if isinstance(configured, bool):
        return SpoolMode(configured, f"[accounting] shared_spool = {str(configured).lower()}")
    if configured not in (None, "auto"):
        from slurm_ai.errors import ConfigError

        raise ConfigError('[accounting] shared_spool: expected true, false or "auto"')
    existing, path = _resolved(spool_dir)
    if mountinfo is None:
        try:
            mountinfo = MOUNTINFO.read_text()
        except OSError:
            mountinfo = ""
    mount = mount_of(path, mountinfo)
    top = mount[0] if mount is not None else Path(path.anchor)
    for directory in (existing, *existing.parents):
        if not directory.is_relative_to(top):  # the spool's mount is not there (yet)
            break
        if (directory / MARKER).is_file():
            return SpoolMode(True, f"marker {directory / MARKER} (every node sharing it sees it)")
        if directory == top:
            break
    if mount is None:
        return SpoolMode(False, f"mount of {path} not found in {MOUNTINFO}: taken as node-local")
    point, fstype = mount
    if fstype in SHARED_FS_TYPES:
        return SpoolMode(True, f"{path} is on {fstype} (mounted at {point}), a shared filesystem")
    return SpoolMode(
        False,
        f"{path} is on {fstype} (mounted at {point}), a node's own filesystem, and no "
        f"{MARKER} marker up to {point}",
    )
