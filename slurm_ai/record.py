"""The per-job accounting record and its place in AdminComment.

A job record is a JSON object (format version `RECORD_VERSION`) holding the
job's metadata and one node record per node. In AdminComment it is one token:

    sai1:<hex(zlib(json))>

Why hex: `sacctmgr modify job ... set AdminComment=VALUE` lower-cases VALUE
(seen on Slurm 22.05.8: its argument parser calls strip_quotes(..., make_lower)
and turns quotes into backticks), so a case-sensitive encoding such as base64
would be destroyed on the way in. A lower-case prefix and hex digits pass
through unchanged, decode with a C routine (binascii), and have no spaces,
quotes, '|' or newlines for sacct --parsable2 to trip on. Content written by
other tools (Princeton jobstats writes `JS1:...`) is kept verbatim beside it,
separated by a single space; re-delivery replaces only our token.

Record shape (v2; docs/record.md has every field), optional unless marked:

    {
      "v": 2,                                    # required (1: older, still read)
      "job": {"id": "123", ...},                 # "id" required
      "nodes": {"n1": <node record>, ...},        # required: all nodes (full form) or
                                                  # the first failed ones (summarised)
      "units": {"tokens": 1.2e9, "epochs": 3},   # work units from `slurm-ai mark`
      "complete": true,                          # every expected node present
      "missing": ["n2"], "missing_count": 1,     # when not complete
      "absent": {"n2": {"why": ..., "prolog": {...}}},
      "summary": {...},                          # bounded: accounting/summary.py
      "detail": {"file": ..., "sha256": ..., "bytes": ..., "nodes": ...}
    }

`detail` (summarised form only) points to the per-job file holding every node
record (accounting/detail.py). A node record is owned by the modules that fill
it: "platform", "time", "energy", "gpus", "health", "plan", "usage".
"""

from __future__ import annotations

import binascii
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slurm_ai import jsontext
from slurm_ai.errors import RecordError

RECORD_VERSION = 2
# Versions this code reads: v1 (every node in full, no summary) and v2.
READABLE_VERSIONS = (1, 2)
# Lower-case prefix + hex: the token is immune to sacctmgr's lower-casing (see the
# module doc). One encoding only; do not add case-sensitive variants.
TOKEN_PREFIX = "sai1:"
# AdminComment is a MySQL TEXT column (64 KiB). Leave room for foreign content.
MAX_TOKEN_CHARS = 48 * 1024
MAX_JSON_BYTES = 4 * 1024 * 1024
# Compressed records up to this size cannot expand past MAX_JSON_BYTES (deflate: 1032:1).
_ONE_SHOT_BYTES = MAX_JSON_BYTES // 1032 - 1


def encode_record(record: dict[str, Any]) -> str:
    """Record -> AdminComment token. Raises RecordError when it is too large."""
    if not isinstance(record.get("v"), int):
        raise RecordError("record has no integer format version 'v'")
    # "v" first, the rest key-sorted: a reader knows the version before the nodes (the
    # report's C extension only counts a v2 record's nodes: it reads the summary).
    rest = finite_json({k: v for k, v in record.items() if k != "v"})
    raw = (f'{{"v":{record["v"]}' + ("," + rest[1:] if rest != "{}" else "}")).encode()
    token = TOKEN_PREFIX + zlib.compress(raw, 9).hex()
    if len(token) > MAX_TOKEN_CHARS:
        raise RecordError(
            f"encoded record is {len(token)} characters, over the {MAX_TOKEN_CHARS} limit"
        )
    return token


def is_token(word: str) -> bool:
    """Is this space-separated word of an AdminComment our record (any case)?"""
    return word[: len(TOKEN_PREFIX)].lower() == TOKEN_PREFIX


