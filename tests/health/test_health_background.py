"""Background mode: the Prolog's quick checks and cached verdict, the Epilog's
refresh, provenance in every fragment, and the HealthCheckProgram's drain rules."""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
from health_helpers import needs_mpi, needs_torch

import slurm_ai.health.launcher
from slurm_ai.config import Config
from slurm_ai.health.drain import NodeState, node_action, parse_node_state
from slurm_ai.health.history import HealthStore
from slurm_ai.health.hook import epilog_step, prolog_step
from slurm_ai.health.policy import provenance
from slurm_ai.hooks.context import HookContext
from slurm_ai.slurmenv import JobEnv

ENV = {
    "SLURM_JOB_ID": "88",
    "SLURM_JOB_PARTITION": "bare",
    "SLURMD_NODENAME": "n1",
    "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
}
CHECK = {
    "enabled": True,
    "backend": "mpi",
    "min_size": "4K",
    "cpu_max_size": "16K",
    "iters": 1,
    "budget_s": 60,
    "local_bench": "off",
}


def context(
    tmp_path: Path, health: dict[str, Any], slurm: dict[str, Any] | None = None
) -> HookContext:
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700, exist_ok=True)
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("6,1,1,-;Linux version 6.1\n")
    config = Config(
        None,
        {
            "spool": {"dir": str(spool)},
            "health": {"kmsg": str(kmsg), **CHECK, **health},
            "slurm": slurm or {},
        },
    )
    return HookContext(config, JobEnv.from_environ(ENV), "n1", spool, logging.getLogger("t"))


def store_last(ctx: HookContext, age_s: float, verdict: str = "pass") -> None:
    checked_at = time.time() - age_s
    health = {
        "verdict": verdict,
        "backend": "nccl",
        "device": "gpu",
        "busbw_gbps": 402.5,
        "ranks": 8,
        "reason": "",
        "checked_at": checked_at,
    }
    # Stored in this boot (the host's own boot id): a verdict of an earlier boot is stale.
    from slurm_ai.health.nodegpu import read_boot_id
    from slurm_ai.health.settings import HealthSettings

    boot_id = read_boot_id(HealthSettings.from_config(ctx.config).boot_id_file)
    HealthStore(ctx.spool_dir).save_last(boot_id, checked_at, health)


@pytest.fixture
def no_allreduce(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any all-reduce started from here is a test failure."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the Prolog started an all-reduce")

    monkeypatch.setattr(slurm_ai.health.launcher, "launch_local", refuse)


def prolog_health(ctx: HookContext) -> dict[str, Any]:
    out = prolog_step(ctx)
    assert out is not None
    json.dumps(out)
    return dict(out["health"])


def test_a_fresh_cached_verdict_stands_for_the_job_without_an_all_reduce(
    tmp_path: Path, no_allreduce: None
) -> None:
    ctx = context(tmp_path, {})
    store_last(ctx, age_s=600)
    started = time.perf_counter()
    health = prolog_health(ctx)
    assert time.perf_counter() - started < 5
    assert health["verdict"] == "pass" and health["cached"] is True
    assert health["busbw_gbps"] == 402.5 and health["backend"] == "nccl"
    assert health["device"] == "gpu"  # what it ran on: the report keys busbw by it
    assert health["provenance"]["source"] == "cached"
    assert 599 <= health["provenance"]["age_s"] <= 660
    assert ctx.drain_reasons == []


@pytest.mark.parametrize(
    ("age_s", "verdict", "why"),
    [
        (None, None, "no full check on this node yet"),
        (30 * 3600, "pass", "the last full check is 30.0 h old (max_age_hours 24)"),
        (60, "fail", "the last full check was fail: re-check pending"),
        (60, "unchecked", "the last full check was unchecked: re-check pending"),
        (-3600, "pass", "the stored verdict is from the future (clock step)"),
    ],
)
def test_no_usable_verdict_is_unchecked_with_why(
    tmp_path: Path, no_allreduce: None, age_s: float | None, verdict: str | None, why: str
) -> None:
    ctx = context(tmp_path, {})
    if age_s is not None and verdict is not None:
        store_last(ctx, age_s, verdict)
    health = prolog_health(ctx)
    assert health["verdict"] == "unchecked" and health["cached"] is False
    assert health["provenance"] == {
        "source": "unchecked",
        "age_s": health["provenance"]["age_s"],
        "why": why,
    }
    assert {"check": "full-check", "verdict": "unchecked", "reason": why} in health["checks"]
    assert ctx.drain_reasons == []  # a stored fail never drains again from the cache


