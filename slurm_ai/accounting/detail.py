"""Per-job detail files: the node records a summarised record does not carry.

When a job's record with every node in full would not fit AdminComment, the
writer keeps all node records in `<detail_dir>/<cluster>/<jobid>.json.gz`
(gzip of JSON, root-only 0600 in 0700 directories, written atomically) and the
record points to it:

    "detail": {"file": "<absolute path>", "sha256": "<hex of the file>",
               "bytes": <file size>, "nodes": <node records in the file>}

A reader checks the digest before trusting the file, so a file replaced or
damaged after the record was written is reported, never read as the job's.
`prune` removes files older than `[accounting] detail_retention_days`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
import zlib
from pathlib import Path
from typing import Any

from slurm_ai import jsontext, spool
from slurm_ai.errors import SlurmAIError

DETAIL_VERSION = 1
# A 4,096-node job with 8 GPUs a node is about 1.5 MB compressed; refuse far past that.
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_JSON_BYTES = 2 * 1024 * 1024 * 1024
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


class DetailError(SlurmAIError):
    """A detail file that cannot be written, found, or trusted."""


def detail_path(detail_dir: Path, cluster: str, job_id: str) -> Path:
    cluster = cluster if _SAFE.match(cluster or "") else "_"
    if not _SAFE.match(job_id):
        raise DetailError(f"invalid job id {job_id[:40]!r}")
    return detail_dir / cluster / f"{job_id}.json.gz"


def write_detail(
    detail_dir: Path,
    cluster: str,
    job_id: str,
    nodes: dict[str, Any],
    nodes_json: str | None = None,
) -> dict[str, Any]:
    """Write every node record of the job; the record's `detail` pointer.

    `nodes_json`: json.dumps(nodes) when the caller has it already (the writer
    serialises a 4,096-node job once, not twice).
    """
    path = detail_path(detail_dir, cluster, job_id)
    if nodes_json is None:
        nodes_json = json.dumps(nodes, separators=(",", ":"), sort_keys=True)
    head = json.dumps({"cluster": cluster, "job": job_id, "v": DETAIL_VERSION})
    raw = (head[:-1] + ',"nodes":' + nodes_json + "}").encode()
    # Level 1: a 4,096-node job's 10 MB in ~0.1 s (level 6: 3x the time for 20% less);
    # mtime=0: the same nodes give the same bytes (and digest) on every write.
    data = gzip.compress(raw, compresslevel=1, mtime=0)
    try:
        spool.ensure_private_dir(detail_dir)
        spool.ensure_private_dir(path.parent)
        spool.atomic_write_bytes(path, data)
    except (OSError, SlurmAIError) as exc:
        raise DetailError(f"cannot write detail file {path}: {exc}") from exc
    return {
        "file": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "nodes": len(nodes),
    }


def read_detail(pointer: Any) -> dict[str, Any]:
    """The node records a record's `detail` pointer names; DetailError when not trustworthy."""
    if not isinstance(pointer, dict) or not isinstance(pointer.get("file"), str):
        raise DetailError("record has no detail file pointer")
    path = Path(pointer["file"])
    try:
        data = spool.read_bytes_nofollow(path, max_bytes=MAX_FILE_BYTES)
    except FileNotFoundError as exc:
        raise DetailError(f"detail file {path} is missing (retention, or another host?)") from exc
    except (OSError, SlurmAIError) as exc:
        raise DetailError(f"cannot read detail file {path}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != pointer.get("sha256"):
        raise DetailError(
            f"detail file {path} does not match the record (sha256 {digest[:12]}..., "
            f"record says {str(pointer.get('sha256'))[:12]}...)"
        )
    try:
        raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, MAX_JSON_BYTES)
        doc = jsontext.loads(raw)
    except (zlib.error, ValueError) as exc:
        raise DetailError(f"detail file {path} is corrupt: {exc}") from exc
    nodes = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(nodes, dict) or doc.get("v") != DETAIL_VERSION:
        raise DetailError(f"detail file {path} is not a detail file of a known version")
    if pointer.get("nodes") != len(nodes):
        raise DetailError(
            f"detail file {path} holds {len(nodes)} nodes, the record says {pointer.get('nodes')}"
        )
    return nodes


PRUNE_EVERY_S = 3600.0  # the sweeper runs after every job; the directory is scanned hourly


def prune(
    detail_dir: Path,
    retention_days: float,
    now: float | None = None,
    limit: int = 1000,
    every_s: float = PRUNE_EVERY_S,
) -> int:
    """Remove detail files older than the retention; how many were removed (at most
    limit). Scans at most once per `every_s` (a stamp file, detail_dir/.pruned)."""
    if retention_days <= 0:
        return 0
    now = time.time() if now is None else now
    stamp = detail_dir / ".pruned"
    try:
        if now - os.lstat(stamp).st_mtime < every_s:
            return 0
    except FileNotFoundError:
        pass
    except OSError:
        return 0
    try:
        fd = os.open(stamp, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        os.utime(stamp, (now, now))
    except OSError:
        return 0  # no detail directory yet, or not ours to write
    cutoff = now - retention_days * 86400.0
    removed = 0
    try:
        clusters = sorted(os.scandir(detail_dir), key=lambda e: e.name)
    except OSError:
        return 0
    for cdir in clusters:
        if not cdir.is_dir(follow_symlinks=False):
            continue
        try:
            files = list(os.scandir(cdir.path))
        except OSError:
            continue
        for entry in files:
            if removed >= limit:
                return removed
            if not entry.name.endswith(".json.gz") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    return removed
