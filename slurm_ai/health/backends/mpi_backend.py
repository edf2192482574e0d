"""mpi4py backend: numpy buffers, MPI_Allreduce with buffer-protocol objects.

Buffers are host (numpy) memory unless the MPI library says it is CUDA-aware
and a GPU is wanted; then torch CUDA tensors are passed (mpi4py takes
`__cuda_array_interface__`). The upper-case mpi4py calls (Allreduce, not
allreduce) move raw buffers without pickling, so the Python overhead per call
is a few microseconds and large sizes run at the speed of the C library.
"""

from __future__ import annotations

from typing import Any

from slurm_ai.health.measure import CORRUPT_DELTA, CORRUPT_STRIDE, PATTERN_MOD

_NUMPY_DTYPES = {"float32": "float32", "float64": "float64", "int32": "int32"}


def cuda_aware() -> bool:
    """Does this MPI say it can take GPU buffers? (MPIX_Query_cuda_support)"""
    from mpi4py import MPI

    query = getattr(MPI, "Query_cuda_support", None)
    try:
        return bool(query()) if query is not None else False
    except Exception:  # an MPI without the extension raises NotImplementedError
        return False


class MpiCollective:
    backend = "mpi"

    def __init__(self, comm: Any = None, use_gpu: bool = False, local_rank: int = 0) -> None:
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = int(self.comm.Get_rank())
        self.world = int(self.comm.Get_size())
        self._gpu = use_gpu and cuda_aware()
        if self._gpu:
            import torch  # only on the CUDA-aware GPU path

            self._torch = torch
            torch.cuda.set_device(local_rank % max(1, torch.cuda.device_count()))
            self.device = f"cuda:{torch.cuda.current_device()}"
        else:
            import numpy

            self._np = numpy
            self.device = "cpu"
        self.send: Any = None
        self.recv: Any = None
        self.expected: Any = None

    def _tile(self, values: list[int], count: int, dtype: str) -> Any:
        if self._gpu:
            torch = self._torch
            base = torch.tensor(values, dtype=getattr(torch, dtype), device=self.device)
            return base.repeat(count // len(values) + 1)[:count].contiguous()
        np = self._np
        return np.resize(np.asarray(values, dtype=_NUMPY_DTYPES[dtype]), count)

    def prepare(self, count: int, dtype: str) -> None:
        if dtype not in _NUMPY_DTYPES:
            raise ValueError(f"the mpi backend supports {', '.join(_NUMPY_DTYPES)}, not {dtype}")
        self._count, self._dtype = count, dtype
        # The pattern has period PATTERN_MOD: tile one period instead of an arange.
        expected = [
            sum((j + 3 * r) % PATTERN_MOD + 1 for r in range(self.world))
            for j in range(PATTERN_MOD)
        ]
        self.expected = self._tile(expected, count, dtype)
        self.send = self._tile([1] * PATTERN_MOD, count, dtype)
        self.recv = self._tile([0] * PATTERN_MOD, count, dtype)

    def fill(self, corrupt: bool) -> None:
        mine = [(j + 3 * self.rank) % PATTERN_MOD + 1 for j in range(PATTERN_MOD)]
        self.send[:] = self._tile(mine, self._count, self._dtype)
        if corrupt:
            self.send[::CORRUPT_STRIDE] += CORRUPT_DELTA
        self._sync()

    def _sync(self) -> None:
        if self._gpu:
            self._torch.cuda.synchronize()

    def allreduce(self) -> None:
        self.comm.Allreduce(self.send, self.recv, op=self._mpi.SUM)
        self._sync()

    def count_wrong(self) -> int:
        return int((self.recv != self.expected).sum())

    def timed(self, iters: int) -> float:
        allreduce, send, recv, op = self.comm.Allreduce, self.send, self.recv, self._mpi.SUM
        self._sync()
        self.comm.Barrier()
        start = self._mpi.Wtime()
        for _ in range(iters):
            allreduce(send, recv, op=op)
        self._sync()
        return float(self._mpi.Wtime() - start) / iters

    def sum_int(self, value: int) -> int:
        return int(self.comm.allreduce(int(value), op=self._mpi.SUM))

    def max_int(self, value: int) -> int:
        return int(self.comm.allreduce(int(value), op=self._mpi.MAX))

    def max_float(self, value: float) -> float:
        return float(self.comm.allreduce(float(value), op=self._mpi.MAX))

    def mean_float(self, value: float) -> float:
        return float(self.comm.allreduce(float(value), op=self._mpi.SUM)) / self.world

    def allgather_text(self, text: str) -> list[str]:
        return [str(t) for t in self.comm.allgather(str(text))]

    def close(self) -> None:
        """Nothing to tear down: mpi4py finalizes MPI at exit."""
