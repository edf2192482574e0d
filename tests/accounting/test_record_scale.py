"""Record v2 for jobs of any size: bounded record, exact totals, detail file, readers."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from core_parts import DEV_EXTRA, import_module
from fakes import FakeBackend

from slurm_ai.accounting import deliver as deliver_mod
from slurm_ai.accounting.deliver import deliver_pending, encode_fitting
from slurm_ai.accounting.detail import DetailError, prune, read_detail
from slurm_ai.accounting.outbox import OutboxEntry, Spool, node_file
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.accounting.summary import distribution, summarize
from slurm_ai.accounting.synth import node_records, nodelist
from slurm_ai.accounting.waiting import job_waiting, waiting_jobs
from slurm_ai.record import AdminComment, decode_token, encode_record, merge_node_records
from slurm_ai.report.aggregate import Aggregate
from slurm_ai.report.facts import job_facts
from slurm_ai.report.jobview import job_json, render_job
from slurm_ai.report.prices import Prices

LOG = logging.getLogger("test")
KIB = 1024
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs/record.schema.json").read_text())


def _validate(record: dict[str, Any]) -> None:
    jsonschema = import_module("jsonschema", DEV_EXTRA)
    jsonschema.validate(record, SCHEMA)


def _job(n: int, job_id: str = "42") -> dict[str, Any]:
    return {"id": job_id, "cluster": "c1", "nodes_expected": n, "nodelist": nodelist(n)}


def _row(token: str, n: int, job_id: str = "42") -> dict[str, str]:
    return {
        "JobIDRaw": job_id, "JobName": "train", "Partition": "bare", "User": "u", "Account": "a",
        "NNodes": str(n), "NodeList": nodelist(n), "State": "COMPLETED", "Submit": "1700000000",
        "Start": "1700000010", "End": "1700003610", "ElapsedRaw": "3600",
        "AllocTRES": f"billing=1,cpu={96 * n},node={n},gres/gpu={8 * n}", "AdminComment": token,
    }  # fmt: skip


@pytest.mark.parametrize("count", [1, 2, 64, 512, 4096])
def test_every_size_encodes_with_exact_totals_and_recoverable_detail(tmp_path, count):
    nodes = node_records(count, seed=count)
    record = merge_node_records(_job(count), nodes)
    token = encode_fitting(record, tmp_path / "detail")
    back = decode_token(token)
    assert back["v"] == 2 and back["complete"] is True
    _validate(back)
    s = back["summary"]
    totals = [n["energy"]["total_j"] for n in nodes.values()]
    assert s["nodes"] == count
    assert s["energy"]["total_j"] == math.fsum(totals)  # exact: correctly rounded sum
    assert s["energy"]["measured_j"] == math.fsum(
        src["joules"] for n in nodes.values() for src in n["energy"]["sources"]
    )
    assert s["gpus"]["count"] == 8 * count
    assert s["dist"]["energy_j"]["min"] == min(totals)
    assert s["dist"]["energy_j"]["max"] == max(totals)
    assert s["dist"]["energy_j"]["max_node"] == max(
        nodes, key=lambda k: nodes[k]["energy"]["total_j"]
    )
    assert "hours" not in s  # no elapsed_s in the job yet (delivery adds sacct's)
    timed = merge_node_records({**_job(count), "elapsed_s": 3600}, {})["summary"]
    assert timed["hours"] == {"node_h": 0.0, "gpu_h": 0.0}
    failed = sorted(k for k, v in nodes.items() if v["health"]["verdict"] in ("fail", "timeout"))
    assert s["health"].get("failed", {"nodes": []})["nodes"] == failed[:32]
    if count <= 64:
        assert "detail" not in back and back["nodes"] == nodes  # small jobs: today's detail
    else:
        assert len(token) < 16 * KIB, len(token)
        assert read_detail(back["detail"]) == nodes  # nothing dropped
        assert set(back["nodes"]) <= set(failed)  # failed nodes kept in full
    facts = job_facts(_row(token, count)).facts
    assert facts is not None and facts.energy_j == math.fsum(totals)
    assert facts.gpus == 8 * count and facts.complete
    text = render_job(_row(token, count), Prices())
    assert "INCOMPLETE" not in text
    if count > 64:
        assert "summarised" in text and "(verified)" in text


# What the nodes' all-reduce ran on -> the busbw key's model (report/facts.busbw_model):
# synth's nccl on GPUs; gloo on CPUs; a record before "device" (gloo: CPUs).
RAN_ON = [({}, "NVIDIA H100 80GB HBM3"), ({"device": "cpu", "backend": "gloo"}, "cpu")]
RAN_ON += [({"device": None, "backend": "gloo"}, "cpu")]


@pytest.mark.parametrize(("ran_on", "model"), RAN_ON)
def test_report_figures_equal_from_full_and_summarised_form(tmp_path, monkeypatch, ran_on, model):
    nodes = node_records(48, seed=3)
    for node in nodes.values():
        node["health"].update(ran_on)
        if node["health"]["device"] is None:
            del node["health"]["device"]
    record = merge_node_records(_job(48), nodes)
    _validate(record)
    low = record["summary"]["health"]["busbw_min"]
    assert (low.get("device"), low["backend"]) == (
        ran_on.get("device", "gpu"),
        ran_on.get("backend", "nccl"),
    )
    full = encode_fitting(json.loads(json.dumps(record)), tmp_path / "d")
    assert "detail" not in decode_token(full)
    monkeypatch.setattr(deliver_mod, "FULL_FORM_MAX_JSON", 0)  # force the summarised form
    short = encode_fitting(json.loads(json.dumps(record)), tmp_path / "d")
    assert "detail" in decode_token(short)
    a, b = job_facts(_row(full, 48)).facts, job_facts(_row(short, 48)).facts
    assert a == b
    # v1 (the same nodes, node by node): same figures, totals to the last bits of a sum.
    v1 = encode_record({"v": 1, "job": _job(48), "nodes": nodes, "units": {}, "complete": True})
    c = job_facts(_row(v1, 48)).facts
    assert c is not None and a is not None
    assert (c.nnodes, c.gpus, c.platform, c.model, c.health, c.busbw_gbps, c.busbw_key) == (
        a.nnodes, a.gpus, a.platform, a.model, a.health, a.busbw_gbps, a.busbw_key
    )  # fmt: skip
    assert a.busbw_key is not None and a.busbw_key[0] == model
    assert c.energy_j == pytest.approx(a.energy_j, rel=1e-12)
    assert c.measured_j == pytest.approx(a.measured_j, rel=1e-12)


def test_summary_busbw_min_says_what_the_slowest_node_ran_on():
    def checked(bw: float, device: Any, backend: Any) -> dict[str, Any]:
        health = {"verdict": "pass", "busbw_gbps": bw, "device": device, "backend": backend}
        return {"health": health}

    nodes = {"a": checked(9.0, "gpu", "nccl"), "b": checked(3.0, "cpu", "gloo")}
    nodes["c"] = checked(5.0, 7, "x" * 17)
    low = summarize(nodes)["health"]["busbw_min"]
    assert low == {"gbps": 3.0, "node": "b", "ranks": 0, "size_bytes": 0, "device": "cpu",
                   "backend": "gloo"}  # fmt: skip
    del nodes["b"]
    low = summarize(nodes)["health"]["busbw_min"]
    assert "device" not in low and "backend" not in low  # no word the report reads: absent


def test_summary_is_bounded_and_never_non_finite():
    nodes: dict[str, Any] = {f"n{i}": {"platform": {"class": f"c{i}"}} for i in range(100)}
    nodes["bad"] = {
        "energy": {"total_j": float("nan"), "elapsed_s": 0, "sources": [{"joules": float("inf")}]},
        "health": {"verdict": "fail", "busbw_gbps": float("-inf")},
        "gpus": [{"model": f"m{i}"} for i in range(100)],
    }
    nodes["huge"] = {"energy": {"total_j": 10**400, "elapsed_s": 1e-320}}
    nodes["odd"] = ["not", "a", "dict"]
    s = summarize(nodes)
    json.dumps(s, allow_nan=False)  # raises on NaN/inf
    assert len(s["platform"]) <= 16 and len(s["gpus"]["models"]) <= 16
    assert s["platform"]["other"] + sum(v for k, v in s["platform"].items() if k != "other") == 103
    assert s["energy"]["total_j"] is None and s["health"]["failed"]["nodes"] == ["bad"]
    assert distribution([]) is None
    d = distribution([(1.0, "b"), (1.0, "a"), (3.0, "c"), (2.0, "d")])
    assert d == {
        "n": 4,
        "min": 1.0,
        "min_node": "a",
        "p50": 1.0,
        "p95": 3.0,
        "max": 3.0,
        "max_node": "c",
    }


def test_detail_file_damaged_or_disagreeing_is_reported_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setattr(deliver_mod, "FULL_FORM_MAX_JSON", 0)
    nodes = node_records(8, seed=4)
    token = encode_fitting(merge_node_records(_job(8), nodes), tmp_path / "d")
    pointer = decode_token(token)["detail"]
    path = Path(pointer["file"])
    assert path.stat().st_mode & 0o777 == 0o600
    # A valid detail file that disagrees with the record (other figures, same node count).
    other = {"v": 1, "job": "42", "cluster": "c1", "nodes": node_records(8, seed=5)}
    path.write_bytes(gzip.compress(json.dumps(other).encode()))
    with pytest.raises(DetailError, match="does not match the record"):
        read_detail(pointer)
    info = job_json(_row(token, 8), all_nodes=True)
    assert "does not match" in info["detail_status"] and "detail_nodes" not in info
    assert "does not match the record" in render_job(_row(token, 8), Prices())
    # The report's figures come from the record's summary, not the file.
    assert job_facts(_row(token, 8)).facts.energy_j == math.fsum(  # type: ignore[union-attr]
        n["energy"]["total_j"] for n in nodes.values()
    )
    # A file whose digest the record carries but whose nodes do not give its summary
    # (a writer bug, or a record edited by hand): said, not trusted.
    data = gzip.compress(json.dumps(other).encode())
    path.write_bytes(data)
    forged = dict(decode_token(token))
    forged["detail"] = {**pointer, "sha256": hashlib.sha256(data).hexdigest()}
    info = job_json(_row(encode_record(forged), 8), all_nodes=True)
    assert "disagrees with the record's summary" in info["detail_status"]
    path.unlink()
    with pytest.raises(DetailError, match="missing"):
        read_detail(pointer)
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DetailError):
        read_detail(
            {**pointer, "sha256": __import__("hashlib").sha256(path.read_bytes()).hexdigest()}
        )


def test_detail_retention_prunes_old_files(tmp_path):
    old = tmp_path / "c1" / "1.json.gz"
    new = tmp_path / "c1" / "2.json.gz"
    old.parent.mkdir()
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    os.utime(old, (1000, 1000))
    assert prune(tmp_path, 0) == 0 and old.exists()  # 0: keep forever
    assert prune(tmp_path, 30.0) == 1 and not old.exists() and new.exists()
    os.utime(new, (1000, 1000))
    assert prune(tmp_path, 30.0) == 0 and new.exists()  # scanned at most hourly
    assert prune(tmp_path, 30.0, now=time.time() + 3601) == 1 and not new.exists()


def _spool_job(spool: Spool, job: dict[str, Any], node: str, record: dict[str, Any]) -> None:
    spool.write_node_file(job["id"], node, "node", node_file(node, job, record, {}))


def test_lost_node_is_visible_waiting_then_named_in_an_incomplete_record(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    backend.comments["7"] = ""
    job = {"id": "7", "nodes_expected": 2, "nodelist": "n[1-2]", "cluster": "c"}
    nodes = node_records(2, seed=9)
    n1 = nodes["gpu00001"]
    # Both Prologs ran; only n1's Epilog reported.
    for node in ("n1", "n2"):
        state = {"v": 1, "node": node, "job": job, "time": {"prolog_start": 1.7e9, "prolog_s": 0.1},
                 "steps": {"topology": {"platform": {"class": "bare-metal"}}}, "errors": []}  # fmt: skip
        spool.write_node_file("7", node, "prolog", state)
    _spool_job(spool, job, "n1", n1)
    waiting = waiting_jobs(spool, 600.0)
    assert [(w.job_id, w.where, w.have, w.missing, w.prolog_only) for w in waiting] == [
        ("7", "nodes", ["n1"], ["n2"], ["n2"])
    ]
    assert waiting[0].since is not None and "missing n2" in waiting[0].line(waiting[0].since + 5)
    assert job_waiting(spool, "7", 600.0) is not None
    # Before partial_after_s nothing is delivered; after it, once, incomplete, naming n2.
    assert deliver_pending(spool, backend, AccountingSettings(max_writes_per_s=0), LOG).writes == 0
    short = AccountingSettings(max_writes_per_s=0, partial_after_s=0.0)
    stats = deliver_pending(spool, backend, short, LOG)
    assert (stats.partial, stats.writes) == (1, 1)
    assert deliver_pending(spool, backend, short, LOG).writes == 0  # nothing duplicated
    record = AdminComment.parse(backend.comments["7"]).record()
    assert record is not None
    assert record["complete"] is False and record["missing"] == ["n2"]
    _validate(record)
    assert record["absent"]["n2"]["prolog"]["platform"] == {"class": "bare-metal"}
    assert record["summary"]["nodes"] == 1
    row = _row(backend.comments["7"], 2, "7") | {"NodeList": "n[1-2]"}
    text = render_job(row, Prices())
    assert "INCOMPLETE: n2 missing" in text and "node n2 (missing)" in text
    assert "Prolog ran" in text and "nodes present only" in text
    info = job_json(row)
    assert info["complete"] is False and info["missing"] == {"count": 1, "nodes": ["n2"]}
    agg = Aggregate()
    agg.add(job_facts(row))
    assert agg.incomplete == 1
    # n2's part arrives late: merged, complete, absent gone, n1 kept (no loss, no duplicate).
    _spool_job(spool, job, "n2", nodes["gpu00002"])
    deliver_pending(spool, backend, short, LOG)
    record = AdminComment.parse(backend.comments["7"]).record()
    assert record is not None and record["complete"] is True
    assert set(record["nodes"]) == {"n1", "n2"} and "absent" not in record
    assert record["summary"]["energy"]["total_j"] == math.fsum(
        n["energy"]["total_j"] for n in nodes.values()
    )


def test_v1_incomplete_record_names_missing_from_nodelist():
    rec = {"v": 1, "job": {"id": "5", "nodelist": "n[1-3]", "nodes_expected": 3},
           "nodes": {"n1": {}}, "complete": False}  # fmt: skip
    row = _row(encode_record(rec), 3, "5")
    assert "INCOMPLETE: n2,n3 missing" in render_job(row, Prices())
    outcome = job_facts(row)
    assert outcome.facts is not None and outcome.facts.complete is False


def test_late_node_merges_into_a_summarised_record_and_waits_when_its_detail_is_gone(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(deliver_mod, "FULL_FORM_MAX_JSON", 0)
    spool, backend = Spool(tmp_path / "spool", LOG), FakeBackend(folds_case=False)
    backend.comments["9"] = ""
    nodes = node_records(6, seed=6)
    job = _job(6, "9")
    first = dict(list(nodes.items())[:5])
    spool.put(OutboxEntry(job=job, nodes=first))
    settings = AccountingSettings(max_writes_per_s=0)
    assert deliver_pending(spool, backend, settings, LOG).writes == 1
    rec = decode_token(backend.comments["9"])
    assert rec["complete"] is False and rec["missing"] == ["gpu00006"]
    # The same node reporting twice, and the late node: one write, each node once.
    spool.put(OutboxEntry(job=job, nodes={"gpu00006": nodes["gpu00006"]}))
    spool.put(
        OutboxEntry(job=job, nodes={"gpu00006": nodes["gpu00006"], "gpu00001": first["gpu00001"]})
    )
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.writes == 1 and stats.reads == 1
    rec = decode_token(backend.comments["9"])
    assert rec["complete"] is True and rec["summary"]["nodes"] == 6
    # Cost inputs from the job's elapsed time (FakeBackend's sacct row: 1 s).
    assert rec["summary"]["hours"] == {"node_h": 6 / 3600, "gpu_h": 48 / 3600}
    assert read_detail(rec["detail"]) == nodes
    # The detail file lost: a later part must not drop the nodes only it held.
    Path(rec["detail"]["file"]).unlink()
    before = backend.comments["9"]
    spool.put(OutboxEntry(job=job, nodes={"gpu00002": nodes["gpu00002"]}))
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.writes == 0 and backend.comments["9"] == before
    [(_, entry)] = list(spool.pending())
    assert "missing" in entry.last_error


def test_oversized_node_part_is_quarantined_and_the_others_delivered(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    backend.comments["11"] = ""
    job = {"id": "11", "nodes_expected": 2, "nodelist": "n[1-2]"}
    _spool_job(spool, job, "n1", {"time": {"epilog_s": 0.1}})
    big = {"usage": {"junk": "x" * (10 * 1024 * 1024)}}
    _spool_job(spool, job, "n2", big)  # a 10 MB node part
    stats = deliver_pending(
        spool, backend, AccountingSettings(max_writes_per_s=0, partial_after_s=0), LOG
    )
    assert stats.writes == 1
    record = AdminComment.parse(backend.comments["11"]).record()
    assert record is not None and set(record["nodes"]) == {"n1"} and record["missing"] == ["n2"]
    assert "quarantined" in record["absent"]["n2"]["why"]
    assert any("node-n2" in p.name for p in (tmp_path / "corrupt").iterdir())


def test_accounting_calls_per_job_do_not_grow_with_nodes(tmp_path):
    calls = {}
    for count in (2, 64, 512):
        spool, backend = Spool(tmp_path / str(count), LOG), FakeBackend(folds_case=False)
        backend.comments["3"] = ""
        job = _job(count, "3")
        for name, rec in node_records(count, seed=count).items():
            _spool_job(spool, job, name, rec)
        stats = deliver_pending(spool, backend, AccountingSettings(max_writes_per_s=0), LOG)
        calls[count] = (backend.reads, backend.writes)
        assert stats.partial == 0
        # A large merged claim is left for the sweeper (off the Epilog's time), then removed.
        done = list((spool.root / "done").glob("*")) if (spool.root / "done").exists() else []
        assert len(done) == (1 if count > 256 else 0)
        deliver_pending(spool, backend, AccountingSettings(max_writes_per_s=0), LOG)
        assert not list(spool.root.glob("done/*")) and not list(spool.root.glob("claimed/*"))
    assert set(calls.values()) == {(1, 1)}, calls


def _node_local_epilog(
    local_root: Path, settings: AccountingSettings, job: dict[str, Any], node: str, rec: Any
) -> None:
    """What the Epilog does with a node-local spool (hooks/epilog.py): Prolog state is
    local; the node record goes to the delivery root; the completing node claims."""
    from slurm_ai.hooks.epilog import hand_over

    local = Spool(local_root, LOG)
    delivery = Spool(settings.delivery_root(local_root), LOG)
    delivery.write_node_file(job["id"], node, "node", node_file(node, job, rec, {}))
    if delivery.root != local.root:
        local.drop_job_dir(job["id"])
    hand_over(delivery, settings, None, job["id"], job, LOG)


@pytest.mark.parametrize("count", [2, 64])
def test_node_local_spools_with_gather_dir_one_writer_per_job(tmp_path, count):
    gather = tmp_path / "gather"
    settings = AccountingSettings(
        max_writes_per_s=0, shared_spool=False, gather_dir=gather, deliver_inline=False
    )
    job = _job(count, "21")
    nodes = node_records(count, seed=21)
    names = sorted(nodes)
    for name in names[:-1] if count > 2 else names:
        local = tmp_path / "local" / name  # every node its own spool
        Spool(local, LOG).write_node_file("21", name, "prolog", {"v": 1, "node": name, "job": job})
        _node_local_epilog(local, settings, job, name, nodes[name])
        assert not (local / "jobs" / "21").exists()  # local Prolog state cleaned up
    backend = FakeBackend(folds_case=False)
    backend.comments["21"] = ""
    gspool = Spool(gather, LOG)
    if count > 2:  # the last node never reports: waiting, then named missing
        [w] = waiting_jobs(gspool, 600.0)
        assert w.missing == [names[-1]]
        assert deliver_pending(gspool, backend, settings, LOG).writes == 0
        settings = AccountingSettings(
            max_writes_per_s=0, shared_spool=False, gather_dir=gather, partial_after_s=0
        )
    stats = deliver_pending(gspool, backend, settings, LOG)
    assert (backend.reads, backend.writes) == (1, 1)  # whatever the node count
    record = decode_token(backend.comments["21"])
    assert record["complete"] is (count == 2)
    if count > 2:
        assert stats.partial == 1 and record["missing"] == [names[-1]]
        assert record["summary"]["nodes"] == count - 1
    # Delivered and verified once: nothing left waiting in the gather directory.
    assert not list(gspool.pending()) and not waiting_jobs(gspool, 600.0)


def test_node_local_without_gather_dir_writes_once_per_node(tmp_path):
    # The fallback (no shared directory at all): each node writes its own part, so
    # calls grow with the nodes (docs/accounting.md says so and names gather_dir).
    backend = FakeBackend(folds_case=False)
    backend.comments["22"] = ""
    settings = AccountingSettings(max_writes_per_s=0, shared_spool=False, settle_s=0)
    job = _job(4, "22")
    for name, rec in node_records(4, seed=22).items():
        spool = Spool(tmp_path / name, LOG)
        spool.put(OutboxEntry(job=job, nodes={name: rec}))
        deliver_pending(spool, backend, settings, LOG)
    assert backend.writes == 4
    assert decode_token(backend.comments["22"])["complete"] is True


def test_non_finite_figures_never_reach_the_record(tmp_path):
    bad = {"energy": {"total_j": float("nan"), "sources": [{"joules": float("inf")}]}}
    record = merge_node_records(_job(1), {"gpu00001": bad})
    token = encode_fitting(record, tmp_path)
    back = decode_token(token)
    assert back["nodes"]["gpu00001"]["energy"]["total_j"] is None
    json.dumps(back, allow_nan=False)


def test_doctor_names_jobs_waiting_for_nodes(tmp_path):
    from slurm_ai.admin.doctor import _waiting_for_nodes
    from slurm_ai.config import Config

    config = Config(path=None, data={"spool": {"dir": str(tmp_path)}})
    assert _waiting_for_nodes(config).status == "pass"
    job = {"id": "31", "nodes_expected": 3, "nodelist": "n[1-3]"}
    _spool_job(Spool(tmp_path, LOG), job, "n1", {})
    check = _waiting_for_nodes(config)
    assert check.status == "warn" and "31 waiting for nodes: missing n2,n3" in check.message


def _dump(path: Path, rows: list[dict[str, str]]) -> Path:
    from slurm_ai.accounting.sacct import DELIMITER, FIELDS

    lines = [DELIMITER.join(FIELDS)] + [DELIMITER.join(r[f] for f in FIELDS) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _report(dump: Path) -> dict[str, Any]:
    from click.testing import CliRunner

    from slurm_ai.cli import main

    result = CliRunner().invoke(
        main, ["report", "--from", str(dump), "--format", "json", "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_report_same_from_full_and_summarised_form_and_counts_incomplete(tmp_path, monkeypatch):
    """`slurm-ai report` over jobs of 2, 64 and 256 GPU nodes: the same JSON whether each
    record is in full form (256 nodes do not fit AdminComment: encoded here past the
    limit, as a reader could meet it) or summarised; incomplete records counted apart."""
    import zlib

    from slurm_ai.record import finite_json

    full_rows, short_rows = [], []
    totals = []
    for i, count in enumerate((2, 64, 256)):
        job_id = str(100 + i)
        nodes = node_records(count, seed=count)
        totals += [n["energy"]["total_j"] for n in nodes.values()]
        record = merge_node_records(_job(count, job_id), nodes)
        raw = finite_json(record).encode()
        full_rows.append(_row("sai1:" + zlib.compress(raw).hex(), count, job_id))
        monkeypatch.setattr(deliver_mod, "FULL_FORM_MAX_JSON", 0)
        short = encode_fitting(json.loads(raw), tmp_path / "detail")
        monkeypatch.undo()
        assert "detail" in decode_token(short)
        short_rows.append(_row(short, count, job_id))
    full = _report(_dump(tmp_path / "full.txt", full_rows))
    summarised = _report(_dump(tmp_path / "short.txt", short_rows))
    assert full == summarised
    assert full["summary"]["with_record"] == 3 and full["summary"]["incomplete"] == 0
    [group] = full["groups"]
    assert group["kwh"] == float(f"{math.fsum(totals) / 3.6e6:.6g}")  # the report's rounding
    # One job loses a node: counted apart, said in the table.
    lossy = merge_node_records(_job(4, "200"), dict(list(node_records(4).items())[:3]))
    rows = [*short_rows, _row(encode_record(lossy), 4, "200")]
    report = _report(_dump(tmp_path / "lossy.txt", rows))
    assert report["summary"]["incomplete"] == 1 and report["summary"]["with_record"] == 4
    from click.testing import CliRunner

    from slurm_ai.cli import main

    table = CliRunner().invoke(main, ["report", "--from", str(tmp_path / "lossy.txt")]).output
    assert "incomplete records: 1 (nodes missing)" in table and "nodes present only" in table


def test_job_whose_every_node_was_lost_still_gets_a_record(tmp_path):
    """No node ran its Epilog: once accounting says the job ended (and partial_after_s
    passed since), the sweeper delivers a record naming every node, with Prolog data."""
    from slurm_ai.accounting.backend import JobRow

    class Backend(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.running: set[str] = set()

        def read(self, job_ids):  # type: ignore[no-untyped-def]
            rows = super().read(job_ids)
            for job_id in self.running & set(rows):
                rows[job_id] = JobRow(job_id, rows[job_id].admin_comment, state="RUNNING")
            return rows

    spool, backend = Spool(tmp_path, LOG), Backend()
    for job_id in ("41", "42"):
        backend.comments[job_id] = ""
        job = {"id": job_id, "nodes_expected": 2, "nodelist": "n[1-2]"}
        for node in ("n1", "n2"):
            state = {"v": 1, "node": node, "job": job, "time": {"prolog_start": 1.7e9},
                     "steps": {"topology": {"platform": {"class": "vm"}}}, "errors": []}  # fmt: skip
            spool.write_node_file(job_id, node, "prolog", state)
    backend.running = {"42"}  # a long job still running looks the same in the spool
    old = time.time() - 100
    os.utime(tmp_path / "jobs" / "42", (old, old))
    settings = AccountingSettings(max_writes_per_s=0, partial_after_s=0.0)
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.partial == 1 and stats.writes == 1
    record = decode_token(backend.comments["41"])
    assert record["complete"] is False and record["missing"] == ["n1", "n2"]
    assert record["nodes"] == {} and record["summary"]["nodes"] == 0
    assert record["absent"]["n2"]["prolog"]["platform"] == {"class": "vm"}
    assert backend.comments["42"] == "" and (tmp_path / "jobs" / "42").is_dir()
    # Checked once: its directory waits partial_after_s before the next check.
    assert os.stat(tmp_path / "jobs" / "42").st_mtime > old + 50
    # Not while the job runs; the default wait (600 s after its end) applies too.
    assert deliver_pending(spool, backend, AccountingSettings(max_writes_per_s=0), LOG).writes == 0
