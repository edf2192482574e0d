"""One sacct row (and its AdminComment record) -> the few facts a report needs.

Pure and defensive: every record field is optional, wrong types count as
missing, and nothing here raises for bad input. The outcome says whether the
row had a record, had none, or had one we could not read (and why).

These are the rules; the optional C extension (_fastrow, built from
slurm_ai/report/native/; docs/report.md "The C extension") applies the same rules
to the usual row and declines every other row to row_facts, so the report is the same with or without it. A change to a rule
here needs the same change there (tests/report/test_fastrow.py compares them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from slurm_ai.accounting.sacct import parse_time, tres_gpus
from slurm_ai.errors import RecordError
from slurm_ai.record import (
    READABLE_VERSIONS,
    TOKEN_PREFIX,
    AdminComment,
    decode_token,
    is_token,
    token_payload,
)
from slurm_ai.report.slim import INFLATE_ERRORS, inflate, slim_record, slim_struct
from slurm_ai.report.slim import available as _slim_available

try:
    from slurm_ai.report import _fastrow  # optional C extension (setup.py)
except ImportError:  # not built: every record decodes in Python, same figures
    _fastrow = None  # type: ignore[assignment]

WORKLOADS = ("training", "fine-tuning", "inference", "data-science")
UNITS = ("tokens", "epochs", "samples", "requests")
# Health verdicts that carry a real bandwidth measurement, and those that count as failed.
MEASURED_VERDICTS = frozenset({"pass", "warn", "fail"})
CHECKED_VERDICTS = frozenset({"pass", "warn", "fail", "timeout"})
FAILED_VERDICTS = frozenset({"fail", "timeout"})
NO_RECORD = "no record"
slim_available = _slim_available()  # tests switch it off to compare both paths
# The C decode of a token into its figures (_fastrow, native/figures.c); tests and the bench switch it
# off to compare with the Python path, which gives the same figures.
fast_available = _fastrow is not None
# `inflate` (slim.py: ISA-L when installed) and its errors: tests and the bench swap in zlib's.
inflate_errors = INFLATE_ERRORS
UNREADABLE = "unparsed"

_NUM = (int, float)
_PREFIX_LEN = len(TOKEN_PREFIX)
# The largest figure a record may carry (joules, GB/s, tokens, ranks, bytes), the same
# ceiling as a mark's (accounting/marks.py MAX_VALUE): 1e18 J is 30,000 years of a 1 MW
# job, yet its square and a million-job sum stay finite. A larger number is corrupt or
# forged: counted as missing, so no sum, CV or cost downstream becomes inf or NaN
# (native/fastrow.h: FIGURE_MAX).
FIGURE_MAX = 1e18
_INF = FIGURE_MAX

# outcome values
OK = "ok"
NONE = "none"
BAD = "bad"
STEP = "step"


@dataclass(slots=True)
class JobFacts:
    """What the aggregation keeps of one job."""

    job_id: str
    partition: str
    platform: str
    workload: str
    workload_guessed: bool
    model: str
    nnodes: int
    gpus: int
    elapsed_s: float
    wait_s: float | None
    completed: bool
    energy_j: float | None
    measured_j: float
    estimated_j: float
    busbw_gbps: float | None
    # (model, ranks, size_bytes): model is what the all-reduce ran on, the job's GPU
    # model or "cpu" (busbw_model)
    busbw_key: tuple[str, int, int] | None
    health: str | None  # "ok" | "failed" | None (not checked)
    units: dict[str, float] = field(default_factory=dict)
    user: str = ""
    account: str = ""
    submit: float | None = None
    start: float | None = None
    end: float | None = None
    # What the job's health verdict rested on (record health.provenance):
    # "fresh" | "cached" | "unchecked" (any node unchecked) | None (no provenance).
    health_source: str | None = None
    # False: the record says nodes are missing (record "complete": false); its
    # totals cover the nodes present only. The C path takes complete records only.
    complete: bool = True


@dataclass(slots=True)  # not frozen: a frozen __init__ costs a microsecond a job
class Outcome:
    kind: str  # OK | NONE | BAD | STEP
    facts: JobFacts | None = None
    reason: str = ""
    foreign: bool = False


STEP_OUTCOME = Outcome(STEP)
if _fastrow is not None:  # what _fastrow.row builds, and the sacct rule it borrows
    _fastrow.setup(JobFacts, Outcome, tres_gpus, OK, NONE, NO_RECORD)


class RowFilter(Protocol):
    """Which jobs a report keeps, from sacct fields only (see row_facts)."""

    def __call__(
        self,
        partition: str,
        user: str,
        account: str,
        submit: float | None,
        start: float | None,
        end: float | None,
    ) -> bool: ...


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if -FIGURE_MAX < f < FIGURE_MAX else None  # also False for NaN


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _split_comment(admin_comment: str) -> tuple[str | None, bool]:
    """(our token or None, whether other content is there): AdminComment.parse's answer."""
    if " " not in admin_comment and is_token(admin_comment):
        return admin_comment.strip(), False  # the usual case, faster
    comment = AdminComment.parse(admin_comment)
    return comment.token, bool(comment.foreign)


