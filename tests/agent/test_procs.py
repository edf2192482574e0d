"""Finding a job's processes (environ, cgroup, node filter) and measuring them."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from agenthelp import wait_for

from slurm_ai.agent.procs import (
    JobProcessScanner,
    job_from_cgroup,
    job_from_environ,
    job_from_environ_bytes,
    parse_environ,
)
from slurm_ai.sysfs import Sysfs


def test_environ_and_cgroup_parsing_with_garbage() -> None:
    env = parse_environ(b"A=1\0SLURM_JOB_ID=42\0\xff\xfe=x\0noequals\0=empty\0B=a=b\0")
    assert env["SLURM_JOB_ID"] == "42" and env["B"] == "a=b" and "noequals" not in env
    assert job_from_environ({"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "n1"}, "n1") == "42"
    assert job_from_environ({"SLURM_JOB_ID": "42", "SLURMD_NODENAME": "n2"}, "n1") is None
    assert job_from_environ({"SLURM_JOB_ID": "42"}, "n1") == "42"
    for bad in ("", "4 2", "../42", "42;rm", "1" * 40, "-1"):
        assert job_from_environ({"SLURM_JOB_ID": bad}, "n1") is None
    v2 = "0::/system.slice/slurmstepd.scope/job_1234/step_0/user/task_0\n"
    v1 = "4:memory:/slurm/uid_1000/job_77/step_batch\n3:cpuset:/\n"
    assert job_from_cgroup(v2) == "1234" and job_from_cgroup(v1) == "77"
    assert job_from_cgroup("0::/user.slice/myjob_5x\n") is None
    assert job_from_cgroup("0::/job_12abc/\n") is None
    assert job_from_cgroup(None) is None


def test_environ_bytes_fast_path_matches_the_dict_parse() -> None:
    cases = [
        b"SLURM_JOB_ID=42\0SLURMD_NODENAME=n1\0",
        b"A=1\0SLURM_JOB_ID=42\0SLURMD_NODENAME=n2",
        b"XSLURM_JOB_ID=42\0MY_SLURMD_NODENAME=n2\0",
        b"A=1\0SLURM_JOBID=43",
        b"SLURM_JOB_ID=\0SLURM_JOBID=43\0",
        b"SLURM_JOB_ID=4 2\0",
        b"SLURM_JOB_ID=42;rm\0",
        b"SLURM_JOB_ID=\xff\xfe\0",
        b"\0\0=\0SLURM_JOB_ID=7",
        b"",
        b"SLURM_JOB_ID=" + b"9" * 100_000,
    ]
    for data in cases:
        expected = job_from_environ(parse_environ(data), "n1")
        assert job_from_environ_bytes(data, "n1") == expected, data[:40]


def test_real_processes_by_job_and_node(spawn_job_process) -> None:  # type: ignore[no-untyped-def]
    # A node name of this run only: another suite on this machine spawns the same jobs.
    node = f"tnode-{uuid.uuid4().hex[:8]}"
    mine = [spawn_job_process("424242", node, busy_s=1.0, mem=32 << 20) for _ in range(2)]
    spawn_job_process("424242", "othernode", busy_s=0.0)  # same job, other node
    spawn_job_process("515151", node)  # another job here
    scanner = JobProcessScanner(Sysfs("/"), node)
    assert scanner.use_psutil

    def jobs() -> dict[str, object]:
        return {j.job: j for j in scanner.scan()}

    assert wait_for(lambda: jobs().get("424242") is not None and jobs()["424242"].nproc == 2)
    # The two tasks burn 2 CPU-s between them, later on a loaded machine: sum the scans'
    # deltas until a quarter of it is seen (not a fixed sleep).
    total = 0.0
    samples = []

    def seen_cpu() -> bool:
        nonlocal total
        samples.append(jobs()["424242"])
        total += samples[-1].cpu_delta_s  # type: ignore[attr-defined]
        return total > 0.5

    assert wait_for(seen_cpu, timeout=60, step=0.3), total
    assert all(p.poll() is None for p in mine)
    sample = samples[-1]
    assert sample.nproc == 2 and sample.uid == os.getuid()  # type: ignore[attr-defined]
    assert sample.rss_bytes >= 2 * (32 << 20)  # type: ignore[attr-defined]
    assert jobs()["515151"].nproc == 1  # type: ignore[attr-defined]
    # A restarted agent (state loaded from the store) does not count the same CPU again.
    restarted = JobProcessScanner(Sysfs("/"), node)
    restarted.load_state(scanner.state())
    again = {j.job: j for j in restarted.scan()}["424242"]
    fresh = {j.job: j for j in JobProcessScanner(Sysfs("/"), node).scan()}["424242"]
    assert again.cpu_delta_s < fresh.cpu_delta_s
    assert fresh.cpu_delta_s >= total * 0.9


def _fake_proc(
    root: Path, pid: int, *, environ: bytes, cgroup: str, utime: int, rss_pages: int
) -> None:
    d = root / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "environ").write_bytes(environ)
    (d / "cgroup").write_text(cgroup)
    fields = ["S"] + ["0"] * 50
    fields[11], fields[12], fields[19] = str(utime), "0", "12345"
    fields[21] = str(rss_pages)  # rss, as statm's second field
    (d / "stat").write_text(f"{pid} (tricky ) name) " + " ".join(fields) + "\n")
    (d / "statm").write_text(f"1000 {rss_pages} 0 0 0 0 0\n")
    (d / "status").write_text("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nCpus_allowed_list:\t0-3\n")


def test_captured_proc_tree_without_psutil(tmp_path: Path) -> None:
    tck = os.sysconf("SC_CLK_TCK")
    _fake_proc(tmp_path, 10, environ=b"SLURM_JOB_ID=9\0SLURMD_NODENAME=n1\0", cgroup="0::/\n",
               utime=2 * tck, rss_pages=100)  # fmt: skip
    _fake_proc(tmp_path, 11, environ=b"", cgroup="0::/system.slice/slurmstepd.scope/job_9/step_0\n",
               utime=tck, rss_pages=50)  # fmt: skip
    _fake_proc(tmp_path, 12, environ=b"SLURM_JOB_ID=9\0SLURMD_NODENAME=n2\0", cgroup="0::/\n",
               utime=tck, rss_pages=50)  # fmt: skip
    (tmp_path / "proc" / "13").mkdir()  # vanished / unreadable process
    scanner = JobProcessScanner(Sysfs(tmp_path), "n1")
    assert not scanner.use_psutil
    (sample,) = scanner.scan()
    assert (sample.job, sample.uid, sample.nproc, sample.ncpus) == ("9", 1000, 2, 4)
    assert sample.cpu_delta_s == 3.0
    assert sample.rss_bytes == 150 * os.sysconf("SC_PAGE_SIZE")
    (second,) = scanner.scan()
    assert second.cpu_delta_s == 0.0  # nothing used since the previous tick


def test_a_process_that_becomes_a_job_task_after_exec_is_found(tmp_path: Path) -> None:
    # Before exec, a task forked by slurmstepd has slurmstepd's environment.
    tck = os.sysconf("SC_CLK_TCK")
    _fake_proc(tmp_path, 20, environ=b"PATH=/usr/bin\0", cgroup="0::/\n", utime=tck, rss_pages=1)
    clock = [100.0]
    scanner = JobProcessScanner(Sysfs(tmp_path), "n1", clock=lambda: clock[0])
    assert scanner.scan() == []
    (tmp_path / "proc" / "20" / "environ").write_bytes(b"SLURM_JOB_ID=31\0SLURMD_NODENAME=n1\0")
    assert scanner.scan() == []  # not asked again before the first recheck age
    clock[0] += 0.6
    (sample,) = scanner.scan()
    assert sample.job == "31" and sample.cpu_delta_s == 1.0


def test_non_job_processes_are_rechecked_with_backoff_then_never(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 21, environ=b"PATH=/usr/bin\0", cgroup="0::/\n", utime=1, rss_pages=1)
    clock = [0.0]
    scanner = JobProcessScanner(Sysfs(tmp_path), "n1", clock=lambda: clock[0])
    calls: list[float] = []
    original = scanner._classify

    def counting(pid: int):  # type: ignore[no-untyped-def]
        calls.append(clock[0])
        return original(pid)

    scanner._classify = counting  # type: ignore[method-assign]
    for _ in range(400):  # 40 s of 0.1 s ticks
        scanner.scan()
        clock[0] += 0.1
    assert len(calls) == 1 + 6  # first sight, then at 0.5, 1, 2, 4, 8, 16 s
    # A late tick (agent stalled 10 s) skips the missed ages instead of catching up.
    _fake_proc(tmp_path, 22, environ=b"", cgroup="0::/\n", utime=1, rss_pages=1)
    calls.clear()
    scanner.scan()
    clock[0] += 10.0
    scanner.scan()
    scanner.scan()
    assert len(calls) == 2