def test_disabled_or_filtered_is_skipped_and_says_unchecked(tmp_path: Path) -> None:
    health = prolog_health(context(tmp_path, {"enabled": False}))
    assert health["verdict"] == "skipped"
    assert health["provenance"] == {
        "source": "unchecked",
        "age_s": None,
        "why": "health check disabled ([health] enabled = false)",
    }


def test_an_internal_error_is_recorded_unchecked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import slurm_ai.health.policy as policy

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(policy, "decide", boom)
    health = prolog_health(context(tmp_path, {}))
    assert health["verdict"] == "error"
    assert health["provenance"] == {
        "source": "unchecked",
        "age_s": None,
        "why": "internal error: RuntimeError",
    }


@needs_mpi
def test_every_job_mode_is_fresh(tmp_path: Path) -> None:
    health = prolog_health(context(tmp_path, {"when": "every_job"}))
    assert health["verdict"] == "pass" and health["provenance"]["source"] == "fresh", health
    assert health["provenance"]["age_s"] == 0.0 and health["startup_s"] > 0


@needs_torch
def test_a_cold_start_over_budget_is_unchecked_not_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_AI_HEALTH_FAULT", "coldstart:1")
    ctx = context(tmp_path, {"when": "every_job", "backend": "gloo", "budget_s": 6})
    health = prolog_health(ctx)
    assert health["verdict"] == "unchecked"
    assert health["provenance"]["source"] == "unchecked"
    assert health["provenance"]["why"].startswith("unchecked: allreduce: cold start: ")
    assert ctx.drain_reasons == []


def epilog_context(
    tmp_path: Path, health: dict[str, Any], slurm: dict[str, Any] | None = None
) -> HookContext:
    ctx = context(tmp_path, health, slurm)
    ctx.prolog_state = {"health": {"health": {"verdict": "unchecked", "provenance": {"x": 1}}}}
    return ctx


@needs_mpi
def test_the_epilog_refreshes_a_stale_verdict_and_keeps_the_jobs_own(tmp_path: Path) -> None:
    ctx = epilog_context(tmp_path, {})
    store_last(ctx, age_s=30 * 3600)
    out = epilog_step(ctx)
    assert out is not None
    health = out["health"]
    assert health["verdict"] == "unchecked" and health["provenance"] == {"x": 1}
    refresh = health["refresh"]
    assert refresh["verdict"] == "pass" and refresh["startup_s"] > 0, refresh
    last = HealthStore(ctx.spool_dir).last()
    assert last is not None and time.time() - last["checked_at"] < 60
    assert last["health"]["backend"] == "mpi"
    # Now fresh: the next Epilog leaves it.
    assert epilog_step(ctx) is None


def test_the_epilog_does_nothing_when_fresh_or_not_background(
    tmp_path: Path, no_allreduce: None
) -> None:
    ctx = epilog_context(tmp_path, {})
    store_last(ctx, age_s=60)
    assert epilog_step(ctx) is None
    assert epilog_step(epilog_context(tmp_path, {"when": "every_job"})) is None
    assert epilog_step(epilog_context(tmp_path, {"epilog_refresh": False})) is None


def test_provenance_of_a_fresh_check_that_judged_nothing_is_unchecked() -> None:
    assert provenance("fresh", "pass", "", 0.0) == {"source": "fresh", "age_s": 0.0, "why": None}
    assert provenance("fresh", "timeout", "allreduce: hung", 0.0) == {
        "source": "unchecked",
        "age_s": 0.0,
        "why": "timeout: allreduce: hung",
    }