def _decode_full(token: str) -> tuple[str, dict[str, Any] | None, str]:
    try:
        record = decode_token(token)
    except RecordError as exc:
        return BAD, None, str(exc).split(":")[0]
    version = record.get("v")
    if version not in READABLE_VERSIONS:
        return BAD, None, f"record version {version}"
    return OK, record, ""


def read_record(admin_comment: str) -> tuple[str, dict[str, Any] | None, str, bool]:
    """(kind, record, reason, has_foreign_text) for one AdminComment."""
    token, foreign = _split_comment(admin_comment)
    if token is None:
        return NONE, None, "", foreign
    return (*_decode_full(token), foreign)


def read_record_fields(admin_comment: str) -> tuple[str, dict[str, Any] | None, str, bool]:
    """read_record for the aggregation: the record may hold only the keys facts read.

    The slim decode (slim.py) is exact or declines; a declined or bad token takes
    the full path, so kind and reason are read_record's.
    """
    token, foreign = _split_comment(admin_comment)
    if token is None:
        return NONE, None, "", foreign
    if slim_available:
        try:
            record = slim_record(token_payload(token, inflate, inflate_errors))
        except RecordError:
            record = None
        if record is not None:
            return OK, record, "", foreign
    return (*_decode_full(token), foreign)


def guess_workload(gpus: int, nnodes: int, units: dict[str, float]) -> str:
    """Workload class from the job's shape when no template tagged it."""
    if units.get("requests"):
        return "inference"
    if gpus == 0:
        return "data-science"
    if nnodes > 1 or gpus >= 8:
        return "training"
    return "fine-tuning"


def job_facts(row: dict[str, str]) -> Outcome:
    """Facts of one sacct row (column -> value); never raises for bad content."""
    g = row.get
    outcome = row_facts(
        g("JobIDRaw", ""), g("Partition", ""), g("User", ""), g("Account", ""),
        g("NNodes", ""), g("State", ""), g("Submit", ""), g("Start", ""), g("End", ""),
        g("ElapsedRaw", ""), g("AllocTRES", ""), g("AdminComment", ""),
    )  # fmt: skip
    assert outcome is not None  # only a filter drops a job
    return outcome


# What a record gives the facts: node count, platform classes, GPU models,
# energy (total, measured, estimated), GPUs, busbw and its (model, ranks, size) key,
# health, units (unchecked), workload (unchecked) and health provenance. The key's model
# is "cpu" when the all-reduce ran on CPUs (busbw_model), else "": the job's GPU model,
# which row_facts fills in.
_Figures = tuple[
    int, set[str], dict[str, int], float | None, float, float, int,
    float | None, tuple[str, int, int] | None, str | None, dict[str, Any], Any, str | None,
]  # fmt: skip

# A job is as checked as its least checked node.
_SOURCE_RANK = {"fresh": 1, "cached": 2, "unchecked": 3}


def _worse_source(current: str | None, provenance: Any) -> str | None:
    source = provenance.get("source") if type(provenance) is dict else None
    if source in _SOURCE_RANK and _SOURCE_RANK[source] > _SOURCE_RANK.get(current or "", 0):
        return str(source)
    return current


def busbw_model(device: Any, backend: Any) -> str:
    """The busbw key's model slot from the slowest node's health: "cpu" or "" (the job's).

    A gloo check, or mpi with host buffers, on a GPU node measures the CPUs and the
    network, not the GPUs: its busbw must not be compared under the GPU model. Records
    say "device" ("cpu" or "gpu", health/node.py); older ones only the backend, where
    gloo is a CPU run and nccl a GPU one, and mpi could be either: the job's model, as
    before. Any other value (wrong type too) reads as absent. native/figures.c: the same.
    """
    if device == "cpu":
        return "cpu"
    if device == "gpu":
        return ""
    return "cpu" if backend == "gloo" else ""


