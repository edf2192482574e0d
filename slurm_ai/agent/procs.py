"""Find each job's processes on this node and measure their CPU time and RSS.

A process belongs to job N when
- its cgroup path names the job (`.../job_N/...`, proctrack/cgroup on cgroup
  v1 or v2): authoritative, and one node per machine, so no node check; or
- failing that, its environment has SLURM_JOB_ID=N (read from
  /proc/<pid>/environ, which needs root for other users' processes) and
  SLURMD_NODENAME is this node. The node check matters where several slurmd
  share one machine (the local test cluster): every agent sees every process.

The job's uid is stored with each sample: a user who fakes SLURM_JOB_ID in
their own processes lands in a different (job, uid) row, and the Epilog
counts only the job owner's rows.

Reads of environ and cgroup go through `Sysfs` (so tests can use a fake
/proc tree). CPU time and RSS come from psutil on the live host (one
`oneshot()` per process, Process objects kept between ticks) and from
/proc/<pid>/stat and statm under a non-live root.

Cost control: classification (environ, cgroup) happens once per process;
the cache entry is dropped when the pid disappears from /proc. Only job
processes are measured each tick. A "not a job process" answer is asked again
for RECHECK_S seconds: slurmstepd forks a task, runs the TaskProlog, then
execs, and before the exec the child still has slurmstepd's environment.

CPU time: the tracker keeps each job process's last seen CPU time (user +
system, without reaped children, which would count twice), so a tick stores
the CPU seconds used since the previous tick. A process seen for the first
time contributes all its CPU time (it was created inside the job). The
tracker's state is saved with every tick, so a restarted agent does not count
the same CPU seconds again. CPU used by a process that started and ended
between two ticks is not seen.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from slurm_ai.agent.samples import JobSample
from slurm_ai.sysfs import Sysfs

_CGROUP_JOB = re.compile(r"/job_(\d+)(?:/|$)")
_JOB_ID = re.compile(r"^\d{1,12}$")
_MAX_ENVIRON_BYTES = 256 * 1024
RECHECK_S = 15.0

try:  # psutil is a dependency of the agent; a missing one degrades to /proc parsing
    import psutil
except ImportError:  # pragma: no cover - exercised on hosts without psutil
    psutil = None


@dataclass
class _Known:
    """A classified process: job (None: not a job process of this node)."""

    job: str | None
    recheck_until: float = 0.0  # a "not a job" answer is re-checked until then
    uid: int = -1
    ctime: float = 0.0
    cpus: frozenset[int] = frozenset()
    proc: Any = None  # psutil.Process, kept so create_time is read once


def parse_environ(data: bytes) -> dict[str, str]:
    """NUL-separated NAME=value pairs -> dict (garbage skipped, never raised)."""
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def job_from_cgroup(text: str | None) -> str | None:
    """'0::/system.slice/slurmstepd.scope/job_42/step_0/user/task_0' -> '42'."""
    if not text:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        match = _CGROUP_JOB.search(path)
        if match:
            return match.group(1)
    return None


def job_from_environ(env: dict[str, str], node: str) -> str | None:
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job or not _JOB_ID.match(job):
        return None
    if env.get("SLURMD_NODENAME", node) != node:
        return None  # a process of the same job on another node of this machine
    return job


class JobProcessScanner:
    """Classifies processes into jobs and measures them each tick."""

    def __init__(self, sysfs: Sysfs, node: str, *, use_psutil: bool | None = None) -> None:
        self.sysfs = sysfs
        self.node = node
        self.use_psutil = (
            (psutil is not None and sysfs.is_live) if use_psutil is None else use_psutil
        )
        self._known: dict[int, _Known] = {}
        # (pid, ctime) -> (job, uid, last cpu seconds)
        self._cpu: dict[tuple[int, float], tuple[str, int, float]] = {}
        self._clk_tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        self._boot_time: float | None = None

    # -- state across restarts ---------------------------------------------

    def load_state(self, rows: list[tuple[int, float, str, int, float]]) -> None:
        for pid, ctime, job, uid, cpu in rows:
            self._cpu[(pid, ctime)] = (job, uid, cpu)

    def state(self) -> list[tuple[int, float, str, int, float]]:
        return [(pid, ctime, job, uid, cpu) for (pid, ctime), (job, uid, cpu) in self._cpu.items()]

    # -- classification -----------------------------------------------------

    def _pids(self) -> list[int]:
        return [int(name) for name in self.sysfs.listdir("/proc") if name.isdigit()]

    def _classify(self, pid: int) -> _Known:
        base = f"/proc/{pid}"
        job = job_from_cgroup(self.sysfs.read_text(f"{base}/cgroup"))
        if job is None:
            try:
                data = self.sysfs.path(f"{base}/environ").read_bytes()[:_MAX_ENVIRON_BYTES]
            except OSError:
                data = b""  # a kernel thread, a vanished process, or not root
            job = job_from_environ(parse_environ(data), self.node)
        if job is None:
            return _Known(job=None)
        known = _Known(job=job)
        try:
            if self.use_psutil:
                proc = psutil.Process(pid)
                known.proc = proc
                known.ctime = proc.create_time()
                known.uid = proc.uids().real
                known.cpus = frozenset(proc.cpu_affinity() or [])
            else:
                known.ctime = self._stat_ctime(pid)
                known.uid = self._status_uid(pid)
                known.cpus = frozenset(self._status_cpus(pid))
        except Exception:  # gone, or unreadable: not measured this time
            return _Known(job=None)
        return known

    # -- measuring ----------------------------------------------------------

    def scan(self) -> list[JobSample]:
        """One tick: the jobs on this node with their CPU delta and RSS."""
        pids = self._pids()
        now = time.monotonic()
        alive = set(pids)
        for pid in [p for p in self._known if p not in alive]:
            del self._known[pid]
        jobs: dict[tuple[str, int], JobSample] = {}
        cpus: dict[tuple[str, int], set[int]] = {}
        seen_keys: set[tuple[int, float]] = set()
        for pid in pids:
            known = self._known.get(pid)
            if known is None or (known.job is None and now < known.recheck_until):
                until = known.recheck_until if known is not None else now + RECHECK_S
                known = self._classify(pid)
                known.recheck_until = until
                self._known[pid] = known
            if known.job is None:
                continue
            usage = self._usage(pid, known)
            if usage is None:
                self._known.pop(pid, None)
                continue
            cpu_s, rss = usage
            key = (pid, known.ctime)
            seen_keys.add(key)
            previous = self._cpu.get(key)
            delta = cpu_s - previous[2] if previous is not None else cpu_s
            self._cpu[key] = (known.job, known.uid, cpu_s)
            sample = jobs.setdefault(
                (known.job, known.uid), JobSample(job=known.job, uid=known.uid)
            )
            sample.cpu_delta_s += max(delta, 0.0)
            sample.rss_bytes += rss
            sample.nproc += 1
            cpus.setdefault((known.job, known.uid), set()).update(known.cpus)
        # Forget processes that ended; their CPU time is already counted.
        for key in [k for k in self._cpu if k not in seen_keys]:
            del self._cpu[key]
        for job_key, sample in jobs.items():
            sample.ncpus = len(cpus.get(job_key, ()))
            sample.cpu_delta_s = round(sample.cpu_delta_s, 3)
        return list(jobs.values())

    def _usage(self, pid: int, known: _Known) -> tuple[float, int] | None:
        try:
            if self.use_psutil:
                proc = known.proc
                with proc.oneshot():
                    if not proc.is_running():  # pid reused since classification
                        return None
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                return float(times.user + times.system), int(rss)
            return self._stat_usage(pid, known)
        except Exception:  # NoSuchProcess, AccessDenied, parse errors
            return None

    # -- /proc parsing for non-live roots (captured trees, no psutil) -------

    def _stat_fields(self, pid: int) -> list[str]:
        raw = self.sysfs.read_text(f"/proc/{pid}/stat")
        if not raw or ")" not in raw:
            raise ValueError("no stat")
        # The command name may contain spaces and ')': split after the last ')'.
        return raw[raw.rindex(")") + 2 :].split()

    def _stat_ctime(self, pid: int) -> float:
        fields = self._stat_fields(pid)
        return int(fields[19]) / self._clk_tck  # starttime, field 22 overall

    def _stat_usage(self, pid: int, known: _Known) -> tuple[float, int] | None:
        fields = self._stat_fields(pid)
        if int(fields[19]) / self._clk_tck != known.ctime:
            return None
        cpu = (int(fields[11]) + int(fields[12])) / self._clk_tck  # utime, stime
        statm = (self.sysfs.read_text(f"/proc/{pid}/statm") or "0 0").split()
        return cpu, int(statm[1]) * self._page

    def _status_value(self, pid: int, name: str) -> str:
        for line in (self.sysfs.read_text(f"/proc/{pid}/status") or "").splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        return ""

    def _status_uid(self, pid: int) -> int:
        value = self._status_value(pid, "Uid").split()
        return int(value[0]) if value else -1

    def _status_cpus(self, pid: int) -> list[int]:
        from slurm_ai.sysfs import parse_cpu_list

        try:
            return parse_cpu_list(self._status_value(pid, "Cpus_allowed_list") or None)
        except ValueError:
            return []
