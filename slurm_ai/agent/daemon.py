"""The agent: settings from [agent], and the sampling loop.

One tick: poll NVML events, sample every GPU, scan the job processes, write
the tick to the store in one transaction, refresh the exports. Ticks are
scheduled on the monotonic clock (no drift, no burst after a slow tick: a
late tick skips the missed slots) and stamped with wall-clock time, which is
what Slurm's job times use.

A failure inside a tick is logged and the loop goes on; a store that cannot
be written for `MAX_STORE_FAILURES` ticks in a row stops the agent (systemd
restarts it) instead of sampling into the void.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from slurm_ai.agent.export import (
    MetricsServer,
    MetricsSource,
    families,
    health_families,
    pick_backend,
    render_text,
    write_textfile,
)
from slurm_ai.agent.gpu import GpuSampler
from slurm_ai.agent.procs import JobProcessScanner
from slurm_ai.agent.samples import Tick
from slurm_ai.agent.store import DEFAULT_MAX_BYTES, DEFAULT_RETENTION_S, SampleStore
from slurm_ai.config import Config
from slurm_ai.energy.rapl import RaplReader
from slurm_ai.errors import ConfigError, ProbeError, SlurmAIError
from slurm_ai.nvml import Nvml, open_nvml
from slurm_ai.sysfs import Sysfs

log = logging.getLogger("slurm_ai.agent")

DEFAULT_INTERVAL_S = 5.0
DEFAULT_STORE_DIR = "/var/lib/slurm-ai/agent/{node}"
MAX_STORE_FAILURES = 10
SLOW_EVERY = 12  # ticks between reads of costly or slow counters (energy, ECC)
PHASES = ("events", "gpus", "rapl", "procs", "store", "export")


def short_hostname() -> str:
    return socket.gethostname().split(".", 1)[0]


@dataclass(frozen=True)
class AgentSettings:
    """The [agent] section; see docs/agent.md."""

    interval_s: float = DEFAULT_INTERVAL_S
    store_dir: str = DEFAULT_STORE_DIR
    max_bytes: int = DEFAULT_MAX_BYTES
    retention_s: float = DEFAULT_RETENTION_S
    textfile_dir: str | None = None
    listen: str | None = None
    nvml: bool = True
    nvml_recorded: str | None = None
    nvml_timeout_s: float = 2.0
    events: bool = True
    sysfs_root: str = "/"
    rapl: bool = True

    @classmethod
    def from_config(cls, config: Config) -> AgentSettings:
        s = config.section("agent")
        interval = s.get_float("interval_s", DEFAULT_INTERVAL_S, low=-1e12)
        if not 0.05 <= interval <= 3600:
            raise ConfigError("[agent] interval_s: must be between 0.05 and 3600 seconds")
        max_mb = s.get_float("max_mb", DEFAULT_MAX_BYTES / 2**20, high=1e7)
        if max_mb <= 0:
            raise ConfigError("[agent] max_mb: must be positive")
        return cls(
            interval_s=interval,
            store_dir=s.get_str("store_dir", DEFAULT_STORE_DIR),
            max_bytes=int(max_mb * 2**20),
            retention_s=s.get_float("retention_days", DEFAULT_RETENTION_S / 86400, high=36500.0)
            * 86400,
            textfile_dir=s.get_opt_str("textfile_dir"),
            listen=s.get_opt_str("listen"),
            nvml=s.get_bool("nvml", True),
            nvml_recorded=s.get_opt_str("nvml_recorded"),
            nvml_timeout_s=s.get_float("nvml_timeout_s", 2.0, high=600.0, positive=True),
            events=s.get_bool("events", True),
            sysfs_root=s.get_str("sysfs_root", "/"),
            rapl=s.get_bool("rapl", True),
        )


def resolve_store_dir(template: str, node: str) -> Path:
    """Expand "{node}" (several nodes on one machine need one store each)."""
    if "/" in node or node in ("", ".", ".."):
        raise ConfigError(f"node name {node!r} cannot be used in a path")
    try:
        return Path(template.replace("{node}", node))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[agent] store_dir {template!r}: {exc}") from exc


def open_gpus(settings: AgentSettings) -> tuple[Nvml | None, str]:
    """NVML for the agent, or None with the reason (a CPU-only node is normal)."""
    if not settings.nvml:
        return None, "disabled by [agent] nvml = false"
    try:
        return open_nvml(settings.nvml_recorded, timeout=settings.nvml_timeout_s), "ok"
    except ProbeError as exc:
        return None, str(exc)


class Agent:
    """Samples into `store`; `tick()` once, or `run()` until stopped."""

    def __init__(
        self,
        *,
        node: str,
        store: SampleStore,
        interval_s: float,
        nv: Nvml | None = None,
        sysfs: Sysfs | None = None,
        textfile_dir: str | None = None,
        events: bool = True,
        rapl: bool = True,
        health_file: Path | None = None,
    ) -> None:
        self.node = node
        # The spool's health/last.json: its verdict and age go into the metrics.
        self.health_file = health_file
        self.store = store
        self.interval_s = interval_s
        self.textfile_dir = textfile_dir
        self.metrics = MetricsSource()
        self.stop_event = threading.Event()
        self.gpus: GpuSampler | None = None
        self.xid_total: dict[int, int] = {}
        if nv is not None:
            try:
                self.gpus = GpuSampler(nv, events=events)
                store.write_gpu_info(self.gpus.info(), time.time())
            except (ProbeError, SlurmAIError) as exc:
                log.warning("GPU sampling off: %s", exc)
                self.gpus = None
        sysfs = sysfs or Sysfs("/")
        # RAPL counters each tick: the energy Epilog counts their wraps from these.
        self.rapl: RaplReader | None = None
        if rapl:
            reader = RaplReader(sysfs)
            self.rapl = reader if reader.domains else None
        self.procs = JobProcessScanner(sysfs, node)
        self.procs.load_state(store.load_proc_state())
        self.ticks = 0
        self.store_failures = 0
        # CPU seconds (process time, so the NVML gateway's thread counts) per phase.
        self.phase_cpu_s: dict[str, float] = dict.fromkeys(PHASES, 0.0)

    def tick(self, now: float | None = None) -> Tick:
        t = time.time() if now is None else now
        tick = Tick(t=t, interval_s=self.interval_s)
        phase = self.phase_cpu_s
        c0 = time.process_time()
        if self.gpus is not None:
            try:
                tick.events = self.gpus.poll_events(t)
                c1 = time.process_time()
                phase["events"] += c1 - c0
                c0 = c1
                tick.gpus = self.gpus.sample(t, slow=self.ticks % SLOW_EVERY == 0)
            except ProbeError as exc:
                log.warning("GPU sample failed: %s", exc)
        for event in tick.events:
            if event.kind == "xid" and event.gpu is not None:
                self.xid_total[event.gpu] = self.xid_total.get(event.gpu, 0) + 1
                log.warning("GPU %s: XID %d", event.gpu, event.code)
        c1 = time.process_time()
        phase["gpus"] += c1 - c0
        tick.rapl = self.rapl.read() if self.rapl is not None else {}
        c2 = time.process_time()
        phase["rapl"] += c2 - c1
        try:
            tick.jobs = self.procs.scan()
        except OSError as exc:
            log.warning("process scan failed: %s", exc)
        c3 = time.process_time()
        phase["procs"] += c3 - c2
        self.store.write_tick(tick, self.procs.state())
        self.ticks += 1
        c4 = time.process_time()
        phase["store"] += c4 - c3
        fams = families(tick, self.node, self.xid_total)
        fams += health_families(self._latest_health(), self.node, t)
        self.metrics.update(fams)
        if self.textfile_dir:
            try:
                write_textfile(self.textfile_dir, render_text(fams))
            except SlurmAIError as exc:
                log.warning("textfile: %s", exc)
        phase["export"] += time.process_time() - c4
        return tick

    def _latest_health(self) -> dict[str, Any] | None:
        if self.health_file is None:
            return None
        from slurm_ai.spool import read_json

        try:
            data = read_json(self.health_file)
        except (FileNotFoundError, SlurmAIError, OSError):
            return None  # no verdict yet, or one the health step will quarantine
        return data if isinstance(data, dict) else None

    def run(self, duration_s: float | None = None) -> None:
        """Tick every interval until stopped (signal, stop_event, or duration)."""
        start = time.monotonic()
        next_at = start
        while not self.stop_event.is_set():
            try:
                self.tick()
                self.store_failures = 0
            except SlurmAIError as exc:
                self.store_failures += 1
                log.error("tick failed: %s", exc)
                if self.store_failures >= MAX_STORE_FAILURES:
                    raise
            next_at += self.interval_s
            now = time.monotonic()
            if now > next_at:  # a slow tick: skip the missed slots, no burst
                next_at = now + self.interval_s - ((now - start) % self.interval_s)
            if duration_s is not None and next_at - start > duration_s:
                break
            self.stop_event.wait(max(next_at - now, 0.0))

    def install_signal_handlers(self) -> Callable[[], None]:
        """SIGTERM/SIGINT stop the loop cleanly. Returns a function that puts the
        previous handlers back: the CLI also runs in-process (tests), and a handler
        left behind would be inherited by every child that process forks later."""

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stop_event.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore

    def close(self) -> None:
        if self.gpus is not None:
            self.gpus.close()
        self.store.close()


def start_metrics_server(agent: Agent, listen: str) -> MetricsServer:
    from slurm_ai.agent.export import parse_listen

    host, port = parse_listen(listen)
    return MetricsServer(agent.metrics, host, port, backend=pick_backend())
