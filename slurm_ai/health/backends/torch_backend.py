"""torch.distributed backend: NCCL on GPUs (timed with CUDA events), gloo on CPUs.

Importing this module imports torch (about 2.6 s on a small CPU machine): only
the worker of a torch run imports it.

all_reduce is in place, so the timed iterations run on a zeroed buffer (the
sum of zeros stays zero and cannot overflow however many iterations run); the
verified pass before them uses the pattern, as nccl-tests separates its
check from its timing.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import torch
import torch.distributed as dist

from slurm_ai.health.measure import CORRUPT_DELTA, CORRUPT_STRIDE, PATTERN_MOD


class TorchCollective:
    def __init__(
        self,
        backend: str,
        rank: int,
        world: int,
        init_method: str,
        local_rank: int = 0,
        timeout_s: float = 60.0,
    ) -> None:
        if backend not in ("gloo", "nccl"):
            raise ValueError(f"torch backend must be gloo or nccl, not {backend}")
        self.backend = backend
        self.rank, self.world = rank, world
        if backend == "nccl":
            if not torch.cuda.is_available():
                raise RuntimeError("nccl backend needs a CUDA GPU; none is visible")
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            self.device = f"cuda:{torch.cuda.current_device()}"
        else:
            self.device = "cpu"
        kwargs: dict[str, Any] = {}
        if backend == "nccl":
            kwargs["device_id"] = torch.device(self.device)
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=max(1.0, timeout_s)),
            **kwargs,
        )
        self._cuda = backend == "nccl"
        if self._cuda:
            # Create the CUDA context now, so start-up is timed as start-up.
            torch.zeros(1, device=self.device).add_(1)
            torch.cuda.synchronize()
        self.buf: Any = None
        self.expected: Any = None

    def _tile(self, values: list[int], count: int, dtype: str) -> Any:
        base = torch.tensor(values, dtype=getattr(torch, dtype), device=self.device)
        return base.repeat(count // len(values) + 1)[:count].contiguous()

    def _sync(self) -> None:
        if self._cuda:
            torch.cuda.synchronize()

    def prepare(self, count: int, dtype: str) -> None:
        self._count, self._dtype = count, dtype
        expected = [
            sum((j + 3 * r) % PATTERN_MOD + 1 for r in range(self.world))
            for j in range(PATTERN_MOD)
        ]
        self.expected = self._tile(expected, count, dtype)
        self.buf = torch.empty(count, dtype=getattr(torch, dtype), device=self.device)

    def fill(self, corrupt: bool) -> None:
        mine = [(j + 3 * self.rank) % PATTERN_MOD + 1 for j in range(PATTERN_MOD)]
        self.buf.copy_(self._tile(mine, self._count, self._dtype))
        if corrupt:
            self.buf[::CORRUPT_STRIDE] += CORRUPT_DELTA
        self._sync()

    def allreduce(self) -> None:
        dist.all_reduce(self.buf)
        self._sync()

    def count_wrong(self) -> int:
        return int((self.buf != self.expected).sum().item())

    def timed(self, iters: int) -> float:
        self.buf.zero_()
        self._sync()
        dist.barrier()
        self._sync()
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iters):
                dist.all_reduce(self.buf)
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3 / iters
        began = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(self.buf)
        return (time.perf_counter() - began) / iters

    def _reduce(self, value: float, dtype: Any, op: Any) -> float:
        tensor = torch.tensor([value], dtype=dtype, device=self.device)
        dist.all_reduce(tensor, op=op)
        return float(tensor.item())

    def sum_int(self, value: int) -> int:
        return int(self._reduce(value, torch.int64, dist.ReduceOp.SUM))

    def max_int(self, value: int) -> int:
        return int(self._reduce(value, torch.int64, dist.ReduceOp.MAX))

    def max_float(self, value: float) -> float:
        return self._reduce(value, torch.float64, dist.ReduceOp.MAX)

    def mean_float(self, value: float) -> float:
        return self._reduce(value, torch.float64, dist.ReduceOp.SUM) / self.world

    def allgather_text(self, text: str) -> list[str]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, str(text))
        return [str(t) for t in out]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
