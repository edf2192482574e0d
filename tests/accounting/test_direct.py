"""Neither the spool nor the hold directory takes the node record (every local disk full):
the Epilog writes it straight into AdminComment (slurm_ai/accounting/direct.py); only a
failed write then loses it, and the log says so with every error. The cluster test
(tests/accounting/test_cluster_faults.py) fills both filesystems on a node."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeBackend

from slurm_ai.accounting import backend as backend_module
from slurm_ai.accounting.direct import MemoryOutbox, deliver_node_file
from slurm_ai.accounting.outbox import OutboxEntry, node_file
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.config import load_config
from slurm_ai.hooks.epilog import run_epilog
from slurm_ai.hooks.prolog import run_prolog
from slurm_ai.record import AdminComment, encode_record, merge_node_records

LOG = logging.getLogger("test")
SPOOL = Path("/nonexistent/spool")  # where detail files would be: none is needed here
JOB = {"id": "41", "nodelist": "n[1-2]", "nodes": 2, "cluster": "c"}
ENV = {
    "SLURM_JOB_ID": "41",
    "SLURMD_NODENAME": "n2",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_UID": str(os.getuid()),
}


class StepClock:
    """time's calls for the deliverer, with sleep() moving monotonic() on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def _settings(**kw: Any) -> AccountingSettings:
    return AccountingSettings(max_writes_per_s=0, **kw)


def _record(comment: str) -> dict[str, Any]:
    record = AdminComment.parse(comment).record()
    assert record is not None
    return record


def test_merges_with_the_other_nodes_record_already_in_accounting() -> None:
    backend = FakeBackend(folds_case=False)
    n1 = merge_node_records(dict(JOB), {"n1": {"time": {"epilog_s": 0.1}}})
    backend.comments["41"] = "JS1:kept " + encode_record(n1)
    data = node_file("n2", dict(JOB), {"time": {"epilog_s": 0.2}}, {"epochs": 1})
    assert deliver_node_file(data, backend, _settings(), LOG, spool_root=SPOOL, budget_s=5) == (
        True,
        "",
    )
    record = _record(backend.comments["41"])
    assert sorted(record["nodes"]) == ["n1", "n2"] and record["complete"] is True, record
    assert record["units"] == {"epochs": 1}
    assert backend.comments["41"].startswith("JS1:kept ")  # foreign content kept
    # Written again (an Epilog retried by hand): the same record, no second write.
    assert deliver_node_file(data, backend, _settings(), LOG, spool_root=SPOOL, budget_s=5) == (
        True,
        "",
    )
    assert backend.writes == 1


def test_alone_it_names_the_nodes_still_missing() -> None:
    backend = FakeBackend(folds_case=False)
    backend.comments["41"] = ""
    data = node_file("n2", dict(JOB), {"time": {}}, {})
    assert deliver_node_file(data, backend, _settings(), LOG, spool_root=SPOOL, budget_s=5)[0]
    record = _record(backend.comments["41"])
    assert record["complete"] is False and "n1" in str(record["missing"]), record


def test_waits_for_the_job_to_reach_accounting_within_its_budget() -> None:
    backend, clock = FakeBackend(folds_case=False), StepClock()
    data = node_file("n2", dict(JOB), {"time": {}}, {})
    written, why = deliver_node_file(
        data, backend, _settings(), LOG, spool_root=SPOOL, budget_s=5, clock=clock
    )
    assert not written and "not in accounting yet" in why
    assert 4 <= clock.slept <= 5 and backend.writes == 0


def test_slurmdbd_down_gives_up_at_once_and_says_why() -> None:
    backend, clock = FakeBackend(folds_case=False), StepClock()
    backend.down = True
    data = node_file("n2", dict(JOB), {"time": {}}, {})
    written, why = deliver_node_file(
        data, backend, _settings(), LOG, spool_root=SPOOL, budget_s=5, clock=clock
    )
    assert not written and "slurmdbd unreachable" in why and clock.slept == 0


def test_the_memory_outbox_writes_nothing(tmp_path: Path) -> None:
    outbox = MemoryOutbox(tmp_path / "nowhere", LOG)
    entry = OutboxEntry(job=dict(JOB), nodes={"n2": {}})
    outbox.put(entry)
    outbox.update(entry)
    assert [e.job_id for _, e in outbox.pending()] == ["41"]
    outbox.remove(entry)
    assert list(outbox.pending()) == [] and not (tmp_path / "nowhere").exists()


# ---- the Epilog with both places refused


def _config(tmp_path: Path) -> str:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[spool]\ndir = "{tmp_path}/spool"\n[log]\nfile = "{tmp_path}/log/x.log"\n'
        f'[accounting]\nmark_dir = "{tmp_path}/marks"\nshared_spool = false\n'
        f'hold_dir = "{tmp_path}/held"\nmax_writes_per_s = 0\ninline_budget_s = 3\n'
        f'[hooks]\nsteps = ["topology"]\n'
    )
    return str(path)


def _refuse_both(tmp_path: Path) -> None:
    """Group-writable: the spool checks refuse them (for root too)."""
    for directory in (tmp_path / "spool" / "jobs", tmp_path / "held"):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o770)


@pytest.fixture
def fake_accounting(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    backend = FakeBackend(folds_case=False)
    monkeypatch.setattr(backend_module, "select_backend", lambda *a, **k: backend)
    return backend


def test_epilog_writes_straight_into_accounting_when_spool_and_hold_refuse(
    tmp_path: Path, fake_accounting: FakeBackend
) -> None:
    config = _config(tmp_path)
    _refuse_both(tmp_path)
    fake_accounting.comments["41"] = ""
    assert run_prolog(config, ENV) == 0
    assert run_epilog(config, {**ENV, "SLURM_JOB_EXIT_CODE": "0"}) == 0
    record = _record(fake_accounting.comments["41"])
    assert list(record["nodes"]) == ["n2"] and record["complete"] is False, record
    # The Prolog's state was lost with the disks: the node's record says so.
    assert "no Prolog state for this node" in record["nodes"]["n2"]["errors"]
    log = (tmp_path / "log" / "x.log").read_text()
    assert "event=spool_write_failed" in log  # the Prolog's state, nowhere to keep it
    [line] = [ln for ln in log.splitlines() if "event=node_record_written_direct" in ln]
    assert "spool_error=" in line and "hold_error=" in line and "spool_copy=none" in line
    assert "event=node_record_lost" not in log
    assert not list((tmp_path / "held").iterdir())
    settings = AccountingSettings.from_config(load_config(config))
    assert settings.hold_dir == tmp_path / "held"


def test_epilog_names_every_error_when_accounting_refuses_too(
    tmp_path: Path, fake_accounting: FakeBackend
) -> None:
    config = _config(tmp_path)
    _refuse_both(tmp_path)
    fake_accounting.down = True
    assert run_epilog(config, {**ENV, "SLURM_JOB_EXIT_CODE": "0"}) == 0
    log = (tmp_path / "log" / "x.log").read_text()
    [line] = [ln for ln in log.splitlines() if "event=node_record_lost" in ln]
    for part in ("spool_error=", "hold_error=", "direct_error=slurmdbd unreachable"):
        assert part in line, line
    assert json.dumps(fake_accounting.comments) == "{}"
