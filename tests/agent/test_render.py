"""Rendering a usage summary (bars + notes) for `slurm-ai job`; the systemd unit text.

Golden files: regenerate with SLURM_AI_REGEN_GOLDEN=1 pytest tests/agent/test_render.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.agent.render import bar, render_job_usage, render_usage
from slurm_ai.agent.unit import unit_text

GOLDEN = Path(__file__).parent / "golden"

USAGE: dict[str, Any] = {
    "v": 1, "coverage": 0.82, "gaps_total": 2, "cpu_efficiency": 0.18,
    "peak_rss_bytes": 13 << 30,
    "cpu": {"ncpus": 16, "cpu_s": 1000.0},
    "gpu": {"util_mean": 12.0, "util_max": 71.0, "power_mean_w": 1240.0, "power_max_w": 2800.0,
            "energy_power_j": 4.1e6, "energy_counter_j": 4.2e6, "throttled_share": 0.4},
    "gpus": [
        {"index": 0, "util_mean": 20.0, "mem_max_bytes": 79 << 30, "mem_total_bytes": 80 << 30,
         "power_mean_w": 400.0, "throttle": {"gpu_idle": 0.5, "sw_power_cap": 0.4}},
        {"index": 1, "util_mean": 4.0, "mem_max_bytes": 1 << 30, "mem_total_bytes": 80 << 30,
         "power_mean_w": 90.0},
    ],
    "xids": [{"gpu": 1, "kind": "xid", "code": 79, "count": 1}],
    "notes": ["agent samples cover 82% of the job: gaps not filled in"],
}  # fmt: skip


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SLURM_AI_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; SLURM_AI_REGEN_GOLDEN=1 to regenerate"


def test_render_usage_golden() -> None:
    text = render_job_usage({"n1": USAGE, "n2": {"coverage": 1.0, "cpu_efficiency": 0.97}})
    assert "GPU utilisation 12%" in text
    _golden("render_usage.txt", text)


def test_bar_bounds() -> None:
    assert bar(0.5, 10) == "[#####.....]"
    assert bar(7.0, 4) == "[####]" and bar(-1.0, 4) == "[....]" and bar(None, 2) == "[??]"


@pytest.mark.parametrize(
    "usage",
    [None, {}, {"gpu": "x"}, {"gpus": [1, None, {"index": "\x1b[31m", "util_mean": "NaN"}]},
     {"cpu_efficiency": float("nan"), "coverage": float("inf"), "peak_rss_bytes": True},
     {"xids": [{"kind": "xid", "code": "\n" * 500}], "notes": ["\x07bell" * 100, 5]},
     {"gpu": {"util_mean": 1e308, "throttled_share": 2}, "gpus": "nope"}],
)  # fmt: skip
def test_render_never_raises_on_untrusted_input(usage: Any) -> None:
    text = render_usage(usage)
    assert "\x1b" not in text and "\x07" not in text
    assert all(len(line) < 400 for line in text.splitlines())


def test_unit_text_golden() -> None:
    text = unit_text("/opt/slurm ai/bin/slurm-ai", "/etc/slurm-ai/config.toml")
    assert "ExecStart='/opt/slurm ai/bin/slurm-ai' --config /etc/slurm-ai/config.toml agent" in text
    _golden("slurm-ai-agent.service", text)
    with pytest.raises(ValueError):
        unit_text("/bin/x\nExecStartPre=/bin/evil")