SHOW_NODE = (
    "NodeName=n1 Arch=x86_64 CoresPerSocket=1 CPUAlloc=0 State=IDLE+DRAIN ThreadsPerCore=1 "
    "Partitions=bare,gpu-bare BootTime=2026-11-29T04:00:00 "
    "Reason=slurm_ai: gemm: cuda:0 (NVIDIA H100): 380.0 TFLOP/s [root@2026-11-29T04:40:00]"
)


def test_node_state_from_scontrol_one_liner() -> None:
    state = parse_node_state(SHOW_NODE)
    assert state.states == {"IDLE", "DRAIN"} and state.drained and state.ours and not state.busy
    assert state.reason == "slurm_ai: gemm: cuda:0 (NVIDIA H100): 380.0 TFLOP/s"
    assert state.partitions == ("bare", "gpu-bare")
    assert state.partition_for({"gpu-bare": 1}) == "gpu-bare" and state.partition_for({}) == "bare"
    busy = parse_node_state("NodeName=n2 State=MIXED Partitions=bare")
    assert busy.busy and not busy.drained and busy.reason == ""
    nhc = parse_node_state("NodeName=n2 State=IDLE+DRAIN Reason=NHC: check_fs_mount [root@x]")
    assert nhc.drained and not nhc.ours


@pytest.mark.parametrize(
    ("verdict", "states", "reason", "auto_resume", "action"),
    [
        ("fail", {"IDLE"}, "", True, "drain"),
        ("fail", {"IDLE", "DRAIN"}, "NHC: disk", True, None),  # never rewrite another's reason
        ("fail", {"IDLE", "DRAIN"}, "slurm_ai: xid: gpu7", True, None),
        ("pass", {"IDLE", "DRAIN"}, "slurm_ai: allreduce-busbw: low", True, "resume"),
        ("warn", {"IDLE", "DRAIN"}, "slurm_ai: allreduce-busbw: low", True, "resume"),
        ("pass", {"IDLE", "DRAIN"}, "slurm_ai: allreduce-busbw: low", False, None),
        ("pass", {"IDLE", "DRAIN"}, "admin: PSU", True, None),
        ("pass", {"IDLE", "DRAIN"}, "NHC: check_fs_mount", True, None),
        ("unchecked", {"IDLE", "DRAIN"}, "slurm_ai: gemm: slow", True, None),
        ("timeout", {"IDLE", "DRAIN"}, "slurm_ai: gemm: slow", True, None),
        ("error", {"IDLE"}, "", True, None),
        ("pass", {"IDLE"}, "", True, None),
        # Someone else's node: an admin's DOWN or FAIL, maintenance, a reboot.
        ("fail", {"DOWN", "NOT_RESPONDING"}, "bad PSU, RMA 4711", True, None),
        ("fail", {"IDLE", "FAIL"}, "flaky IB", True, None),
        ("fail", {"IDLE", "MAINT", "RESERVED"}, "", True, None),
        ("fail", {"IDLE", "REBOOT_REQUESTED"}, "", True, None),
        ("fail", {"IDLE"}, "admin: watch this one", True, None),  # a reason of another's
        # slurmctld's own reasons are nobody's decision: a node back from a crash is
        # drained by its boot-time check (it must not take jobs broken).
        ("fail", {"DOWN", "NOT_RESPONDING"}, "Not responding", True, "drain"),
        ("fail", {"DOWN"}, "Node unexpectedly rebooted", True, "drain"),
        ("fail", {"UNKNOWN"}, "", True, "drain"),
        # Ours, but down or an XID's: never resumed by us.
        ("pass", {"DOWN", "DRAIN"}, "slurm_ai: gemm: slow", True, None),
        ("pass", {"IDLE", "DRAIN"}, "slurm_ai: xid: gpu7 (79)", True, None),
        ("pass", {"IDLE", "DRAIN", "MAINT"}, "slurm_ai: gemm: slow", True, None),
    ],
)
def test_what_the_health_check_program_does(
    verdict: str, states: set[str], reason: str, auto_resume: bool, action: str | None
) -> None:
    assert node_action(verdict, NodeState(frozenset(states), reason), auto_resume) == action
    # A state scontrol could not give: no action, whatever the verdict.
    unknown = NodeState(frozenset(states), reason, known=False)
    assert node_action(verdict, unknown, auto_resume) is None


