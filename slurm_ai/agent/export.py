"""Prometheus exports of the latest tick: node_exporter textfile and HTTP /metrics.

The text exposition format is rendered here (a pure function), so the
textfile works without any extra package, and `--listen` serves it with the
standard library's http.server when prometheus-client is not installed. When
prometheus-client is installed, `--listen` uses its HTTP server with a
collector that yields the same families (content negotiation, gzip, the
library's own process metrics are left out on purpose: this is node data).

The server binds to 127.0.0.1 unless the address names another host: these
metrics show which jobs run where, which is not for the whole network.
"""

from __future__ import annotations

import http.server
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai.agent.gpu import THROTTLE_REASONS
from slurm_ai.agent.samples import Tick
from slurm_ai.errors import ConfigError
from slurm_ai.spool import atomic_write_bytes

log = logging.getLogger("slurm_ai.agent")

TEXTFILE_NAME = "slurm_ai_agent.prom"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def families(tick: Tick, node: str, xid_total: dict[int, int] | None = None) -> list[Family]:
    """The metric families for one tick (labels: node, gpu, job, uid)."""
    gpu = {
        "util": Family("slurm_ai_gpu_utilization_ratio", "gauge", "Share of time a kernel ran."),
        "mem_util": Family(
            "slurm_ai_gpu_memory_utilization_ratio", "gauge", "Share of time memory was busy."
        ),
        "mem_used": Family("slurm_ai_gpu_memory_used_bytes", "gauge", "GPU memory in use."),
        "power": Family("slurm_ai_gpu_power_watts", "gauge", "GPU board power draw."),
        "clock": Family("slurm_ai_gpu_sm_clock_hertz", "gauge", "SM clock."),
        "energy": Family(
            "slurm_ai_gpu_energy_joules_total", "counter", "NVML energy counter since driver load."
        ),
        "throttle": Family(
            "slurm_ai_gpu_clocks_event_active", "gauge", "1 when this clocks event reason holds."
        ),
    }
    for g in tick.gpus:
        labels = {"node": node, "gpu": str(g.index)}
        if g.util is not None:
            gpu["util"].samples.append((labels, g.util / 100.0))
        if g.mem_util is not None:
            gpu["mem_util"].samples.append((labels, g.mem_util / 100.0))
        if g.mem_used is not None:
            gpu["mem_used"].samples.append((labels, float(g.mem_used)))
        if g.power_w is not None:
            gpu["power"].samples.append((labels, g.power_w))
        if g.sm_clock_mhz is not None:
            gpu["clock"].samples.append((labels, g.sm_clock_mhz * 1e6))
        if g.energy_mj is not None:
            gpu["energy"].samples.append((labels, g.energy_mj / 1000.0))
        if g.throttle is not None:
            for bit, reason in THROTTLE_REASONS.items():
                value = 1.0 if g.throttle & bit else 0.0
                gpu["throttle"].samples.append(({**labels, "reason": reason}, value))
    xids = Family("slurm_ai_gpu_xid_events_total", "counter", "XID events seen by this agent.")
    for index, count in sorted((xid_total or {}).items()):
        xids.samples.append(({"node": node, "gpu": str(index)}, float(count)))
    cpu = Family("slurm_ai_job_cpu_seconds", "gauge", "CPU seconds used since the last sample.")
    rss = Family("slurm_ai_job_rss_bytes", "gauge", "Resident memory of the job's processes.")
    nproc = Family("slurm_ai_job_processes", "gauge", "Processes of the job on this node.")
    for j in tick.jobs:
        labels = {"node": node, "job": j.job, "uid": str(j.uid)}
        cpu.samples.append((labels, j.cpu_delta_s))
        rss.samples.append((labels, float(j.rss_bytes)))
        nproc.samples.append((labels, float(j.nproc)))
    last = Family(
        "slurm_ai_agent_last_sample_timestamp_seconds", "gauge", "When the agent last sampled."
    )
    last.samples.append(({"node": node}, tick.t))
    return [*gpu.values(), xids, cpu, rss, nproc, last]


HEALTH_VERDICTS = ("pass", "warn", "unchecked", "fail", "error", "timeout", "skipped", "info")


