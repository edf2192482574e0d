"""A spool the hooks cannot write: the node's Prolog state and node record are held
in [accounting] hold_dir, and the next `slurm-ai deliver` delivers them once the spool
is writable again (slurm_ai/accounting/held.py). The spool is refused here by making
its jobs/ directory group-writable (the spool check refuses it, for root too); the
cluster test (tests/test_localcluster_production.py) mounts it read-only."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from click.testing import CliRunner
from fakes import FakeBackend

from slurm_ai.accounting import held
from slurm_ai.accounting.deliver import deliver_pending
from slurm_ai.accounting.outbox import Spool
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.config import load_config
from slurm_ai.hooks.epilog import run_epilog
from slurm_ai.hooks.prolog import run_prolog
from slurm_ai.record import AdminComment

LOG = logging.getLogger("test")
ENV = {
    "SLURM_JOB_ID": "41",
    "SLURMD_NODENAME": "n2",
    "SLURM_JOB_NODELIST": "n[1-2]",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_UID": str(os.getuid()),
}


def _config(tmp_path: Path) -> str:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[spool]\ndir = "{tmp_path}/spool"\n[log]\nfile = "{tmp_path}/log/x.log"\n'
        f'[accounting]\nmark_dir = "{tmp_path}/marks"\ndeliver_inline = false\n'
        f'shared_spool = false\nhold_dir = "{tmp_path}/held"\nmax_writes_per_s = 0\n'
        f'settle_s = 0\n[hooks]\nsteps = ["topology"]\n'
    )
    return str(path)


def _refuse(spool: Path, refuse: bool) -> None:
    (spool / "jobs").mkdir(parents=True, exist_ok=True)
    (spool / "jobs").chmod(0o770 if refuse else 0o700)


def test_unwritable_spool_holds_the_node_record_until_deliver(tmp_path: Path) -> None:
    config = _config(tmp_path)
    spool_dir, hold_dir = tmp_path / "spool", tmp_path / "held"
    _refuse(spool_dir, True)
    assert run_prolog(config, ENV) == 0
    state = json.loads((hold_dir / "41" / "prolog-n2.json").read_text())
    assert "topology" in state["steps"]  # the steps still ran
    assert run_epilog(config, {**ENV, "SLURM_JOB_EXIT_CODE": "0"}) == 0
    node_file = json.loads((hold_dir / "41" / "node-n2.json").read_text())
    assert node_file["node"] == "n2" and node_file["record"]["time"]["prolog_s"] > 0
    assert "no Prolog state" not in str(node_file["record"].get("errors"))
    log = (tmp_path / "log" / "x.log").read_text()
    assert "event=prolog_state_held" in log and "event=node_record_held" in log
    assert [h.as_dict()["nodes"] for h in held.held_jobs(hold_dir)] == [["n2"]]

    from slurm_ai.cli import main

    listed = CliRunner().invoke(main, ["--config", config, "deliver", "--list"])
    assert listed.exit_code == 0, listed.output
    assert "41 held on this node" in listed.output and "node record of n2" in listed.output

    from slurm_ai.admin.doctor import _held_records

    check = _held_records(load_config(config))
    assert check.status == "warn" and "41 held on this node" in check.message, check
    settings = AccountingSettings.from_config(load_config(config))
    spool, backend = Spool(spool_dir, LOG), FakeBackend(folds_case=False)
    backend.comments["41"] = ""
    # Still unwritable: nothing is lost, nothing moves.
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.released == 0 and backend.writes == 0
    assert (hold_dir / "41" / "node-n2.json").exists()

    _refuse(spool_dir, False)
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.released == 1 and stats.writes == 1, stats
    record = AdminComment.parse(backend.comments["41"]).record()
    assert record is not None and set(record["nodes"]) == {"n2"}
    assert record["complete"] is False and "n1" in str(record.get("missing")), record
    assert held.held_jobs(hold_dir) == [] and not (hold_dir / "41").exists()
    assert not (spool_dir / "jobs" / "41").exists()  # claimed and merged, Prolog state dropped
    assert _held_records(load_config(config)).status == "pass"
    # Node-local: kept for the read-back, which then finds n2 and forgets the job.
    stats = deliver_pending(spool, backend, settings, LOG)
    assert stats.verified == 1 and not list(spool.pending())


def test_held_prolog_state_is_read_by_an_epilog_on_a_writable_spool(tmp_path: Path) -> None:
    config = _config(tmp_path)
    spool_dir, hold_dir = tmp_path / "spool", tmp_path / "held"
    _refuse(spool_dir, True)
    assert run_prolog(config, ENV) == 0
    _refuse(spool_dir, False)
    assert run_epilog(config, {**ENV, "SLURM_JOB_EXIT_CODE": "0"}) == 0
    [entry] = list((spool_dir / "outbox").glob("*.json"))
    record = json.loads(entry.read_text())["nodes"]["n2"]
    assert record["time"]["prolog_s"] > 0 and "errors" not in record, record
    assert not (hold_dir / "41").exists()  # used, then dropped


def test_release_moves_the_node_record_and_drops_a_used_prolog_state(tmp_path: Path) -> None:
    hold_dir, spool = tmp_path / "held", Spool(tmp_path / "spool", LOG)
    held.hold(hold_dir, "42", "n2", "prolog", {"steps": {}})
    held.hold(hold_dir, "42", "n2", "node", {"node": "n2"})
    held.hold(hold_dir, "43", "n2", "prolog", {"steps": {}})  # a job still running
    assert held.release(hold_dir, spool, LOG) == ["42"]
    assert sorted(os.listdir(spool.job_dir("42"))) == ["node-n2.json"]
    assert sorted(os.listdir(spool.job_dir("43"))) == ["prolog-n2.json"]
    assert held.held_jobs(hold_dir) == [] and os.listdir(hold_dir) == []


def test_doctor_spool_space_names_the_filesystem(tmp_path: Path) -> None:
    """The full case is on the local cluster (test_cluster_faults: a filled tmpfs)."""
    from slurm_ai.admin.doctor import _spool_space

    check = _spool_space(tmp_path)
    assert check.status == "pass" and f"{tmp_path}: " in check.message, check
    assert "MiB free of" in check.message, check
    gone = _spool_space(tmp_path / "absent")
    assert gone.status == "warn" and "cannot stat" in gone.message, gone