def _summary_figures(record: dict[str, Any], summary: dict[str, Any]) -> _Figures:
    """The figures of a v2 record: from its summary (summary.py), whichever form.

    The C extension reads the summary the same way (native/summary.c): a change
    here needs the same change there (tests/report/test_fastrow.py compares them).

    A v2 record may hold only some nodes in full (summarised form), so its
    figures come from the summary, which covers every node present; the same
    record in full form gives the same figures. Totals there are math.fsum of
    the nodes (v1 records are summed node by node, so the last bits may differ).
    """
    job_rec = _dict(record.get("job"))
    count = summary.get("nodes")
    node_count = count if type(count) is int and count >= 0 else len(_dict(record.get("nodes")))
    classes = {k for k, v in _dict(summary.get("platform")).items() if type(v) is int and v > 0}
    gpus = _dict(summary.get("gpus"))
    models = {k: v for k, v in _dict(gpus.get("models")).items() if type(v) is int and v > 0}
    gcount = gpus.get("count")
    rec_gpus = gcount if type(gcount) is int and gcount >= 0 else 0
    en = _dict(summary.get("energy"))
    total: Any = en.get("total_j")
    energy = float(total) if type(total) in _NUM and 0 <= total < _INF else None
    measured = _num(en.get("measured_j")) or 0.0
    estimated = _num(en.get("estimated_j")) or 0.0
    hl = _dict(summary.get("health"))
    verdicts = _dict(hl.get("verdicts"))
    health: str | None = None
    for verdict, n in verdicts.items():
        if verdict in CHECKED_VERDICTS and type(n) is int and n > 0:
            if verdict in FAILED_VERDICTS:
                health = "failed"
            elif health is None:
                health = "ok"
    busbw: float | None = None
    busbw_key: tuple[str, int, int] | None = None
    low = _dict(hl.get("busbw_min"))
    bw: Any = low.get("gbps")
    if type(bw) in _NUM and 0 <= bw < _INF:
        busbw = float(bw)
        busbw_key = (
            busbw_model(low.get("device"), low.get("backend")),
            int(_num(low.get("ranks")) or 0),
            int(_num(low.get("size_bytes")) or 0),
        )
    worst = hl.get("worst_source")
    source = worst if worst in _SOURCE_RANK else None
    return (
        node_count, classes, models, energy, measured, estimated, rec_gpus,
        busbw, busbw_key, health, _dict(record.get("units")), job_rec.get("workload"), source,
    )  # fmt: skip


def _dict_figures(record: dict[str, Any] | None) -> _Figures:
    """The figures of a record decoded by json.loads (any shape, checked here)."""
    if record and record.get("v") != 1 and type(record.get("summary")) is dict:
        return _summary_figures(record, record["summary"])
    nodes_rec = _dict(record.get("nodes")) if record else {}
    job_rec = _dict(record.get("job")) if record else {}
    classes: set[str] = set()
    models: dict[str, int] = {}
    energy: float | None = None
    measured = estimated = 0.0
    rec_gpus = 0
    busbw: float | None = None
    busbw_key: tuple[str, int, int] | None = None
    health: str | None = None
    source: str | None = None
    for node in nodes_rec.values():
        # Exact type checks instead of helpers; bool, NaN and infinity never
        # pass `type(x) in _NUM and 0 <= x < _INF`.
        if type(node) is not dict:
            classes.add("unknown")
            continue
        plat = node.get("platform")
        cls = plat.get("class") if type(plat) is dict else None
        classes.add(cls if type(cls) is str and cls else "unknown")
        gpu_list = node.get("gpus")
        if type(gpu_list) is list:
            rec_gpus += len(gpu_list)
            for gpu in gpu_list:
                model = gpu.get("model") if type(gpu) is dict else None
                if type(model) is str and model:
                    models[model] = models.get(model, 0) + 1
        en = node.get("energy")
        if type(en) is dict:
            total: Any = en.get("total_j")
            if type(total) in _NUM and 0 <= total < _INF:
                energy = (energy or 0.0) + total
            sources = en.get("sources")
            if type(sources) is list:
                for src in sources:
                    if type(src) is not dict:
                        continue
                    joules: Any = src.get("joules")
                    if type(joules) in _NUM and 0 <= joules < _INF:
                        quality = src.get("quality")
                        if quality == "measured":
                            measured += joules
                        elif quality == "estimated":
                            estimated += joules
        hl = node.get("health")
        if type(hl) is not dict:
            continue
        source = _worse_source(source, hl.get("provenance"))
        verdict = hl.get("verdict")
        if verdict in CHECKED_VERDICTS:
            if verdict in FAILED_VERDICTS:
                health = "failed"
            elif health is None:
                health = "ok"
        bw: Any = hl.get("busbw_gbps")
        # A job is as fast as its slowest node: keep the minimum.
        if (
            verdict in MEASURED_VERDICTS
            and type(bw) in _NUM
            and 0 <= bw < _INF
            and (busbw is None or bw < busbw)
        ):
            busbw = float(bw)
            ranks = _num(hl.get("ranks"))
            size = _num(hl.get("size_bytes"))
            model = busbw_model(hl.get("device"), hl.get("backend"))
            busbw_key = (model, int(ranks or 0), int(size or 0))
    units = _dict(record.get("units")) if record else {}
    return (
        len(nodes_rec), classes, models, energy, measured, estimated, rec_gpus,
        busbw, busbw_key, health, units, job_rec.get("workload"), source,
    )  # fmt: skip


