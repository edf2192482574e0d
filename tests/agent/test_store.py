"""The sample store: survives restarts, stays under its byte bound keeping the newest data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurm_ai.agent.samples import GpuSample, JobSample, Tick
from slurm_ai.agent.store import SampleStore, store_path
from slurm_ai.errors import SpoolError


def _tick(t: float, gpus: int = 8, jobs: int = 2) -> Tick:
    return Tick(
        t=t,
        interval_s=1.0,
        gpus=[
            GpuSample(index=i, util=50.0, mem_used=1 << 30, power_w=300.0 + i, energy_mj=int(t))
            for i in range(gpus)
        ],
        jobs=[JobSample(job=str(100 + j), uid=1000, cpu_delta_s=1.0, rss_bytes=1 << 20)
              for j in range(jobs)],
    )  # fmt: skip


def test_ticks_survive_a_restart(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "n1")
    store.write_tick(_tick(1000.0), [(42, 5.0, "100", 1000, 3.5)])
    store.close()
    reopened = SampleStore(tmp_path / "n1")
    assert reopened.load_proc_state() == [(42, 5.0, "100", 1000, 3.5)]
    reopened.write_tick(_tick(1001.0), [])
    assert reopened.query("SELECT COUNT(*) FROM tick")[0][0] == 2
    assert reopened.query("SELECT COUNT(*) FROM gpu")[0][0] == 16
    reopened.close()
    assert oct(os.stat(store_path(tmp_path / "n1")).st_mode & 0o777) == "0o600"
    assert oct(os.stat(tmp_path / "n1").st_mode & 0o777) == "0o700"


def test_store_at_its_bound_keeps_the_newest_samples(tmp_path: Path) -> None:
    max_bytes = 256 * 1024
    store = SampleStore(tmp_path / "n1", max_bytes=max_bytes)
    last = 0.0
    for i in range(3000):  # far more than 256 KiB of rows
        last = 10_000.0 + i
        store.write_tick(_tick(last), [])
    sizes = [store.path.stat().st_size]
    for i in range(3000, 3300):
        last = 10_000.0 + i
        store.write_tick(_tick(last), [])
        sizes.append(store.path.stat().st_size)
    count, first, newest = store.query("SELECT COUNT(*), MIN(t), MAX(t) FROM tick")[0]
    store.close()
    assert max(sizes) <= max_bytes  # the file never passes the cap
    assert newest == last  # the newest tick is always there
    assert 100 < count < 3300  # old ticks were dropped, a useful history remains
    assert first == last - count + 1  # what remains is the newest, contiguous
    # Every table is pruned at the same instants: no orphan GPU rows.
    reader = SampleStore(tmp_path / "n1", readonly=True)
    assert reader.query("SELECT MIN(t) FROM gpu")[0][0] == first
    reader.close()


def test_existing_store_larger_than_a_new_bound_is_pruned_on_open(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "n1", max_bytes=4 * 1024 * 1024)
    for i in range(2000):
        store.write_tick(_tick(float(i)), [])
    store.close()
    small = SampleStore(tmp_path / "n1", max_bytes=128 * 1024)
    used = small.query("PRAGMA page_count")[0][0] - small.query("PRAGMA freelist_count")[0][0]
    assert used * 4096 <= 128 * 1024
    assert small.query("SELECT MAX(t) FROM tick")[0][0] == 1999.0
    small.write_tick(_tick(2000.0), [])
    small.close()


def test_retention_drops_old_rows(tmp_path: Path) -> None:
    store = SampleStore(tmp_path / "n1", retention_s=100.0)
    for i in range(60):  # retention is applied every CHECK_EVERY (30) ticks
        store.write_tick(_tick(float(i * 10), gpus=1), [])
    assert store.query("SELECT MIN(t) FROM tick")[0][0] == 590 - 100
    store.close()


def test_readonly_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="no sample store"):
        SampleStore(tmp_path / "missing", readonly=True)


def test_corrupt_store_is_a_spool_error(tmp_path: Path) -> None:
    directory = tmp_path / "n1"
    directory.mkdir(mode=0o700)
    store_path(directory).write_bytes(b"this is not a database" * 100)
    with pytest.raises(SpoolError):
        reader = SampleStore(directory, readonly=True)
        reader.query("SELECT COUNT(*) FROM tick")


def test_symlinked_or_world_writable_store_dir_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SpoolError, match="symlink"):
        SampleStore(link)
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(SpoolError, match="writable"):
        SampleStore(open_dir)


def test_readonly_reader_cannot_write(tmp_path: Path) -> None:
    SampleStore(tmp_path / "n1").close()
    reader = SampleStore(tmp_path / "n1", readonly=True)
    with pytest.raises(SpoolError):
        reader.query("DELETE FROM tick")
    reader.close()