def health_families(last: dict[str, Any] | None, node: str, now: float) -> list[Family]:
    """The node's latest full health verdict (spool health/last.json) and its age:
    what the next job's Prolog will stand on. No verdict yet: no samples, so an
    alert on absence (`absent(slurm_ai_node_health_age_seconds)`) sees it."""
    verdict = Family(
        "slurm_ai_node_health_verdict", "gauge", "1 for the node's latest full-check verdict."
    )
    age = Family(
        "slurm_ai_node_health_age_seconds", "gauge", "Age of the node's latest full check."
    )
    health = last.get("health") if isinstance(last, dict) else None
    checked_at = last.get("checked_at") if isinstance(last, dict) else None
    if isinstance(health, dict) and isinstance(checked_at, (int, float)):
        current = str(health.get("verdict"))
        for name in HEALTH_VERDICTS:
            verdict.samples.append(({"node": node, "verdict": name}, float(name == current)))
        age.samples.append(({"node": node}, max(0.0, now - float(checked_at))))
    return [verdict, age]


def render_text(fams: list[Family]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for fam in fams:
        lines.append(f"# HELP {fam.name} {fam.help}")
        lines.append(f"# TYPE {fam.name} {fam.kind}")
        for labels, value in fam.samples:
            body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{fam.name}{{{body}}} {_number(value)}")
    return "\n".join(lines) + "\n"


def write_textfile(directory: str | os.PathLike[str], text: str) -> Path:
    """Atomic write for node_exporter's textfile collector (world-readable .prom)."""
    path = Path(directory) / TEXTFILE_NAME
    atomic_write_bytes(path, text.encode(), mode=0o644)
    return path


def parse_listen(addr: str) -> tuple[str, int]:
    """'9400' | ':9400' | 'host:9400' | '[::1]:9400' -> (host, port); localhost by default."""
    addr = addr.strip()
    host, port_text = "127.0.0.1", addr
    if addr.startswith("["):
        end = addr.find("]")
        if end < 0 or addr[end + 1 : end + 2] != ":":
            raise ConfigError(f"--listen {addr!r}: expected [IPv6]:PORT")
        host, port_text = addr[1:end], addr[end + 2 :]
    elif ":" in addr:
        host_part, port_text = addr.rsplit(":", 1)
        host = host_part or "127.0.0.1"
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"--listen {addr!r}: port is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--listen {addr!r}: port out of range")
    return host, port


class MetricsSource:
    """The latest families, swapped atomically by the sampling loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: list[Family] = []

    def update(self, fams: list[Family]) -> None:
        with self._lock:
            self._families = fams

    def current(self) -> list[Family]:
        with self._lock:
            return list(self._families)


class MetricsServer:
    """HTTP /metrics on a daemon thread; `port` is the bound port (0 -> chosen)."""

    def __init__(self, source: MetricsSource, host: str, port: int, *, backend: str) -> None:
        self.source = source
        self.backend = backend
        self._server: Any = None
        if backend == "prometheus-client":
            self._start_prometheus(host, port)
        else:
            self._start_stdlib(host, port)

    def _start_stdlib(self, host: str, port: int) -> None:
        source = self.source

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = render_text(source.current()).encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would flood the log

        server_class = http.server.ThreadingHTTPServer
        if ":" in host:
            import socket

            class V6Server(http.server.ThreadingHTTPServer):
                address_family = socket.AF_INET6

            server_class = V6Server
        self._server = server_class((host, port), Handler)
        self._server.daemon_threads = True
        self.host, self.port = host, int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()

    def _start_prometheus(self, host: str, port: int) -> None:
        from prometheus_client import start_http_server
        from prometheus_client.core import CollectorRegistry, Metric

        source = self.source

        class Collector:
            def collect(self) -> Iterator[Metric]:
                for fam in source.current():
                    name = fam.name
                    if fam.kind == "counter" and name.endswith("_total"):
                        name = name[: -len("_total")]  # the library adds it back
                    metric = Metric(name, fam.help, fam.kind)
                    suffix = "_total" if fam.kind == "counter" else ""
                    for labels, value in fam.samples:
                        metric.add_sample(name + suffix, labels, value)
                    yield metric

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Collector())
        result = start_http_server(port, addr=host, registry=registry)
        server = result[0] if isinstance(result, tuple) else None
        self._server = server
        bound = server.server_address[1] if server is not None else port
        self.host, self.port = host, int(bound)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def pick_backend() -> str:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return "stdlib"
    return "prometheus-client"
