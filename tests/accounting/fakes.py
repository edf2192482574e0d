"""An in-memory accounting backend that counts calls and concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from slurm_ai.accounting.backend import JobRow, fold_like_sacctmgr
from slurm_ai.errors import AccountingError


class FakeBackend:
    name = "fake"

    def __init__(self, folds_case: bool = True, latency_s: float = 0.0) -> None:
        self.folds_case = folds_case
        self.latency_s = latency_s
        self.comments: dict[str, str] = {}
        self.down = False
        self.reads = 0
        self.writes = 0
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def _enter(self) -> None:
        if self.down:
            raise AccountingError("slurmdbd unreachable")
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(self.latency_s)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def read(self, job_ids: Sequence[str]) -> dict[str, JobRow]:
        self._enter()
        try:
            self.reads += 1
            return {
                j: JobRow(j, self.comments[j], submit=1, start=2, end=3, elapsed_s=1)
                for j in job_ids
                if j in self.comments
            }
        finally:
            self._leave()

    def write_admin_comment(self, job_id: str, text: str) -> None:
        self._enter()
        try:
            self.writes += 1
            self.comments[job_id] = fold_like_sacctmgr(text) if self.folds_case else text
        finally:
            self._leave()
