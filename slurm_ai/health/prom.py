"""Results as a Prometheus node_exporter textfile (written atomically, 0644).

node_exporter's textfile collector reads every *.prom file in its directory;
the file is replaced by rename so it never sees half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slurm_ai.health.verdict import Verdict
from slurm_ai.spool import atomic_write_bytes

FILE_NAME = "slurm_ai_health.prom"


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render(health: dict[str, Any], node: str) -> str:
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

    base = f'node="{_label(node)}"'
    backend = f'{base},backend="{_label(health.get("backend") or "none")}"'
    verdict = str(health.get("verdict", "error"))
    metric(
        "slurm_ai_health_verdict",
        "gauge",
        "1 for the verdict of the last health check.",
        [(f'{{{base},verdict="{v.value}"}}', 1.0 if v.value == verdict else 0.0) for v in Verdict],
    )
    for key, name, help_text in (
        ("busbw_gbps", "slurm_ai_health_busbw_gbps", "All-reduce busbw at the largest size."),
        ("algbw_gbps", "slurm_ai_health_algbw_gbps", "All-reduce algbw at the largest size."),
        ("size_bytes", "slurm_ai_health_size_bytes", "Largest all-reduce size measured."),
        ("ranks", "slurm_ai_health_ranks", "Ranks in the all-reduce."),
        ("duration_s", "slurm_ai_health_duration_seconds", "Wall time of the check."),
        ("checked_at", "slurm_ai_health_last_run_timestamp_seconds", "When the check ran."),
    ):
        value = health.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metric(name, "gauge", help_text, [(f"{{{backend}}}", float(value))])
    checks = [c for c in health.get("checks", []) if isinstance(c, dict)]
    if checks:
        severity = {v.value: v.severity for v in Verdict}
        metric(
            "slurm_ai_health_check_severity",
            "gauge",
            "Per check: 0 pass, 1 unchecked, 2 warn, 3 error, 4 timeout, 5 fail.",
            [
                (
                    f'{{{base},check="{_label(c.get("check"))}"}}',
                    float(severity.get(str(c.get("verdict")), 3)),
                )
                for c in checks
            ],
        )
    return "\n".join(lines) + "\n"


def write_textfile(directory: str | Path, health: dict[str, Any], node: str) -> Path:
    path = Path(directory) / FILE_NAME
    atomic_write_bytes(path, render(health, node).encode(), mode=0o644)
    return path
