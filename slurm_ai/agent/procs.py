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

/proc is found through `Sysfs` (so tests can use a fake /proc tree). On the
live host psutil gives a process's create time, uid and affinity (once); under
a captured root they come from /proc/<pid>/stat and status.

Cost control (profiled with bench/agent_cpu.py): classification (cgroup,
then environ) happens once per process; the cache entry is dropped when the
pid disappears from /proc. A "not a job process" answer is asked again, but
only at RECHECK_AGES seconds after the process was first seen (backing off,
none after 16 s): slurmstepd forks a task, runs the TaskProlog, then execs,
and before the exec the child still has slurmstepd's environment. Asking
again on every tick for 15 s made re-classification 80% of a tick. environ
is searched for the two variables as bytes, never parsed into a dict. Only
job processes are measured each tick, with ONE read of /proc/<pid>/stat each
(utime, stime, starttime for pid reuse, rss), whose path is built once per
process (the floor any sampler pays; psutil's oneshot read stat twice plus
statm). psutil gives the create time, uid and affinity, once per process.

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
from collections.abc import Callable
from dataclasses import dataclass

from slurm_ai.agent.samples import JobSample
from slurm_ai.sysfs import Sysfs, parse_cpu_list

_CGROUP_JOB = re.compile(r"/job_(\d+)(?:/|$)")
_JOB_ID = re.compile(r"^\d{1,12}$")
_MAX_ENVIRON_BYTES = 256 * 1024
# Ages (s since first seen) at which a non-job process is classified again.
RECHECK_AGES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
_JOB_KEYS = (b"SLURM_JOB_ID=", b"SLURM_JOBID=")
_NODE_KEY = b"SLURMD_NODENAME="

try:  # psutil is a dependency of the agent; a missing one degrades to /proc parsing
    import psutil
except ImportError:  # pragma: no cover - exercised on hosts without psutil
    psutil = None


@dataclass
class _Known:
    """A classified process: job (None: not a job process of this node)."""

    job: str | None
    first_seen: float = 0.0  # monotonic
    checks: int = 0  # classifications after the first (see RECHECK_AGES)
    uid: int = -1
    ctime: float = 0.0  # stored with the CPU state (psutil create time when live)
    start_ticks: int = -1  # /proc/<pid>/stat starttime: detects a reused pid
    cpus: frozenset[int] = frozenset()
    stat_path: str = ""


def parse_environ(data: bytes) -> dict[str, str]:
    """NUL-separated NAME=value pairs -> dict (garbage skipped, never raised)."""
    env: dict[str, str] = {}
    for item in data.split(b"\0"):
        name, sep, value = item.partition(b"=")
        if sep and name:
            env[name.decode(errors="replace")] = value.decode(errors="replace")
    return env


def _environ_value(data: bytes, key: bytes) -> bytes | None:
    """The value of `key` (b"NAME=") in NUL-separated environ bytes, no dict built."""
    if data.startswith(key):
        begin = len(key)
    else:
        at = data.find(b"\0" + key)
        if at < 0:
            return None
        begin = at + 1 + len(key)
    end = data.find(b"\0", begin)
    return data[begin:] if end < 0 else data[begin:end]