def decode_token(token: str) -> dict[str, Any]:
    """AdminComment token -> record. Raises RecordError on any corruption."""
    try:
        record = jsontext.loads(token_payload(token))
    except ValueError as exc:
        raise RecordError(f"corrupt record: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("v"), int):
        raise RecordError("corrupt record: no format version")
    return record


def token_payload(
    token: str,
    inflate: Callable[[bytes], bytes] = zlib.decompress,
    inflate_errors: tuple[type[Exception], ...] = (zlib.error,),
) -> bytes:
    """AdminComment token -> its record's JSON text, not parsed.

    For readers that parse the JSON their own way (the report decodes only the
    fields it needs); same checks and errors as decode_token before json.loads.
    `inflate` may be a faster zlib-compatible decompressor (the report's, see
    report/slim.py) for the usual small record; whatever it raises (its
    `inflate_errors`), the bounded zlib path below decides, so the answer and
    the error words never depend on it.
    """
    if not is_token(token):
        raise RecordError("not a slurm-ai token")
    try:
        data = binascii.unhexlify(token[len(TOKEN_PREFIX) :])
    except (binascii.Error, ValueError) as exc:
        raise RecordError(f"corrupt record: {exc}") from exc
    if len(data) <= _ONE_SHOT_BYTES:
        # Usual case, faster: too short to expand past the limit (deflate expands
        # at most 1032:1), so a one-shot decompress is safe. Any error, and the
        # limit, are left to the bounded path below, which words them.
        try:
            raw = inflate(data)
        except inflate_errors:
            pass
        else:
            if len(raw) < MAX_JSON_BYTES:
                return raw
    try:
        decompressor = zlib.decompressobj()
        raw = decompressor.decompress(data, MAX_JSON_BYTES)
    except (binascii.Error, ValueError, zlib.error) as exc:
        raise RecordError(f"corrupt record: {exc}") from exc
    if decompressor.unconsumed_tail:
        raise RecordError("record expands past the size limit")
    if not decompressor.eof:
        raise RecordError("record is truncated")
    return raw


@dataclass(frozen=True)
class AdminComment:
    """An AdminComment split into our record and everything else."""

    token: str | None
    foreign: str

    @classmethod
    def parse(cls, text: str | None) -> AdminComment:
        """Split on spaces; the last sai1 token wins, all else is foreign."""
        if not text:
            return cls(token=None, foreign="")
        token = None
        kept: list[str] = []
        for part in text.split(" "):
            if is_token(part):
                token = part.strip()
            else:
                kept.append(part)
        return cls(token=token, foreign=" ".join(kept).strip())

    def record(self) -> dict[str, Any] | None:
        """The decoded record, None when absent; RecordError when corrupt."""
        return decode_token(self.token) if self.token else None

    def with_token(self, token: str) -> str:
        """The full AdminComment with our token replaced or added."""
        return f"{self.foreign} {token}" if self.foreign else token


def record_version(record: dict[str, Any]) -> int:
    version = record.get("v")
    return version if isinstance(version, int) else -1


def new_job_record(job: dict[str, Any]) -> dict[str, Any]:
    if not job.get("id"):
        raise RecordError("a job record needs job.id")
    return {"v": RECORD_VERSION, "job": dict(job), "nodes": {}, "units": {}, "complete": False}


def merge_node_records(
    job: dict[str, Any],
    nodes: dict[str, dict[str, Any]],
    *,
    previous: dict[str, Any] | None = None,
    units: dict[str, float] | None = None,
    previous_detail: dict[str, Any] | None = None,
    absent: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One job record (v2, in full form) from node records, keeping what a
    previous delivery had.

    Merging with the record already in accounting means a late or re-delivered
    node never removes another node's part (no last-writer-wins loss). A
    previous record in summarised form (it has a `detail` pointer) holds only
    some nodes: its detail file's nodes must be given as `previous_detail`,
    else RecordError (the caller keeps its entry and retries; nothing is lost).
    Linear in the node count: one dict update per node, one summary pass.
    """
    record = new_job_record(job)
    known_absent: dict[str, Any] = {}
    if previous and record_version(previous) in READABLE_VERSIONS:
        if isinstance(previous.get("detail"), dict):
            if previous_detail is None:
                raise RecordError("the record in accounting is summarised; its detail is needed")
            record["nodes"].update(previous_detail)
        old_nodes = previous.get("nodes")
        if isinstance(old_nodes, dict):
            record["nodes"].update(old_nodes)
        old_units = previous.get("units")
        if isinstance(old_units, dict):
            record["units"].update(old_units)
        old_job = previous.get("job")
        if isinstance(old_job, dict):
            record["job"] = {**old_job, **record["job"]}
        old_absent = previous.get("absent")
        if isinstance(old_absent, dict):
            known_absent.update(old_absent)
    record["nodes"].update(nodes)
    if units:
        record["units"].update(units)
    if absent:
        known_absent.update(absent)
    finish_record(record, known_absent)
    return record


def finish_record(record: dict[str, Any], absent: dict[str, Any] | None = None) -> None:
    """Set complete, missing, absent and summary from the record's nodes and job."""
    from slurm_ai.accounting.summary import NAMED, summarize

    nodes = record["nodes"]
    job = record["job"]
    expected = job.get("nodes_expected")
    names = expected_names(job)
    missing = sorted(names - set(nodes)) if names is not None else []
    if names is not None:
        record["complete"] = not missing
    else:
        record["complete"] = isinstance(expected, int) and len(nodes) >= expected
    for key in ("missing", "missing_count", "absent", "shrunk"):
        record.pop(key, None)
    if not record["complete"]:
        if names is not None:
            record["missing"] = missing[:NAMED]
            record["missing_count"] = len(missing)
        elif isinstance(expected, int):
            record["missing_count"] = max(0, expected - len(nodes))
        kept = {
            n: a
            for n, a in sorted((absent or {}).items())
            if n not in nodes and isinstance(a, dict)
        }
        if kept:
            record["absent"] = dict(list(kept.items())[:NAMED])
    summary = summarize(nodes)
    elapsed = job.get("elapsed_s")
    if type(elapsed) in (int, float) and 0 <= elapsed < 1e12:
        # Cost inputs: the job's node- and GPU-hours over the nodes present (the
        # report takes them from sacct; here they travel with the record).
        summary["hours"] = {
            "node_h": len(nodes) * elapsed / 3600.0,
            "gpu_h": summary["gpus"]["count"] * elapsed / 3600.0,
        }
    record["summary"] = summary


def expected_names(job: dict[str, Any]) -> set[str] | None:
    """The job's nodes from its nodelist; None when unknown or unreadable."""
    from slurm_ai.slurmenv import expand_hostlist

    text = job.get("nodelist")
    if not isinstance(text, str) or not text:
        return None
    try:
        return set(expand_hostlist(text))
    except ValueError:
        return None


def finite_json(value: Any) -> str:
    """Compact, key-sorted JSON of value with NaN and infinities written as null.

    The usual value has none and is serialised once; only one that has is walked.
    """
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except ValueError:
        return json.dumps(finite_only(value), separators=(",", ":"), sort_keys=True)


def finite_only(value: Any) -> Any:
    """A copy of a JSON value with NaN and infinities replaced by None.

    json.dumps writes them as NaN/Infinity, which is not JSON: other readers of
    the record (jq, a database) refuse it. A node record is checked once, when
    it enters a job record.
    """
    kind = type(value)
    if kind is float:
        return value if value - value == 0.0 else None  # inf - inf and NaN are NaN
    if kind is dict:
        return {k: finite_only(v) for k, v in value.items()}
    if kind is list:
        return [finite_only(v) for v in value]
    return value
