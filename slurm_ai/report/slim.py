"""Decode only the part of a record JSON that the report reads, when msgspec is there.

`json.loads` builds every object of a record (plan, time, usage, GPU UUIDs,
evidence...), about 10 us a job here; the report reads a dozen fields. msgspec
decodes into the TypedDicts below and skips every other key in C (about 2 us;
measured in bench/report_million.py), giving plain dicts holding a subset of
the keys, so facts.py reads them with the same code as a full record.

Exactness: anything the typed decode does not take exactly as json.loads would
(a node that is not an object, NaN, a lone surrogate, a number out of range,
a version that is not plain 1 or 2, a v2 record without a summary object, a
"complete" that is not true) makes `slim_record` return None, and the caller
decodes the full record with json.loads instead. The figures are therefore the
same with or without msgspec (tests/report/test_slim.py compares both).

msgspec is optional: without it every record goes through json.loads.

Inflating a record is the other large cost (zlib: about 10 us for a 0.8 kB
record here, most of it building the block's Huffman tables). With the optional
`isal` package (Intel ISA-L, `pip install slurm-ai[report]`) the report inflates
with `isal_zlib.decompress` instead, about 40% faster on the same records. The
bytes are the same (deflate decodes to one answer, and ISA-L checks the
Adler-32 as zlib does); anything it refuses goes to record.token_payload's own
zlib path, which decides and words the error (tests/report/test_fast_inflate.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any, TypedDict, cast

# Record versions this decodes: v1 (figures node by node) and v2 with a summary
# object (figures from it; the summary is decoded whole, as json.loads would).
SLIM_VERSIONS = (1, 2)


try:
    import msgspec
except ImportError:  # optional accelerator
    msgspec = None  # type: ignore[assignment]

inflate: Callable[[bytes], bytes] = zlib.decompress
INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error,)
try:
    from isal import isal_zlib
except ImportError:  # optional accelerator
    pass
else:
    inflate = isal_zlib.decompress
    # isal's stub types `error` as an instance; it is the class IsalError.
    INFLATE_ERRORS = (cast("type[Exception]", isal_zlib.error), zlib.error, ValueError)


# Only the keys facts.py reads; Any where facts.py checks the type itself.
_Platform = TypedDict("_Platform", {"class": Any}, total=False)


class _Gpu(TypedDict, total=False):
    model: Any


class _Source(TypedDict, total=False):
    joules: Any
    quality: Any


class _Energy(TypedDict, total=False):
    total_j: Any
    sources: list[_Source]


class _Health(TypedDict, total=False):
    verdict: Any
    provenance: Any
    busbw_gbps: Any
    ranks: Any
    size_bytes: Any
    device: Any
    backend: Any


class _Node(TypedDict, total=False):
    platform: _Platform
    gpus: list[_Gpu]
    energy: _Energy
    health: _Health


class _Job(TypedDict, total=False):
    workload: Any


class _Record(TypedDict, total=False):
    v: Any
    job: _Job
    nodes: dict[str, _Node]
    units: dict[str, Any]
    complete: Any
    summary: Any


_decode: Callable[[bytes], Any] | None = (
    msgspec.json.Decoder(_Record).decode if msgspec is not None else None
)

# The same fields decoded into Structs for the report's hot loop (facts.py):
# building a Struct and reading its attributes is cheaper than a dict and .get().
# Field types follow the TypedDicts above: a node, platform, energy, health, GPU
# or source that is not an object (a list of GPUs or sources that is not a list,
# a job or nodes or units that is not an object) is a ValidationError, so the
# caller declines exactly where slim_record does. A missing key and null read as
# None (or empty), as `.get()` and the type checks of facts.py read them.
if msgspec is not None:

    class SlimPlatform(msgspec.Struct, gc=False, rename={"cls": "class"}):
        cls: Any = None

    class SlimGpu(msgspec.Struct, gc=False):
        model: Any = None

    class SlimSource(msgspec.Struct, gc=False):
        joules: Any = None
        quality: Any = None

    class SlimEnergy(msgspec.Struct, gc=False):
        total_j: Any = None
        sources: list[SlimSource] = msgspec.field(default_factory=list)

    class SlimHealth(msgspec.Struct, gc=False):
        verdict: Any = None
        provenance: Any = None  # an object when present; facts.py checks its type
        busbw_gbps: Any = None
        ranks: Any = None
        size_bytes: Any = None
        device: Any = None  # with backend: facts.busbw_model
        backend: Any = None

    class SlimNode(msgspec.Struct, gc=False):
        platform: SlimPlatform | None = None
        gpus: list[SlimGpu] = msgspec.field(default_factory=list)
        energy: SlimEnergy | None = None
        health: SlimHealth | None = None

    class SlimJob(msgspec.Struct, gc=False):
        workload: Any = None

    class SlimRecord(msgspec.Struct, gc=False):
        v: Any = None
        job: SlimJob | None = None
        nodes: dict[str, SlimNode] = msgspec.field(default_factory=dict)
        units: dict[str, Any] = msgspec.field(default_factory=dict)
        complete: Any = None
        summary: Any = None  # v2: decoded as json.loads would (facts._summary_figures)

    _decode_struct: Callable[[bytes], Any] | None = msgspec.json.Decoder(SlimRecord).decode
else:
    _decode_struct = None
_errors: tuple[type[Exception], ...] = (
    (msgspec.DecodeError, msgspec.ValidationError) if msgspec is not None else ()
)


def available() -> bool:
    return _decode is not None


def slim_record(payload: bytes) -> dict[str, Any] | None:
    """The report's fields of a v1 record; None: use json.loads (see module doc)."""
    if _decode is None:
        return None
    try:
        record: dict[str, Any] = _decode(payload)
    except _errors:
        return None
    version = record.get("v")
    if type(version) is not int or version not in SLIM_VERSIONS:
        return None  # let the full decode say what is wrong, in its words
    if version == 2 and type(record.get("summary")) is not dict:
        return None
    if record.get("complete", True) is not True:
        return None  # an incomplete record: the full path says so (facts.JobFacts.complete)
    return record


def slim_struct(payload: bytes) -> Any:
    """slim_record's fields as a SlimRecord Struct (facts.py's hot loop); None as there."""
    if _decode_struct is None:
        return None
    try:
        record = _decode_struct(payload)
    except _errors:
        return None
    version = record.v
    if type(version) is not int or version not in SLIM_VERSIONS:
        return None
    if version == 2 and type(record.summary) is not dict:
        return None
    if record.complete is not None and record.complete is not True:
        return None
    return record
