"""--scope node with real local ranks: mpi4py under mpirun and torch gloo.

Faults are injected with the test-only SLURM_AI_HEALTH_FAULT variable.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from health_helpers import needs_mpi, needs_torch

from slurm_ai.health.errors import HealthCheckError, HealthColdStart, HealthTimeout
from slurm_ai.health.launcher import launch_local, mpirun_env, parse_results, worker_env
from slurm_ai.health.measure import CORRUPT_STRIDE, SweepResult, SweepSpec
from slurm_ai.health.rankfiles import (
    DIR_PREFIX,
    STALE_AFTER_S,
    RankReports,
    mark_ready,
    read_reports,
    write_result,
)
from slurm_ai.proc import CommandResult

SIZES = [4096, 262144, 1048576]
BACKENDS = [pytest.param("mpi", marks=needs_mpi), pytest.param("gloo", marks=needs_torch)]


# Not SLURM_*: worker_env drops those, and the mark must reach the workers (it did not
# until session 4, so every "nothing left behind" check here found nothing to see).
MARK = "SAI_TEST_LAUNCH_MARK"


@pytest.fixture(autouse=True)
def launch_mark(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A value only this test's workers carry in their environment: other health
    checks on the machine (another cluster's Prolog, say) are not this test's."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK, mark)
    yield mark


def test_the_mark_reaches_the_workers() -> None:
    """workers_alive() can see this test's workers at all (else the checks below pass
    whatever is left running)."""
    assert worker_env(os.environ)[MARK] == os.environ[MARK]


def workers_alive() -> list[psutil.Process]:
    """This test's workers (mpirun, ranks) still running: found by the mark."""
    wanted = f"{MARK}={os.environ[MARK]}"
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "slurm_ai.health.worker" not in cmd or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            environ = proc.environ()
        except psutil.Error:
            continue
        if f"{MARK}={environ.get(MARK)}" == wanted:
            found.append(proc)
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_scope_passes_with_verified_sums(backend: str) -> None:
    result = launch_local(SweepSpec(sizes=SIZES, backend=backend, iters=3), 2, timeout=60)
    assert (result.backend, result.ranks, result.device) == (backend, 2, "cpu")
    assert [r.size_bytes for r in result.rows] == SIZES
    assert all(r.wrong == 0 and r.busbw_gbps > 0 and r.time_us > 0 for r in result.rows)
    assert all(r.busbw_gbps == pytest.approx(r.algbw_gbps) for r in result.rows)  # 2 ranks: x1


