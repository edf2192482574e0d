"""Prometheus text, the textfile, and /metrics over HTTP (stdlib and prometheus-client)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from core_parts import DEV_EXTRA, import_module

from slurm_ai.agent.export import (
    MetricsServer,
    MetricsSource,
    families,
    parse_listen,
    render_text,
    write_textfile,
)
from slurm_ai.agent.samples import GpuSample, JobSample, Tick
from slurm_ai.errors import ConfigError

TICK = Tick(
    t=1700000000.5,
    interval_s=5.0,
    gpus=[GpuSample(index=0, util=12.0, power_w=310.5, energy_mj=5_000_000, throttle=0x4 | 0x1,
                    sm_clock_mhz=1410.0, mem_used=2 << 30)],
    jobs=[JobSample(job="42", uid=1000, cpu_delta_s=4.5, rss_bytes=1 << 30, nproc=3)],
)  # fmt: skip


def test_text_format() -> None:
    text = render_text(families(TICK, 'n"1\\', {0: 2}))
    assert "# TYPE slurm_ai_gpu_power_watts gauge" in text
    assert 'slurm_ai_gpu_power_watts{node="n\\"1\\\\",gpu="0"} 310.5' in text
    assert 'slurm_ai_gpu_energy_joules_total{node="n\\"1\\\\",gpu="0"} 5000' in text
    assert 'reason="sw_power_cap"} 1' in text and 'reason="hw_slowdown"} 0' in text
    assert 'slurm_ai_job_rss_bytes{node="n\\"1\\\\",job="42",uid="1000"} 1073741824' in text
    assert 'slurm_ai_gpu_xid_events_total{node="n\\"1\\\\",gpu="0"} 2' in text
    assert text.endswith("\n")


def test_text_parses_with_prometheus_client() -> None:
    parser = import_module("prometheus_client.parser", DEV_EXTRA)
    fams = {
        f.name: f for f in parser.text_string_to_metric_families(render_text(families(TICK, "n1")))
    }
    assert fams["slurm_ai_gpu_utilization_ratio"].samples[0].value == 0.12
    assert fams["slurm_ai_gpu_energy_joules"].type == "counter"


def test_textfile_is_atomic_and_readable(tmp_path: Path) -> None:
    path = write_textfile(tmp_path, render_text(families(TICK, "n1")))
    assert path.name == "slurm_ai_agent.prom"
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["slurm_ai_agent.prom"]


def test_parse_listen() -> None:
    assert parse_listen("9400") == ("127.0.0.1", 9400)
    assert parse_listen(":9400") == ("127.0.0.1", 9400)
    assert parse_listen("0.0.0.0:9400") == ("0.0.0.0", 9400)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    for bad in ("", "host:", "host:port", "70000", "[::1]9400", "[::1"):
        with pytest.raises(ConfigError):
            parse_listen(bad)


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


@pytest.mark.parametrize("backend", ["stdlib", "prometheus-client"])
def test_http_metrics(backend: str) -> None:
    if backend == "prometheus-client":
        import_module("prometheus_client", DEV_EXTRA)
    source = MetricsSource()
    source.update(families(TICK, "n1"))
    server = MetricsServer(source, "127.0.0.1", 0, backend=backend)
    try:
        assert server.port > 0
        status, ctype, body = _get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'slurm_ai_gpu_power_watts{gpu="0",node="n1"} 310.5' in body or (
            'slurm_ai_gpu_power_watts{node="n1",gpu="0"} 310.5' in body
        )
        assert "slurm_ai_job_cpu_seconds" in body
        if backend == "stdlib":
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(f"http://127.0.0.1:{server.port}/nothing")
            assert err.value.code == 404
    finally:
        server.close()


def test_the_nodes_health_verdict_and_its_age_in_the_metrics(tmp_path: Path) -> None:
    from slurm_ai.agent.daemon import Agent
    from slurm_ai.agent.export import health_families
    from slurm_ai.agent.store import SampleStore
    from slurm_ai.spool import atomic_write_json
    from slurm_ai.sysfs import Sysfs

    last = {"checked_at": 1000.0, "health": {"verdict": "warn"}}
    text = render_text(health_families(last, "n1", now=1600.0))
    assert 'slurm_ai_node_health_verdict{node="n1",verdict="warn"} 1' in text
    assert 'slurm_ai_node_health_verdict{node="n1",verdict="pass"} 0' in text
    assert 'slurm_ai_node_health_age_seconds{node="n1"} 600' in text
    # No verdict yet (or an unreadable one): the families stay empty, never a guess.
    assert [f.samples for f in health_families(None, "n1", 1.0)] == [[], []]
    assert [f.samples for f in health_families({"health": "x"}, "n1", 1.0)] == [[], []]

    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    health_file = spool / "last.json"
    agent = Agent(
        node="n1",
        store=SampleStore(tmp_path / "store"),
        interval_s=1.0,
        sysfs=Sysfs("/"),
        rapl=False,
        health_file=health_file,
    )
    agent.tick(now=2000.0)
    assert "slurm_ai_node_health_age_seconds{" not in render_text(agent.metrics.current())
    atomic_write_json(health_file, {"checked_at": 1900.0, "health": {"verdict": "pass"}})
    agent.tick(now=2000.0)
    text = render_text(agent.metrics.current())
    assert 'slurm_ai_node_health_verdict{node="n1",verdict="pass"} 1' in text
    assert 'slurm_ai_node_health_age_seconds{node="n1"} 100' in text
    health_file.write_text("{corrupt")
    agent.tick(now=2001.0)  # a corrupt file never breaks sampling
    agent.store.close()