def test_a_verdict_from_before_the_last_boot_is_not_reused(tmp_path: Path) -> None:
    from slurm_ai.health.policy import latest
    from slurm_ai.health.settings import HealthSettings

    settings = HealthSettings()
    now = time.time()
    last = {"boot_id": "boot-a", "checked_at": now - 60, "health": {"verdict": "pass"}}
    assert latest(settings, last, now, "boot-a").usable
    rebooted = latest(settings, last, now, "boot-b")
    assert not rebooted.usable and "rebooted" in rebooted.why
    assert latest(settings, last, now, None).usable  # no boot id to compare: by age alone


def test_a_check_of_some_gpus_stands_only_for_jobs_on_those() -> None:
    from slurm_ai.health.policy import latest
    from slurm_ai.health.settings import HealthSettings

    settings, now = HealthSettings(), time.time()
    some = {"checked_at": now - 60, "health": {"verdict": "pass", "gpus": [0, 1]}}
    assert latest(settings, some, now, job_gpus=[1]).usable
    assert latest(settings, some, now, job_gpus=[]).usable  # a job with no GPU
    other = latest(settings, some, now, job_gpus=[1, 5])
    assert not other.usable and other.why == "the last full check covered GPUs 0,1, not 1,5"
    assert not latest(settings, some, now, job_gpus=None).usable  # unknown: all count
    whole = {"checked_at": now - 60, "health": {"verdict": "pass", "gpus": None}}
    assert latest(settings, whole, now, job_gpus=[7]).usable


def test_the_program_keeps_within_slurmds_limit() -> None:
    from slurm_ai.health import program

    elapsed = program.seconds_since_start()
    assert 0 < elapsed < 24 * 3600  # this process started a moment ago, /proc says
    assert program.time_left(0.5) == pytest.approx(60 - 12 - 0.5)
    assert program.time_left(40.0) < program.MIN_BUDGET_S  # NHC took 40 s: no check


def test_fragments_match_the_record_schema(tmp_path: Path, no_allreduce: None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs/record.schema.json").read_text()
    )
    node_schema = {"$defs": schema["$defs"], "$ref": "#/$defs/node"}
    ctx = context(tmp_path, {})
    unchecked = prolog_health(ctx)
    store_last(ctx, age_s=60)
    cached = prolog_health(ctx)
    refreshed = {**cached, "refresh": {"verdict": "pass", "reason": "", "checked_at": 1.0}}
    for health in (unchecked, cached, refreshed):
        jsonschema.validate({"health": health}, node_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"health": {**cached, "provenance": {"source": "guess"}}}, node_schema)


