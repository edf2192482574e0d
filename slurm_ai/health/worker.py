"""One rank of the all-reduce check.

Node scope: the launcher starts `python -m slurm_ai.health.worker --spec JSON`
once per rank (torch: rank and rendezvous in SLURM_AI_HEALTH_RANK/_WORLD/
_LOCAL_RANK/_INIT; mpi: under mpirun). Job scope: the CLI calls `run_rank` in
its own process under srun.

Node-scope workers report through files in the launcher's `--report-dir`
(rankfiles.py: ready, rank 0's result, errors), not on stdout, which mpirun
interleaves. A worker exits 0 when it measured (the verdict is judged by the
caller), 3 on an error.

Test-only fault injection (never set it in production): SLURM_AI_HEALTH_FAULT=
"corrupt:R" makes rank R corrupt its input buffer, "hang:R" makes rank R hang
before the first collective, "crash:R" makes it exit at once, "coldstart:R"
(torch, node scope) makes rank R never finish its start-up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from slurm_ai.health import rankfiles
from slurm_ai.health.measure import FAULT_ENV, SweepResult, SweepSpec, fault_for_rank, run_sweep
from slurm_ai.health.phases import PhaseReporter, file_writer
from slurm_ai.health.rendezvous import Rendezvous
from slurm_ai.proc import die_with_parent

LAUNCHER_ENV = "SLURM_AI_HEALTH_LAUNCHER"  # the launcher's pid


def make_collective(spec: SweepSpec, rdv: Rendezvous | None, timeout_s: float) -> Any:
    """The Collective of this rank; imports only the chosen backend's library."""
    if spec.backend == "mpi":
        from slurm_ai.health.backends.mpi_backend import MpiCollective

        use_gpu = os.environ.get("SLURM_AI_HEALTH_MPI_GPU", "") == "1"
        return MpiCollective(use_gpu=use_gpu, local_rank=rdv.local_rank if rdv else 0)
    if rdv is None:
        raise ValueError(f"backend {spec.backend} needs a rendezvous")
    from slurm_ai.health.backends.torch_backend import TorchCollective

    return TorchCollective(
        spec.backend, rdv.rank, rdv.world, rdv.init_method, rdv.local_rank, timeout_s
    )


def apply_fault(spec: SweepSpec, rank: int) -> None:
    fault = fault_for_rank(spec.fault, rank)
    if fault == "hang":
        while True:  # a stuck rank: only the launcher's hard timeout ends it
            time.sleep(3600)
    if fault == "crash":
        os._exit(9)


def run_rank(spec: SweepSpec, rdv: Rendezvous | None, timeout_s: float) -> tuple[int, SweepResult]:
    """Run this rank's sweep; returns (rank, result)."""
    rank, result, _ = run_rank_sharing(spec, rdv, timeout_s, None)
    return rank, result


def run_rank_sharing(
    spec: SweepSpec,
    rdv: Rendezvous | None,
    timeout_s: float,
    share: Callable[[int, SweepResult], str] | None,
    on_ready: Callable[[int], None] | None = None,
    reporter: PhaseReporter | None = None,
) -> tuple[int, SweepResult, list[str]]:
    """Run this rank's sweep, then gather `share(rank, result)` of every rank
    (job scope: each node's GPU checks, rank 0's calibration).

    Start-up (importing the backend, the communicator, the CUDA context) is
    timed apart from the measurement: on a fresh GPU node it is most of the
    check (import torch + CUDA init took 4.6 s on an H200, the sweep < 1 s).
    """
    began = time.perf_counter()
    if reporter is not None:
        reporter.phase("startup", rdv.rank if rdv is not None else reporter.rank)
    if rdv is not None and fault_for_rank(spec.fault, rdv.rank) == "coldstart":
        time.sleep(3600)  # a start-up that never ends: only the launcher's timeout stops it
    coll = make_collective(spec, rdv, timeout_s)
    try:
        startup = time.perf_counter() - began
        if on_ready is not None:
            on_ready(coll.rank)
        apply_fault(spec, coll.rank)
        on_phase = None
        if reporter is not None:
            reporter.rank = coll.rank
            on_phase = reporter.phase
        result = run_sweep(coll, spec, on_phase)
        if reporter is not None:
            reporter.phase("report")
        if spec.bench is not None:
            result.local = [json.loads(t) for t in coll.allgather_text(_bench(spec, coll))]
        result.startup_s = round(coll.max_float(startup), 4)
        result.measure_s = round(coll.max_float(time.perf_counter() - began - startup), 4)
        shared = coll.allgather_text(share(coll.rank, result)) if share is not None else []
        return coll.rank, result, shared
    finally:
        coll.close()