def _slim_figures(record: Any) -> _Figures:
    """_dict_figures of a SlimRecord (slim.py): the same figures, the same checks.

    The hot loop (a million jobs). The decode already guarantees each node,
    platform, energy, health, GPU and source is an object (else it declined),
    so only the leaf values are checked, exactly as in _dict_figures.
    """
    nodes_rec = record.nodes
    classes: set[str] = set()
    models: dict[str, int] = {}
    energy: float | None = None
    measured = estimated = 0.0
    rec_gpus = 0
    busbw: float | None = None
    busbw_key: tuple[str, int, int] | None = None
    health: str | None = None
    source: str | None = None
    for node in nodes_rec.values():
        plat = node.platform
        cls = plat.cls if plat is not None else None
        classes.add(cls if type(cls) is str and cls else "unknown")
        gpu_list = node.gpus
        if gpu_list:
            rec_gpus += len(gpu_list)
            for gpu in gpu_list:
                model = gpu.model
                if type(model) is str and model:
                    models[model] = models.get(model, 0) + 1
        en = node.energy
        if en is not None:
            total: Any = en.total_j
            if type(total) in _NUM and 0 <= total < _INF:
                energy = (energy or 0.0) + total
            for src in en.sources:
                joules: Any = src.joules
                if type(joules) in _NUM and 0 <= joules < _INF:
                    quality = src.quality
                    if quality == "measured":
                        measured += joules
                    elif quality == "estimated":
                        estimated += joules
        hl = node.health
        if hl is None:
            continue
        source = _worse_source(source, hl.provenance)
        verdict = hl.verdict
        if verdict in CHECKED_VERDICTS:
            if verdict in FAILED_VERDICTS:
                health = "failed"
            elif health is None:
                health = "ok"
        bw: Any = hl.busbw_gbps
        if (
            verdict in MEASURED_VERDICTS
            and type(bw) in _NUM
            and 0 <= bw < _INF
            and (busbw is None or bw < busbw)
        ):
            busbw = float(bw)
            ranks = _num(hl.ranks)
            size = _num(hl.size_bytes)
            busbw_key = (busbw_model(hl.device, hl.backend), int(ranks or 0), int(size or 0))
    job = record.job
    return (
        len(nodes_rec), classes, models, energy, measured, estimated, rec_gpus,
        busbw, busbw_key, health, record.units, job.workload if job is not None else None,
        source,
    )  # fmt: skip


def _slim_summary_figures(record: Any) -> _Figures:
    """_summary_figures of a v2 SlimRecord (its summary decoded as json.loads would)."""
    job = record.job
    view = {
        "job": {"workload": job.workload} if job is not None else {},
        "units": record.units,
        "nodes": record.nodes,
    }
    return _summary_figures(view, record.summary)