def test_the_background_prolog_imports_no_check_machinery(tmp_path: Path) -> None:
    """The quick path stays light: no node check, launcher, backends, torch or MPI."""
    import subprocess
    import sys

    ctx = context(tmp_path, {})
    store_last(ctx, age_s=60)
    setup = tmp_path / "setup.json"
    setup.write_text(json.dumps({"spool": str(ctx.spool_dir), "health": CHECK, "env": ENV}))
    code = (
        "import json, logging, sys\n"
        "from pathlib import Path\n"
        "from slurm_ai.config import Config\n"
        "from slurm_ai.health.hook import prolog_step\n"
        "from slurm_ai.hooks.context import HookContext\n"
        "from slurm_ai.slurmenv import JobEnv\n"
        "s = json.loads(Path(sys.argv[1]).read_text())\n"
        "config = Config(None, {'spool': {'dir': s['spool']}, 'health': s['health']})\n"
        "ctx = HookContext(config, JobEnv.from_environ(s['env']), 'n1', Path(s['spool']),\n"
        "                  logging.getLogger('t'))\n"
        "out = prolog_step(ctx)\n"
        "heavy = ['slurm_ai.health.node', 'slurm_ai.health.launcher', 'slurm_ai.health.backends',\n"
        "         'slurm_ai.health.thresholds', 'torch', 'mpi4py', 'numpy']\n"
        "print(json.dumps([out['health']['provenance']['source'],\n"
        "                  [m for m in heavy if m in sys.modules]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(setup)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == ["cached", []]


def test_the_job_view_says_what_the_verdict_rested_on() -> None:
    from slurm_ai.record import encode_record
    from slurm_ai.report.jobview import render_job
    from slurm_ai.report.prices import load_prices

    def view(provenance: dict[str, Any]) -> str:
        health = {"verdict": "pass", "busbw_gbps": 400.0, "provenance": provenance}
        record = {"v": 1, "job": {"id": "7"}, "nodes": {"n1": {"health": health}}}
        row = {"JobIDRaw": "7", "Partition": "bare", "NNodes": "1", "ElapsedRaw": "60",
               "State": "COMPLETED", "AdminComment": encode_record(record)}  # fmt: skip
        return render_job(row, load_prices(Config(None, {})))

    assert "health from  cached, 12 min old\n" in view({"source": "cached", "age_s": 720.0})
    assert "health from  cached, 30.0 h old\n" in view({"source": "cached", "age_s": 108000.0})
    why = "no full check on this node yet"
    assert f"health from  unchecked: {why}\n" in view({"source": "unchecked", "why": why})
    assert "health from" not in view({"source": 3})


def test_the_epilog_never_measures_gpus_its_job_did_not_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_allreduce: None, recording: Any
) -> None:
    """A CPU job's Epilog on a GPU node: other jobs may be using the GPUs."""
    import slurm_ai.nvml

    real_open = slurm_ai.nvml.open_nvml
    monkeypatch.setattr(
        slurm_ai.nvml,
        "open_nvml",
        lambda recorded=None, timeout=5.0: real_open(recording("ok"), timeout),
    )
    ctx = epilog_context(tmp_path, {})  # no SLURM_JOB_GPUS; the node shows 8 GPUs
    assert epilog_step(ctx) is None  # stale (absent) verdict, and still no check
    assert HealthStore(ctx.spool_dir).last() is None


def fake_scontrol(tmp_path: Path, show: str) -> tuple[Path, Path]:
    """An scontrol that logs its argv and answers `-o show node` with `show`."""
    log = tmp_path / "scontrol.log"
    path = tmp_path / "scontrol"
    path.write_text(
        f'#!/bin/sh\necho "$@" >> {log}\nif [ "$1" = "-o" ]; then echo {shlex.quote(show)}; fi\n'
    )
    path.chmod(0o755)
    return path, log


@pytest.mark.parametrize(
    ("show", "drained"),
    [
        ("NodeName=n1 State=MIXED+DRAIN Partitions=bare Reason=RMA 4711 bad PSU [admin@x]", False),
        ("NodeName=n1 State=DOWN+NOT_RESPONDING Partitions=bare Reason=bad PSU [admin@x]", False),
        ("NodeName=n1 State=IDLE Partitions=bare", True),
    ],
    ids=["admin-drain", "admin-down", "free"],
)
def test_the_epilog_refresh_never_overwrites_another_s_drain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, show: str, drained: bool
) -> None:
    import slurm_ai.health.fullcheck as fullcheck
    from slurm_ai.health.node import HealthReport
    from slurm_ai.health.verdict import CheckResult, Verdict

    scontrol, log = fake_scontrol(tmp_path, show)
    ctx = epilog_context(tmp_path, {}, {"scontrol": str(scontrol)})
    store_last(ctx, age_s=30 * 3600)  # stale: the Epilog refreshes
    failed = HealthReport(
        Verdict.FAIL, "gemm: slow", checks=[CheckResult("gemm", Verdict.FAIL, "gpu0 slow")]
    )
    monkeypatch.setattr(fullcheck, "run_node_check", lambda *a, **k: failed)
    epilog_step(ctx)
    calls = log.read_text().splitlines()
    assert calls[0].startswith("-o show node n1")
    updates = [c for c in calls if c.startswith("update")]
    if drained:
        assert updates == ["update nodename=n1 state=drain reason=slurm_ai: gemm: gpu0 slow"]
    else:
        assert updates == []  # the admin's reason stands
