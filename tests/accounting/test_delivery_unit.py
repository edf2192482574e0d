"""Spool, single-writer claim, merge and delivery with an in-memory backend."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

import pytest
from fakes import FakeBackend

from slurm_ai.accounting.backend import parse_sacct, pyslurm_matches
from slurm_ai.accounting.deliver import deliver_pending, encode_fitting
from slurm_ai.accounting.outbox import OutboxEntry, Spool, node_file
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.record import AdminComment, decode_token

LOG = logging.getLogger("test")


def _settings(**kw) -> AccountingSettings:
    return AccountingSettings(max_writes_per_s=0, **kw)


def _node_done(root: str, job: str, node: str, nodelist: str) -> bool:
    """What an Epilog does: write the node file, claim when the set is complete."""
    spool = Spool(Path(root))
    meta = {"id": job, "nodelist": nodelist, "nodes_expected": 2}
    spool.write_node_file(job, node, "node", node_file(node, meta, {"time": {"epilog_s": 0.1}}, {}))
    if spool.present_nodes(job) >= {"n1", "n2"}:
        claimed = spool.claim(job, node)
        if claimed is not None:
            spool.finalize(claimed)
            return True
    return False


def test_two_epilogs_racing_give_one_merged_entry(tmp_path):
    jobs = [str(100 + i) for i in range(40)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        wins = pool.starmap(
            _node_done, [(str(tmp_path), j, n, "n[1-2]") for j in jobs for n in ("n1", "n2")]
        )
    assert sum(wins) == len(jobs)  # exactly one winner per job
    spool = Spool(tmp_path)
    entries = {e.job_id: e for _, e in spool.pending()}
    assert set(entries) == set(jobs)
    assert all(set(e.nodes) == {"n1", "n2"} for e in entries.values())


def _entry(job: str, nodes: dict, **kw) -> OutboxEntry:
    return OutboxEntry(
        job={"id": job, "nodelist": "n[1-2]", "nodes_expected": 2}, nodes=nodes, **kw
    )


def test_delivery_merges_keeps_foreign_and_is_idempotent(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    backend.comments["5"] = "js1:lowercase-foreign"
    spool.put(_entry("5", {"n1": {"time": {}}}, units={"tokens": 5.0}))
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.writes == 1 and not list(spool.pending())
    # A straggler later: merged with what is in accounting, nothing removed.
    spool.put(_entry("5", {"n2": {"time": {}}}, units={"tokens": 3.0}))
    deliver_pending(spool, backend, _settings(), LOG)
    comment = AdminComment.parse(backend.comments["5"])
    assert comment.foreign == "js1:lowercase-foreign"
    record = comment.record()
    assert set(record["nodes"]) == {"n1", "n2"} and record["complete"]
    assert record["units"] == {"tokens": 5.0}  # totals: the larger one wins
    assert record["job"]["submit"] == 1
    # Re-delivery of the same content makes no write.
    spool.put(_entry("5", {"n2": {"time": {}}}, units={"tokens": 3.0}))
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.unchanged == 1 and stats.writes == 0


def test_backend_down_keeps_records_then_delivers(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    for j in ("1", "2", "3"):
        backend.comments[j] = ""
        spool.put(_entry(j, {"n1": {}}))
    backend.down = True
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.backend_down and len(list(spool.pending())) == 3
    assert all(e.attempts == 1 for _, e in spool.pending())
    backend.down = False
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.delivered == 3 and not list(spool.pending())


def test_job_not_yet_in_accounting_waits(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    spool.put(_entry("9", {"n1": {}}))
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.waiting == 1
    [(_, entry)] = list(spool.pending())
    assert "not in accounting" in entry.last_error


def test_mixed_case_foreign_content_is_not_lowercased(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend(folds_case=True)
    backend.comments["4"] = "JS1:H4sIAbC"
    spool.put(_entry("4", {"n1": {}}))
    stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.writes == 0 and backend.comments["4"] == "JS1:H4sIAbC"
    assert list(spool.pending())  # still waiting, never dropped
    allow = deliver_pending(spool, FakeBackend(folds_case=False), _settings(), LOG)
    assert allow.failed == 0  # a case-preserving backend (pyslurm) may write


def test_node_local_spool_verifies_after_settle(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    backend.comments["8"] = ""
    settings = _settings(shared_spool=False, settle_s=0.0)
    spool.put(_entry("8", {"n1": {"x": 1}}))
    deliver_pending(spool, backend, settings, LOG)
    # Another node's writer, working from a stale read, overwrites n1's part:
    backend.comments["8"] = encode_fitting(
        {"v": 1, "job": {"id": "8"}, "nodes": {"n2": {}}, "units": {}}
    )
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.writes == 1  # read-back found n1 missing: rewritten, merged
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.verified == 1 and not list(spool.pending())
    record = AdminComment.parse(backend.comments["8"]).record()
    assert set(record["nodes"]) == {"n1", "n2"}


def test_corrupt_outbox_file_quarantined_sweep_goes_on(tmp_path, caplog):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    spool.ensure()
    (spool.outbox_dir / "77.json").write_bytes(b"\x00garbage")
    backend.comments["78"] = ""
    spool.put(_entry("78", {"n1": {}}))
    with caplog.at_level(logging.WARNING):
        stats = deliver_pending(spool, backend, _settings(), LOG)
    assert stats.delivered == 1
    assert any(p.name.endswith("77.json") for p in (tmp_path / "corrupt").iterdir())
    assert "event=quarantine" in caplog.text


def test_partial_set_swept_after_wait(tmp_path):
    spool, backend = Spool(tmp_path, LOG), FakeBackend()
    backend.comments["60"] = ""
    _node_done(str(tmp_path), "60", "n1", "n[1-2]")
    old = os.stat(spool.job_dir("60") / "node-n1.json").st_mtime - 3600
    os.utime(spool.job_dir("60") / "node-n1.json", (old, old))
    stats = deliver_pending(spool, backend, _settings(partial_after_s=600), LOG)
    assert stats.partial == 1 and stats.delivered == 1
    record = AdminComment.parse(backend.comments["60"]).record()
    assert set(record["nodes"]) == {"n1"} and record["complete"] is False


def test_one_deliverer_at_a_time_under_a_burst(tmp_path):
    backend = FakeBackend(latency_s=0.001)
    spool = Spool(tmp_path, LOG)
    for i in range(150):
        backend.comments[str(i + 1)] = ""
        spool.put(_entry(str(i + 1), {"n1": {}}))
    import threading

    threads = [
        threading.Thread(
            target=deliver_pending, args=(spool, backend, _settings(), LOG), kwargs={"sweep": False}
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deliver_pending(spool, backend, _settings(), LOG)
    assert not list(spool.pending())
    assert backend.peak == 1 and backend.writes == 150 and backend.reads <= 8


def test_big_job_record_fits():
    gpus = [
        {
            "index": i,
            "uuid": f"GPU-{i:08x}-1111-2222-3333-444455556666",
            "model": "NVIDIA H100 80GB HBM3",
            "energy_j": 123456.789 + i,
        }
        for i in range(8)
    ]
    node = {
        "energy": {
            "total_j": 1e6,
            "quality": "measured",
            "sources": [
                {"source": "nvml", "domain": f"gpu{i}", "joules": 123456.7, "quality": "measured"}
                for i in range(8)
            ],
        },
        "gpus": gpus,
        "time": {"prolog_start": 1.7e9, "prolog_s": 0.1, "epilog_end": 1.7e9, "epilog_s": 0.2},
        "health": {"verdict": "pass", "busbw_gbps": 400.1},
    }
    record = {
        "v": 1,
        "job": {"id": "1"},
        "nodes": {f"gpu{n:03d}": node for n in range(64)},
        "units": {},
    }
    token = encode_fitting(record)
    assert (
        len(token) < 48 * 1024 and decode_token(token)["nodes"]["gpu063"]["gpus"][7]["index"] == 7
    )


def test_parse_sacct_with_newline_in_foreign_comment():
    text = "12\x1f100\x1f101\x1f102\x1f1\x1fCOMPLETED\x1fjs1:a\nsecond line sai1:00\n13\x1f1\x1fUnknown\x1f\x1f0\x1fRUNNING\x1f\n"
    rows = parse_sacct(text)
    assert rows["12"].admin_comment == "js1:a\nsecond line sai1:00" and rows["12"].start == 101
    assert rows["13"].start is None and rows["13"].admin_comment == ""


def test_pyslurm_version_match():
    assert pyslurm_matches("25.11.0", (25, 11))
    assert not pyslurm_matches("25.11.0", (22, 5)) and not pyslurm_matches("x", None)


@pytest.mark.parametrize(
    "bad",
    [
        b"{}",
        b'{"v": 1, "job": {"id": "a;b"}, "nodes": {}}',
        b'{"v": 1, "job": {"id": "1"}, "nodes": {"../x": {}}}',
    ],
)
def test_outbox_entry_validation(bad):
    import json

    from slurm_ai.errors import SpoolError

    with pytest.raises(SpoolError):
        OutboxEntry.from_json(json.loads(bad))