def _bench(spec: SweepSpec, coll: Any) -> str:
    """This rank's GPU-local benchmark as JSON; an error is reported, not raised
    (the all-reduce result stands on its own)."""
    device = str(getattr(coll, "device", "cpu"))
    try:
        if spec.backend == "mpi":
            raise RuntimeError("the GPU-local check needs a torch backend (gloo or nccl)")
        import torch

        from slurm_ai.health.backends.torch_bench import measure
        from slurm_ai.health.gpubench import BenchSpec

        return json.dumps(measure(BenchSpec.from_json(spec.bench or {}), torch.device(device)))
    except Exception as exc:
        return json.dumps({"device": device, "error": f"{type(exc).__name__}: {exc}"[:200]})


def rendezvous_from_env(env: Mapping[str, str]) -> Rendezvous | None:
    if "SLURM_AI_HEALTH_INIT" not in env:
        return None
    init = env["SLURM_AI_HEALTH_INIT"]
    host, _, port = init.removeprefix("tcp://").rpartition(":")
    return Rendezvous(
        rank=int(env["SLURM_AI_HEALTH_RANK"]),
        world=int(env["SLURM_AI_HEALTH_WORLD"]),
        local_rank=int(env.get("SLURM_AI_HEALTH_LOCAL_RANK", "0")),
        master_addr=host.strip("[]"),
        master_port=int(port),
    )


def _die_with_launcher(launcher: str) -> None:
    """End with the launcher: slurmd kills a Prolog that runs too long by its
    process group, and the ranks run in a group of their own (launcher.py).
    Under mpirun the parent is mpirun, which dies with the launcher; the
    launcher's pid covers the start-up window in which it died already."""
    die_with_parent()
    if launcher.isdecimal():
        try:
            os.kill(int(launcher), 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:
            pass  # alive, another user's (a pid reused): nothing better to know


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slurm_ai.health.worker")
    parser.add_argument("--spec", required=True, help="SweepSpec as JSON")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--report-dir", required=True, help="the launcher's directory (rankfiles)")
    args = parser.parse_args(argv)
    reports = args.report_dir
    _die_with_launcher(os.environ.get(LAUNCHER_ENV, ""))
    try:
        data = json.loads(args.spec)
        if not data.get("fault"):
            data["fault"] = os.environ.get(FAULT_ENV) or None
        spec = SweepSpec.from_json(data)
        rdv = rendezvous_from_env(os.environ)
        hint = os.environ.get("OMPI_COMM_WORLD_RANK", "")
        reporter = PhaseReporter(
            file_writer(reports, str(os.getpid())),
            rdv.rank if rdv is not None else (int(hint) if hint.isdecimal() else None),
            spec.fault,
        )
        rank, result, _ = run_rank_sharing(
            spec,
            rdv,
            args.timeout,
            None,
            on_ready=lambda rank: rankfiles.mark_ready(reports, rank),
            reporter=reporter,
        )
        if rank == 0:
            rankfiles.write_result(reports, json.dumps(result.to_json()))
    except Exception as exc:  # reported to the launcher; the verdict is "error"
        message = f"{type(exc).__name__}: {exc}"
        print(f"slurm_ai.health.worker: {message}", file=sys.stderr, flush=True)  # for a human
        with contextlib.suppress(OSError):  # the launcher still has the exit code and stderr
            rankfiles.write_error(reports, message)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
