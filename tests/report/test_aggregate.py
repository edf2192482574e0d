"""Aggregation against figures computed by hand, and bad input counted, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from core_parts import DEV_EXTRA, FASTROW_BUILD, missing

from slurm_ai.accounting.sacct import DELIMITER, FIELDS, read_rows
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError
from slurm_ai.record import encode_record
from slurm_ai.report import facts
from slurm_ai.report.aggregate import MIN_JOBS
from slurm_ai.report.dumpfile import Dump
from slurm_ai.report.pipeline import aggregate_file, aggregate_rows
from slurm_ai.report.prices import load_prices
from slurm_ai.report.stats import Series

D = DELIMITER


def node(cls: str, total_j: float, measured_j: float, verdict: str, busbw: float) -> dict[str, Any]:
    return {
        "platform": {"class": cls},
        "gpus": [{"index": 0, "model": "GPU-X"}, {"index": 1, "model": "GPU-X"}],
        "energy": {
            "total_j": total_j,
            "sources": [
                {"source": "nvml", "joules": measured_j, "quality": "measured"},
                {"source": "cpu-model", "joules": total_j - measured_j, "quality": "estimated"},
            ],
        },
        "health": {"verdict": verdict, "busbw_gbps": busbw, "ranks": 2, "size_bytes": 1024},
    }


def line(
    jobid: str,
    part: str,
    state: str,
    submit: int,
    start: int,
    elapsed: int,
    record: dict[str, Any] | None,
) -> str:
    values = {
        "JobIDRaw": jobid, "User": "u", "Account": "a", "Partition": part, "NodeList": "n1",
        "NNodes": "1", "State": state, "Submit": str(submit), "Start": str(start),
        "End": str(start + elapsed), "ElapsedRaw": str(elapsed),
        "AllocTRES": "cpu=8,node=1,gres/gpu=2", "JobName": "j",
        "AdminComment": encode_record(record) if record else "",
    }  # fmt: skip
    return D.join(values[f] for f in FIELDS) + "\n"


def rec(jobid: str, n: dict[str, Any], tokens: float) -> dict[str, Any]:
    return {
        "v": 1,
        "job": {"id": jobid, "workload": "training"},
        "nodes": {"n1": n},
        "units": {"tokens": tokens},
    }


HAND_DUMP = [
    D.join(FIELDS) + "\n",
    line(
        "1",
        "bare",
        "COMPLETED",
        0,
        60,
        3600,
        rec("1", node("bare-metal", 3.6e6, 2.7e6, "pass", 100.0), 2e6),
    ),
    line(
        "2",
        "bare",
        "FAILED",
        0,
        120,
        7200,
        rec("2", node("bare-metal", 7.2e6, 7.2e6, "fail", 300.0), 4e6),
    ),
    line(
        "3",
        "vm",
        "COMPLETED",
        0,
        0,
        3600,
        rec("3", node("vm-passthrough", 3.6e6, 3.6e6, "pass", 150.0), 1e6),
    ),
    line("4", "vm", "COMPLETED", 0, 0, 3600, None),
]
PRICES = {
    "prices": {
        "cost_per_kwh": 0.25, "pue": 1.3, "co2_kg_per_kwh": 0.35,
        "partitions": {
            "bare": {"cost_per_gpu_hour": 1.80},
            "vm": {"cost_per_kwh": 0.30, "cost_per_node_hour": 0.10, "cost_per_gpu_hour": 1.60},
        },
    }
}  # fmt: skip


def report_of(lines: list[str], workers: int = 1) -> dict[str, Any]:
    layout, rows = read_rows(lines)
    return aggregate_rows(layout, rows, workers=workers).finish(load_prices(Config(None, PRICES)))


def group(report: dict[str, Any], part: str, plat: str) -> dict[str, Any]:
    return next(g for g in report["groups"] if (g["partition"], g["platform"]) == (part, plat))


def test_hand_computed_bare_metal_group() -> None:
    r = report_of(HAND_DUMP)
    g = group(r, "bare", "bare-metal")
    assert g["jobs"] == 2
    assert g["node_hours"] == 3.0 and g["gpu_hours"] == 6.0
    assert g["kwh"] == 3.0 and g["kwh_per_gpu_hour"] == 0.5
    # 3 kWh x PUE 1.3 x 0.25 + 6 GPU-h x 1.80 = 0.975 + 10.8
    assert g["cost"] == pytest.approx(11.775)
    assert g["cost_per_gpu_hour"] == pytest.approx(1.9625)
    assert g["cost_per_job"] == pytest.approx(5.8875)
    assert g["co2_kg"] == pytest.approx(1.365)
    # busbw [100, 300]: mean 200, population sd 100; two values support no percentile
    # (a median needs 6: uncertainty rule 2), so none is shown.
    busbw = g["busbw_gbps"]
    assert busbw["n"] == 2 and busbw["cv"] == 0.5
    assert all(busbw[k] is None for k in ("median", "median_low", "p5", "p95", "p95_high"))
    elapsed = g["elapsed_s"]  # completed jobs only
    assert elapsed["n"] == 1 and elapsed["p50"] is None and elapsed["p99"] is None
    assert elapsed["cv"] is None and elapsed["p99_over_p50"] is None
    assert g["wait_s"]["n"] == 2 and g["wait_s"]["p95"] is None
    assert g["energy_measured_share"] == pytest.approx(0.917, abs=1e-3)  # 9.9 of 10.8 MJ
    assert g["health"] == {
        "checked": 2,
        "failed": 1,
        "failure_rate": 0.5,
        "fresh": 0,
        "cached": 0,
        "unchecked": 0,
    }
    (tokens,) = g["per_unit"]
    assert tokens["cost"] == pytest.approx(11.775 / 6) and tokens["kwh"] == 0.5


def test_hand_computed_vm_group_tax_and_decision() -> None:
    r = report_of(HAND_DUMP)
    vm = group(r, "vm", "vm-passthrough")
    # 1 kWh x 1.3 x 0.30 + 1 node-h x 0.10 + 2 GPU-h x 1.60
    assert vm["cost"] == pytest.approx(3.69)
    nr = group(r, "vm", "no record")
    assert nr["jobs"] == 1 and nr["kwh"] == 0.0 and nr["cost"] == pytest.approx(3.3)
    (bw,) = r["tax"]["busbw"]
    assert (bw["model"], bw["ranks"], bw["size_bytes"], bw["platform"]) == (
        "GPU-X",
        2,
        1024,
        "vm-passthrough",
    )
    # One and two busbw values: no median, so no ratio, and the row says why.
    assert bw["ratio"] is None and bw["verdict"] == "too few jobs"
    assert bw["jobs"] == 1 and bw["bare_metal_jobs"] == 2
    (cost,) = r["tax"]["cost_per_result"]
    assert cost["unit"] == "tokens" and cost["ratio"] == pytest.approx(3.69 / 1.9625, rel=1e-3)
    # One VM job: a figure, but no interval (rule 4 needs two jobs), so no verdict.
    assert cost["per_result_low"] is None and cost["verdict"] == "too few jobs"
    (dec,) = r["decision"]
    assert dec["workload"] == "training" and dec["reference"] == "bare/bare-metal"
    (comp,) = dec["comparisons"]
    assert (
        comp["cost"]["verdict"] == "too few jobs"
        and comp["elapsed_p99"]["verdict"] == "too few jobs"
    )
    assert "too few jobs to say" in dec["verdict"]
    assert r["summary"]["no_record"] == 1 and r["summary"]["with_record"] == 3


def test_decision_with_enough_jobs() -> None:
    """Identical jobs a side: no noise, so the interval is the point and the verdict is clear."""
    lines = _few_jobs(MIN_JOBS)
    (dec,) = report_of(lines)["decision"]
    (comp,) = dec["comparisons"]
    # vm: 1.11 h x (1.6/GPU-h x 2 + 0.1/node-h) + 1 kWh x 1.3 x 0.3 = 4.057 per 1M tokens;
    # bare: 1 h x 1.8 x 2 + 1 kWh x 1.3 x 0.25 = 3.925.
    assert comp["cost"]["ratio"] == pytest.approx(4.0567 / 3.925, abs=0.005)  # 3 digits
    assert comp["cost"]["ratio_low"] == comp["cost"]["ratio_high"] == comp["cost"]["ratio"]
    assert comp["cost"]["verdict"] == "higher" and "VM costs more" in comp["cost"]["says"]
    assert comp["elapsed_p50"]["verdict"] == "higher"  # 4000 s against 3600 s
    assert comp["elapsed_p99"]["verdict"] == "too few jobs"  # 20 jobs: no P99 (needs 368)


def _few_jobs(n: int) -> list[str]:
    lines = [D.join(FIELDS) + "\n"]
    for i in range(n):
        lines.append(
            line(
                str(100 + i),
                "bare",
                "COMPLETED",
                0,
                0,
                3600,
                rec("x", node("bare-metal", 3.6e6, 3.6e6, "pass", 300.0), 1e6),
            )
        )
        lines.append(
            line(
                str(200 + i),
                "vm",
                "COMPLETED",
                0,
                0,
                4000,
                rec("y", node("vm-passthrough", 3.6e6, 3.6e6, "pass", 250.0), 1e6),
            )
        )
    return lines  # fmt: skip


@pytest.mark.parametrize(("min_jobs", "decides"), [(None, False), (4, False), (3, True), (1, True)])
def test_decision_minimum_from_config(min_jobs: int | None, decides: bool) -> None:
    """[report] min_jobs replaces the default 20: 3 jobs a side decide only with min_jobs <= 3."""
    data: dict[str, Any] = {k: dict(v) for k, v in PRICES.items()}
    if min_jobs is not None:
        data["report"] = {"min_jobs": min_jobs}
    layout, rows = read_rows(_few_jobs(3))
    r = aggregate_rows(layout, rows, workers=1).finish(load_prices(Config(None, data)))
    assert r["summary"]["min_jobs"] == (min_jobs or MIN_JOBS)
    (dec,) = r["decision"]
    (comp,) = dec["comparisons"]
    if decides:
        assert comp["cost"]["verdict"] == "higher"
        assert "vm/vm-passthrough" in dec["verdict"] and "n=3/3" in dec["verdict"]
    else:
        assert comp["cost"]["verdict"] == "too few jobs"
        assert f"need {min_jobs or MIN_JOBS} a side" in dec["verdict"]


def test_min_jobs_validation() -> None:
    assert load_prices(Config(None, {})).min_jobs == MIN_JOBS == 20
    for bad in (0, -3):
        with pytest.raises(ConfigError, match=r"\[report\] min_jobs"):
            load_prices(Config(None, {"report": {"min_jobs": bad}}))
    with pytest.raises(ConfigError, match="min_jobs"):
        load_prices(Config(None, {"report": {"min_jobs": "few"}}))


def _prices() -> Any:
    return load_prices(Config(None, PRICES))


@pytest.mark.parametrize("slim", [True, False])
def test_one_or_many_workers_file_or_stream_same_report(
    data_dir: Path, slim: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if slim and not facts.slim_available:
        missing("msgspec (the report's fast decode)", DEV_EXTRA)
    monkeypatch.setattr(facts, "slim_available", slim)
    path = data_dir / "dump.txt"
    lines = path.read_text().splitlines(keepends=True)
    layout, rows = read_rows(lines)
    expected = aggregate_rows(layout, rows, workers=1).finish(_prices())
    layout, rows = read_rows(lines)
    streamed = aggregate_rows(layout, rows, workers=2, chunk_rows=7).finish(_prices())
    assert streamed == expected
    for workers in (1, 2):
        for chunk_bytes in (499, 4099, 1 << 20):
            got = aggregate_file(Dump.open(str(path)), workers=workers, chunk_bytes=chunk_bytes)
            assert got.finish(_prices()) == expected, (workers, chunk_bytes)


def test_slim_and_full_decoding_agree(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not facts.slim_available:
        missing("msgspec (the report's fast decode)", DEV_EXTRA)
    dump = Dump.open(str(data_dir / "dump.txt"))
    slim = aggregate_file(dump, workers=1).finish(_prices())
    monkeypatch.setattr(facts, "slim_available", False)
    assert aggregate_file(dump, workers=1).finish(_prices()) == slim


def test_series_nearest_rank() -> None:
    s = Series(float(v) for v in range(1, 101))
    assert (s.percentile(5), s.percentile(50), s.percentile(99), s.percentile(100)) == (
        5.0,
        50.0,
        99.0,
        100.0,
    )
    assert Series().percentile(50) is None and Series([1.0]).cv() is None


def test_prices_validation() -> None:
    assert not load_prices(Config(None, {})).configured
    with pytest.raises(ConfigError, match="pue"):
        load_prices(Config(None, {"prices": {"pue": 0.5}}))
    with pytest.raises(ConfigError, match="cost_per_kwh"):
        load_prices(Config(None, {"prices": {"cost_per_kwh": "cheap"}}))


def test_equal_figures_are_no_clear_difference() -> None:
    """Same elapsed on both sides: no clear difference, not a win for the first partition."""
    lines = [D.join(FIELDS) + "\n"]
    for i in range(6):
        for jobid, part, cls in (
            (100 + i, "bare", "bare-metal"),
            (200 + i, "vm", "vm-passthrough"),
        ):
            lines.append(
                line(str(jobid), part, "COMPLETED", 0, 0, 3600,
                     rec("x", node(cls, 3.6e6, 3.6e6, "pass", 300.0), 1e6))
            )  # fmt: skip
    data: dict[str, Any] = {k: dict(v) for k, v in PRICES.items()}
    data["report"] = {"min_jobs": 3}
    layout, rows = read_rows(lines)
    r = aggregate_rows(layout, rows, workers=1).finish(load_prices(Config(None, data)))
    (dec,) = r["decision"]
    (comp,) = dec["comparisons"]
    assert comp["elapsed_p50"]["verdict"] == "no clear difference"
    assert comp["elapsed_p50"]["ratio"] == 1.0
    assert "shorter" not in dec["verdict"] and "longer" not in dec["verdict"]


@pytest.mark.parametrize("slim", [True, False])
def test_health_provenance_counts_per_partition(
    monkeypatch: pytest.MonkeyPatch, slim: bool
) -> None:
    """A job counts as its least checked node: unchecked over cached over fresh."""
    import slurm_ai.report.facts as facts

    monkeypatch.setattr(facts, "slim_available", slim and facts.slim_available)

    def with_sources(*sources: str | None) -> dict[str, Any]:
        nodes = {}
        for i, source in enumerate(sources):
            n = node("bare-metal", 1e6, 1e6, "pass", 100.0)
            if source is not None:
                n["health"]["provenance"] = {"source": source, "age_s": 60.0, "why": None}
            nodes[f"n{i + 1}"] = n
        return {"v": 1, "job": {"id": "x"}, "nodes": nodes}

    lines = [
        D.join(FIELDS) + "\n",
        line("1", "bare", "COMPLETED", 0, 0, 60, with_sources("fresh")),
        line("2", "bare", "COMPLETED", 0, 0, 60, with_sources("cached", "fresh")),
        line("3", "bare", "COMPLETED", 0, 0, 60, with_sources("cached", "unchecked")),
        line("4", "bare", "COMPLETED", 0, 0, 60, with_sources(None)),  # an older record
        line("5", "bare", "COMPLETED", 0, 0, 60, with_sources("guess")),  # not ours to count
    ]
    health = group(report_of(lines), "bare", "bare-metal")["health"]
    assert (health["fresh"], health["cached"], health["unchecked"]) == (1, 1, 1)


# The busbw tax compares like with like: a check that ran on CPUs (gloo, or mpi with host
# buffers) on a GPU node is keyed "cpu", not the job's GPU model (facts.busbw_model).
# (device, backend) of the slowest node's health (None: not in the record) -> the key's model.
RAN_ON = [
    ("cpu", "gloo", "cpu"),
    ("cpu", "mpi", "cpu"),  # mpi with host buffers
    ("gpu", "nccl", "GPU-X"),
    ("gpu", "gloo", "GPU-X"),  # gloo on CUDA tensors
    (None, "gloo", "cpu"),  # records before "device": gloo ran on CPUs
    (None, "nccl", "GPU-X"),
    (None, "mpi", "GPU-X"),  # either: the job's model, as before
    (None, None, "GPU-X"),
]
READERS = ("dict", "slim", "c")  # json.loads + _dict_figures, msgspec, _fastrow
FORMS = ("v1", "v2", "summarised")  # node by node; from the summary, in full and short form


def use_reader(reader: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if reader == "c" and not facts.fast_available:
        missing("the report's C extension (slurm_ai/report/native/*.c)", FASTROW_BUILD)
    if reader == "slim" and not facts.slim_available:
        missing("msgspec (the report's fast decode)", DEV_EXTRA)
    monkeypatch.setattr(facts, "fast_available", reader == "c")
    monkeypatch.setattr(facts, "slim_available", reader == "slim")


def ran_on(cls: str, busbw: float, device: str | None, backend: str | None) -> dict[str, Any]:
    n = node(cls, 1e6, 1e6, "pass", busbw)
    for key, value in (("device", device), ("backend", backend)):
        if value is not None:
            n["health"][key] = value
    return n


def token_in_form(nodes: dict[str, Any], form: str, tmp_path: Path) -> str:
    from slurm_ai.accounting import deliver
    from slurm_ai.record import decode_token, merge_node_records

    if form == "v1":
        return encode_record({"v": 1, "job": {"id": "7"}, "nodes": nodes})
    job = {"id": "7", "cluster": "c1", "nodes_expected": len(nodes), "nodelist": "n1"}
    record = merge_node_records(job, nodes)
    if form == "v2":
        return encode_record(record)
    limit = deliver.FULL_FORM_MAX_JSON
    deliver.FULL_FORM_MAX_JSON = 0  # every job summarised, as a job too large for full form
    try:
        token = deliver.encode_fitting(record, tmp_path)
    finally:
        deliver.FULL_FORM_MAX_JSON = limit
    assert "detail" in decode_token(token)
    return token


def busbw_key_of(token: str, reader: str) -> Any:
    args = ("7", "bare", "u", "a", "1", "COMPLETED", "0", "0", "60", "60", "gres/gpu=2", token)
    outcome = facts.row_facts(*args)
    assert outcome is not None and outcome.facts is not None
    if reader == "c":  # the row in C too (_fastrow.row): the same key
        fast = facts._fastrow.row(*args, None)
        assert fast is not None and fast.facts.busbw_key == outcome.facts.busbw_key
    return outcome.facts.busbw_key


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(("device", "backend", "model"), RAN_ON)
def test_busbw_key_is_what_the_all_reduce_ran_on(
    reader: str,
    form: str,
    device: str | None,
    backend: str | None,
    model: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = token_in_form({"n1": ran_on("bare-metal", 100.0, device, backend)}, form, tmp_path)
    use_reader(reader, monkeypatch)
    assert busbw_key_of(token, reader) == (model, 2, 1024)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("form", FORMS)
def test_busbw_key_follows_the_slowest_node(
    reader: str, form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu_slower = {
        "n1": ran_on("bare-metal", 90.0, "gpu", "nccl"),
        "n2": ran_on("bare-metal", 100.0, "cpu", "gloo"),
    }
    cpu_slower = {
        "n1": ran_on("bare-metal", 110.0, "gpu", "nccl"),
        "n2": ran_on("bare-metal", 100.0, "cpu", "gloo"),
    }
    tokens = [token_in_form(nodes, form, tmp_path) for nodes in (gpu_slower, cpu_slower)]
    use_reader(reader, monkeypatch)
    assert [busbw_key_of(t, reader)[0] for t in tokens] == ["GPU-X", "cpu"]


@pytest.mark.parametrize("reader", READERS)
def test_busbw_tax_series_keyed_by_what_the_all_reduce_ran_on(
    reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the whole aggregation, C's Tally included (its row() and, for a row it
    declines, add() of row_facts' facts): CPU checks and GPU checks in their own series."""
    lines = [D.join(FIELDS) + "\n"]
    for i, (device, backend, _) in enumerate(RAN_ON):
        for k, (cls, part) in enumerate((("bare-metal", "bare"), ("vm-passthrough", "vm"))):
            record = rec(str(i), ran_on(cls, 100.0 + i, device, backend), 1e6)
            lines.append(line(str(100 + 2 * i + k), part, "COMPLETED", 0, 0, 3600, record))
    # The same jobs with foreign text before the token: C declines the row, row_facts reads it.
    for row in lines[1:]:
        head, comment = row.rstrip("\n").rsplit(D, 1)
        lines.append(f"9{head}{D}JS1:abc {comment}\n")
    use_reader(reader, monkeypatch)
    layout, rows = read_rows(lines)
    tax = aggregate_rows(layout, rows, workers=1).busbw_tax
    want: dict[tuple[str, int, int, str], list[float]] = {}
    for i, (_, _, model) in enumerate(RAN_ON):
        for cls in ("bare-metal", "vm-passthrough"):
            want.setdefault((model, 2, 1024, cls), []).append(100.0 + i)
    assert {k: sorted(s.values) for k, s in tax.items()} == {
        k: sorted(v * 2) for k, v in want.items()
    }