@pytest.mark.parametrize("backend", BACKENDS)
def test_corrupted_buffer_is_counted(backend: str) -> None:
    spec = SweepSpec(sizes=[4096, 1048576], backend=backend, iters=1, fault="corrupt:1")
    result = launch_local(spec, 2, timeout=60)
    per_rank = [-(-(size // 4) // CORRUPT_STRIDE) for size in (4096, 1048576)]
    # Every rank sees the same wrong sums; #wrong adds them up like nccl-tests.
    assert [r.wrong for r in result.rows] == [2 * n for n in per_rank]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hung_worker_times_out_and_leaves_nothing(backend: str) -> None:
    spec = SweepSpec(sizes=[4096], backend=backend, fault="hang:1")
    # Long enough for both ranks to start (importing torch takes seconds here):
    # the hang comes after start-up, so this is a timeout, not a cold start.
    with pytest.raises(HealthTimeout, match="did not finish within 25 s after start-up"):
        launch_local(spec, 2, timeout=25)
    assert workers_alive() == []


LAUNCH_AND_WAIT = """
import sys
from slurm_ai.health.launcher import launch_local
from slurm_ai.health.measure import SweepSpec
launch_local(SweepSpec(sizes=[4096], backend=sys.argv[1], fault="hang:1"), 2, timeout=300)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_workers_die_with_a_launcher_killed_by_its_process_group(backend: str) -> None:
    """slurmd ends a Prolog or HealthCheckProgram that overruns by SIGKILL to its
    process group; the ranks run in a group of their own, so they used to live on
    (a hung one for ever). Now they die with the launcher."""
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCH_AND_WAIT, backend], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while _ready_ranks() < 2:
            assert launcher.poll() is None and time.monotonic() < deadline, "ranks never ready"
            time.sleep(0.2)
        os.killpg(launcher.pid, signal.SIGKILL)  # what slurmd does at its timeout
        launcher.wait()
        deadline = time.monotonic() + 10
        while workers_alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert workers_alive() == []
    finally:
        for proc in workers_alive():
            proc.kill()
        if launcher.poll() is None:
            launcher.kill()


def _ready_ranks() -> int:
    """Ranks of this test that reported ready (their --report-dir's ready files)."""
    ready = 0
    for proc in workers_alive():
        cmd = proc.cmdline()
        if "--report-dir" in cmd and cmd[0] != "mpirun" and "mpirun" not in cmd[0]:
            folder = Path(cmd[cmd.index("--report-dir") + 1])
            ready = max(ready, len(list(folder.glob("ready.*"))))
    return ready


@pytest.mark.parametrize("backend", BACKENDS)
def test_crashed_worker_is_an_error_fast(backend: str) -> None:
    spec = SweepSpec(sizes=[4096], backend=backend, fault="crash:1")
    with pytest.raises(HealthCheckError) as err:
        launch_local(spec, 2, timeout=60)
    assert not isinstance(err.value, HealthTimeout)
    assert workers_alive() == []


def test_missing_mpirun_is_an_error() -> None:
    spec = SweepSpec(sizes=[4096], backend="mpi")
    with pytest.raises(HealthCheckError, match="cannot start"):
        launch_local(spec, 2, timeout=10, mpirun="/nonexistent/mpirun")


def test_worker_env_drops_slurm_and_mpi_variables() -> None:
    env = worker_env(
        {
            "SLURM_JOB_ID": "3",
            "OMPI_COMM_WORLD_RANK": "0",
            "PMIX_RANK": "0",
            "PATH": "/usr/bin",
            "SLURM_AI_HEALTH_FAULT": "hang:0",
        }
    )
    assert (
        "SLURM_JOB_ID" not in env and "OMPI_COMM_WORLD_RANK" not in env and "PMIX_RANK" not in env
    )
    assert env["PATH"] == "/usr/bin" and env["SLURM_AI_HEALTH_FAULT"] == "hang:0"
    assert os.path.isdir(env["PYTHONPATH"].split(os.pathsep)[0] + "/slurm_ai")


def test_worker_env_gives_a_home_only_when_missing() -> None:
    # slurmd gives the Prolog no HOME; Open MPI 5 cannot start a rank without one.
    home = worker_env({"PATH": "/usr/bin"})["HOME"]
    assert os.path.isdir(home)
    assert home in ("/", pwd.getpwuid(os.geteuid()).pw_dir)
    assert worker_env({"HOME": "/var/empty-home"})["HOME"] == "/var/empty-home"
    # No ssh/rsh in a Prolog: Open MPI 4 launches local ranks itself (5 ignores the variable).
    assert mpirun_env(worker_env({}))["OMPI_MCA_plm"] == "isolated"


@pytest.mark.parametrize("backend", BACKENDS)
def test_node_scope_runs_from_a_prologs_bare_environment(backend: str) -> None:
    # What slurmd hands a Prolog: no PATH, no HOME, no TMPDIR (plus SLURM_* dropped anyway).
    bare = {"SLURM_JOB_ID": "7", "SLURM_SCRIPT_CONTEXT": "prolog_slurmd", MARK: os.environ[MARK]}
    result = launch_local(SweepSpec(sizes=[4096], backend=backend, iters=1), 2, timeout=60,
                          base_env=bare)  # fmt: skip
    assert result.ranks == 2 and result.rows[0].wrong == 0


def test_the_failing_worker_is_named_not_the_one_killed_after_it() -> None:
    # fail_fast kills rank 0 (-9, no output) once rank 1 failed: the reason is rank 1's.
    killed = CommandResult(["w"], -9, "", "")
    failed = CommandResult(["w"], 1, "", "")
    reports = RankReports(errors=["ImportError: libtorch_cpu.so"])
    with pytest.raises(HealthCheckError, match="gloo worker failed: ImportError: libtorch_cpu"):
        parse_results([killed, failed], reports, "gloo")
    # Without its report, the worker that exited by itself is named, not the one killed.
    failed = CommandResult(["w"], 1, "", "Segmentation fault\n")
    with pytest.raises(HealthCheckError, match="gloo worker exited 1: Segmentation fault"):
        parse_results([killed, failed], RankReports(), "gloo")


def test_a_result_glued_to_other_ranks_output_is_still_read(tmp_path: Path) -> None:
    """mpirun does not keep one rank's stdout line whole: once in about 150 runs on a
    loaded machine rank 1's "READY" newline came after rank 0's result line, which read
    as an error. Workers now report in files; their stdout is not parsed at all."""
    reports = tmp_path / "reports"
    reports.mkdir(mode=0o700)
    sweep = SweepResult(backend="mpi", ranks=2, device="cpu", rows=[])
    write_result(str(reports), json.dumps(sweep.to_json()))
    for rank in (0, 1):
        mark_ready(str(reports), rank)
    glued = 'READY\nREADYRESULT {"backend": "mpi"}\n\n'  # what mpirun printed then
    got = parse_results(
        [CommandResult(["mpirun"], 0, glued, "")], read_reports(str(reports)), "mpi"
    )
    assert got.ranks == 2 and read_reports(str(reports)).ready == 2
    # A worker that exited 0 without leaving a result is an error that says so.
    (reports / "result.json").unlink()
    with pytest.raises(HealthCheckError, match="exited 0 without a result"):
        parse_results([CommandResult(["mpirun"], 0, "", "")], read_reports(str(reports)), "mpi")


@needs_mpi
def test_workers_leave_no_report_directory_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temporary directory of this test's own: the cluster's Prologs make theirs in /tmp.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    launch_local(SweepSpec(sizes=[4096], backend="mpi", iters=1), 2, timeout=60)
    assert list(tmp_path.iterdir()) == []
    spec = SweepSpec(sizes=[4096], backend="mpi", fault="crash:1")
    with pytest.raises(HealthCheckError):
        launch_local(spec, 2, timeout=60)
    assert list(tmp_path.iterdir()) == []


@needs_torch
def test_a_start_up_that_does_not_fit_is_a_cold_start_not_a_timeout() -> None:
    """Rank 1 never finishes its start-up: nothing was measured, and the error
    says cold start (the node check turns it into "unchecked"), not a hang."""
    spec = SweepSpec(sizes=[4096], backend="gloo", fault="coldstart:1")
    with pytest.raises(HealthColdStart, match=r"cold start: [01] of 2 gloo ranks ready within 8 s"):
        launch_local(spec, 2, timeout=8)
    assert workers_alive() == []


@needs_torch
def test_a_killed_launchers_report_directory_is_removed_by_a_later_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slurmd's SIGKILL leaves the launcher no chance to remove its directory; the next
    launch removes those over an hour old, only real directories of this user."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    old = time.time() - 2 * STALE_AFTER_S

    def made(name: str, age: float | None = old) -> Path:
        path = tmp_path / name
        path.mkdir()
        (path / "ready.0").write_text("")
        if age is not None:
            os.utime(path, (age, age))
        return path

    stale = made(f"{DIR_PREFIX}4242-abc")
    fresh = made(f"{DIR_PREFIX}4243-abc", age=None)  # a launch running now
    other = made("not-ours-abc")
    target = made("target")
    link = tmp_path / f"{DIR_PREFIX}4244-link"
    link.symlink_to(target)
    os.utime(link, (old, old), follow_symlinks=False)
    planted = [stale.parent / f"{DIR_PREFIX}4245-file"]
    planted[0].write_text("x")
    os.utime(planted[0], (old, old))
    if os.geteuid() == 0:  # another user's directory (only root can make one here)
        foreign = made(f"{DIR_PREFIX}4246-abc")
        os.chown(foreign, 65534, 65534)
        os.utime(foreign, (old, old))
        planted.append(foreign)
    launch_local(SweepSpec(sizes=[4096], backend="gloo"), 1, timeout=60)
    assert not stale.exists()
    assert fresh.is_dir() and other.is_dir() and (target / "ready.0").exists()
    assert link.is_symlink() and all(p.exists() for p in planted)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [fresh.name, other.name, target.name, link.name, *(p.name for p in planted)]
    )  # and the launch removed its own directory