def job_from_environ_bytes(data: bytes, node: str) -> str | None:
    """job_from_environ on raw /proc/<pid>/environ bytes (the agent's fast path)."""
    for key in _JOB_KEYS:
        value = _environ_value(data, key)
        if value:
            break
    else:
        return None
    env = {"SLURM_JOB_ID": value.decode(errors="replace")}
    node_value = _environ_value(data, _NODE_KEY)
    if node_value is not None:
        env["SLURMD_NODENAME"] = node_value.decode(errors="replace")
    return job_from_environ(env, node)


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

    def __init__(
        self,
        sysfs: Sysfs,
        node: str,
        *,
        use_psutil: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sysfs = sysfs
        self.node = node
        self.clock = clock
        self.use_psutil = (
            (psutil is not None and sysfs.is_live) if use_psutil is None else use_psutil
        )
        # Resolved once: per-process paths are plain strings, not pathlib objects.
        self._proc_dir = str(sysfs.path("/proc"))
        self._known: dict[int, _Known] = {}
        # (pid, ctime) -> (job, uid, last cpu seconds)
        self._cpu: dict[tuple[int, float], tuple[str, int, float]] = {}
        self._clk_tck = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    # -- state across restarts ---------------------------------------------

    def load_state(self, rows: list[tuple[int, float, str, int, float]]) -> None:
        for pid, ctime, job, uid, cpu in rows:
            self._cpu[(pid, ctime)] = (job, uid, cpu)

    def state(self) -> list[tuple[int, float, str, int, float]]:
        return [(pid, ctime, job, uid, cpu) for (pid, ctime), (job, uid, cpu) in self._cpu.items()]

    # -- classification -----------------------------------------------------

    def _pids(self) -> list[int]:
        try:
            return [int(name) for name in os.listdir(self._proc_dir) if name.isdigit()]
        except OSError:
            return []

    def _read(self, pid: int, leaf: str, limit: int = -1) -> bytes:
        try:
            with open(f"{self._proc_dir}/{pid}/{leaf}", "rb") as handle:
                return handle.read(limit)
        except OSError:
            return b""  # a kernel thread, a vanished process, or not root

    def _classify(self, pid: int) -> _Known:
        cgroup = self._read(pid, "cgroup").decode(errors="replace")
        job = job_from_cgroup(cgroup)
        if job is None:
            job = job_from_environ_bytes(self._read(pid, "environ", _MAX_ENVIRON_BYTES), self.node)
        if job is None:
            return _Known(job=None)
        known = _Known(job=job, stat_path=f"{self._proc_dir}/{pid}/stat")
        try:
            known.start_ticks = int(self._stat_fields(known)[19])
            if self.use_psutil:
                proc = psutil.Process(pid)
                known.ctime = proc.create_time()
                known.uid = proc.uids().real
                known.cpus = frozenset(proc.cpu_affinity() or [])
                if int(self._stat_fields(known)[19]) != known.start_ticks:
                    return _Known(job=None)  # the pid was reused meanwhile
            else:
                known.ctime = known.start_ticks / self._clk_tck
                known.uid = self._status_uid(pid)
                known.cpus = frozenset(self._status_cpus(pid))
        except Exception:  # gone, or unreadable: not measured this time
            return _Known(job=None)
        return known

    def _due(self, known: _Known, now: float) -> bool:
        """A non-job process is asked again at RECHECK_AGES, then never."""
        return (
            known.checks < len(RECHECK_AGES)
            and now - known.first_seen >= RECHECK_AGES[known.checks]
        )

    # -- measuring ----------------------------------------------------------

    def scan(self) -> list[JobSample]:
        """One tick: the jobs on this node with their CPU delta and RSS."""
        pids = self._pids()
        now = self.clock()
        alive = set(pids)
        for pid in [p for p in self._known if p not in alive]:
            del self._known[pid]
        jobs: dict[tuple[str, int], JobSample] = {}
        cpus: dict[tuple[str, int], set[int]] = {}
        seen_keys: set[tuple[int, float]] = set()
        for pid in pids:
            known = self._known.get(pid)
            if known is None:
                known = self._classify(pid)
                known.first_seen = now
                self._known[pid] = known
            elif known.job is None and self._due(known, now):
                checks = known.checks
                while checks < len(RECHECK_AGES) and now - known.first_seen >= RECHECK_AGES[checks]:
                    checks += 1  # a late tick skips the ages it missed
                first_seen = known.first_seen
                known = self._classify(pid)
                known.first_seen, known.checks = first_seen, checks
                self._known[pid] = known
            if known.job is None:
                continue
            usage = self._usage(known)
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

    def _usage(self, known: _Known) -> tuple[float, int] | None:
        """(CPU seconds, RSS bytes) from one read of /proc/<pid>/stat; None: gone or reused."""
        try:
            fields = self._stat_fields(known)
            if int(fields[19]) != known.start_ticks:  # pid reused since classification
                return None
            cpu = (int(fields[11]) + int(fields[12])) / self._clk_tck  # utime, stime
            return cpu, int(fields[21]) * self._page  # rss (pages)
        except (OSError, ValueError, IndexError):
            return None

    # -- /proc parsing -------------------------------------------------------

    def _stat_fields(self, known: _Known) -> list[bytes]:
        with open(known.stat_path, "rb") as handle:
            raw = handle.read()
        # The command name may contain spaces and ')': split after the last ')'.
        close = raw.rfind(b")")
        if close < 0:
            raise ValueError("no stat")
        return raw[close + 2 :].split()

    def _status_value(self, pid: int, name: str) -> str:
        for line in self._read(pid, "status").decode(errors="replace").splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
        return ""

    def _status_uid(self, pid: int) -> int:
        value = self._status_value(pid, "Uid").split()
        return int(value[0]) if value else -1

    def _status_cpus(self, pid: int) -> list[int]:
        try:
            return parse_cpu_list(self._status_value(pid, "Cpus_allowed_list") or None)
        except ValueError:
            return []