def row_facts(
    job_id: str,
    partition: str,
    user: str,
    account: str,
    nnodes_text: str,
    state: str,
    submit_text: str,
    start_text: str,
    end_text: str,
    elapsed_text: str,
    alloc_tres: str,
    admin_comment: str,
    keep: RowFilter | None = None,
) -> Outcome | None:
    """Facts of one job from its sacct fields, positional for the hot loop.

    With `keep`, a job it rejects returns None before its record is decoded:
    every field the filter looks at comes from sacct, and decoding is most of
    the cost. Steps are never filtered (they are counted as skipped).
    """
    if "." in job_id:
        return STEP_OUTCOME
    # parse_time's answer, its usual case (epoch digits) inline.
    submit = float(submit_text) if submit_text.isdigit() else parse_time(submit_text)
    start = float(start_text) if start_text.isdigit() else parse_time(start_text)
    end = float(end_text) if end_text.isdigit() else parse_time(end_text)
    partition = partition or "?"
    if keep is not None and not keep(partition, user, account, submit, start, end):
        return None
    slim = None
    token: str | None
    if " " not in admin_comment and admin_comment[:_PREFIX_LEN].lower() == TOKEN_PREFIX:
        token, foreign = admin_comment.strip(), False  # _split_comment's usual case
    else:
        token, foreign = _split_comment(admin_comment)
    figures: _Figures | None = None
    if token is None:
        kind, record, reason = NONE, None, ""
    elif fast_available and (figures := _fastrow.figures(token)) is not None:
        # The usual record, decoded in C; anything odd declined (None) to the paths below.
        kind, record, reason = OK, None, ""
    else:
        if slim_available:
            try:
                slim = slim_struct(token_payload(token, inflate, inflate_errors))
            except RecordError:
                slim = None
        if slim is not None:
            kind, record, reason = OK, None, ""
        else:
            kind, record, reason = _decode_full(token)
    if figures is not None:
        (
            node_count, classes, models, energy, measured, estimated, rec_gpus,
            busbw, busbw_key, health, units_rec, workload, health_source,
        ) = figures  # fmt: skip
    elif slim is not None:
        (
            node_count, classes, models, energy, measured, estimated, rec_gpus,
            busbw, busbw_key, health, units_rec, workload, health_source,
        ) = _slim_figures(slim) if slim.v == 1 else _slim_summary_figures(slim)  # fmt: skip
    else:
        (
            node_count, classes, models, energy, measured, estimated, rec_gpus,
            busbw, busbw_key, health, units_rec, workload, health_source,
        ) = _dict_figures(record)  # fmt: skip

    # _int's answer; int() takes every str.isdecimal() string.
    elapsed = float(int(elapsed_text) if elapsed_text.isdecimal() else _int(elapsed_text, 0))
    nnodes = (int(nnodes_text) if nnodes_text.isdecimal() else _int(nnodes_text, 0)) or max(
        node_count, 1
    )
    wait = start - submit if start is not None and submit is not None else None

    if kind == OK:
        platform = classes.pop() if len(classes) == 1 else ("mixed" if classes else "unknown")
    elif kind == NONE:
        platform = NO_RECORD
    else:
        platform = UNREADABLE
    if len(models) == 1:
        (model,) = models
    else:  # most GPUs; on a tie the first by name
        model = max(sorted(models), key=models.__getitem__) if models else "cpu"
    gpus = tres_gpus(alloc_tres)
    if gpus is None:
        gpus = rec_gpus
    if busbw_key is not None:  # the job's GPU model unless the all-reduce ran on CPUs
        busbw_key = (busbw_key[0] or model, busbw_key[1], busbw_key[2])

    units: dict[str, float] = {}
    for name, value in units_rec.items():
        if name not in UNITS:
            continue
        if type(value) in _NUM:  # _num(value) > 0, inline: JSON numbers are int or float
            num = float(value)
            if 0 < num < _INF:
                units[name] = num
    guessed = workload not in WORKLOADS
    if guessed:
        workload = guess_workload(gpus, nnodes, units)

    # Positional, in JobFacts' field order (keywords cost a microsecond a job):
    # job_id, partition, platform, workload, workload_guessed, model, nnodes, gpus,
    # elapsed_s, wait_s, completed, energy_j, measured_j, estimated_j, busbw_gbps,
    # busbw_key, health, units, user, account, submit, start, end, health_source.
    facts = JobFacts(
        job_id, partition, platform, str(workload), guessed, model, nnodes, gpus,
        elapsed, wait if wait is None or wait >= 0 else None, state.startswith("COMPLETED"),
        energy, measured, estimated, busbw,
        busbw_key, health, units, user, account, submit, start, end, health_source,
        record is None or record.get("complete") is not False,
    )  # fmt: skip
    return Outcome(kind, facts, reason, foreign)
