"""`slurm-ai report` and `slurm-ai job` on the recorded dump: golden files, HTML in Chromium."""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from core_parts import SETUP_DEPS, needs

from slurm_ai.cli import main


def invoke(args: list[str], config: Path | None = None) -> str:
    pre = ["--config", str(config)] if config else []
    result = CliRunner().invoke(main, [*pre, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("fmt", "name"), [("table", "report.txt"), ("json", "report.json"), ("csv", "report.csv")]
)
def test_report_golden(
    fmt: str, name: str, data_dir: Path, prices_config: Path, golden: Callable[[str, str], None]
) -> None:
    out = invoke(
        ["report", "--from", str(data_dir / "dump.txt"), "--format", fmt, "--workers", "1"],
        prices_config,
    )
    golden(name, out)


def test_report_table_says_counts(data_dir: Path, prices_config: Path) -> None:
    out = invoke(["report", "--from", str(data_dir / "dump.txt")], prices_config)
    assert "no record: 2" in out and "unparsed: 4" in out
    assert "too few jobs to say" in out or "lower" in out


def test_report_filters(data_dir: Path) -> None:
    out = json.loads(
        invoke(
            [
                "report",
                "--from",
                str(data_dir / "dump.txt"),
                "--format",
                "json",
                "--partition",
                "vm",
            ]
        )
    )
    assert {g["partition"] for g in out["groups"]} == {"vm"}
    out = json.loads(
        invoke(["report", "--from", str(data_dir / "dump.txt"), "--format", "json", "--end", "1"])
    )
    assert out["groups"] == []


def test_report_min_jobs_from_config(data_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[report]\nmin_jobs = 1\n")
    out = invoke(["report", "--from", str(data_dir / "dump.txt")], cfg)
    assert "Decision (95% intervals; at least 1 jobs per partition)" in out
    # With min_jobs 1, only a side of one job (no interval from one job) stays undecided.
    decision = out.split("Decision (")[1].splitlines()
    assert [ln for ln in decision if "too few jobs to say" in ln and "n=1/" not in ln] == []
    assert any("no clear difference" in ln or "costs" in ln for ln in decision)
    cfg.write_text("[report]\nmin_jobs = 0\n")
    res = CliRunner().invoke(
        main, ["--config", str(cfg), "report", "--from", str(data_dir / "dump.txt")]
    )
    assert res.exit_code != 0 and "[report] min_jobs: must be at least 1" in res.output


def test_report_without_prices_says_so(data_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("")
    out = invoke(["report", "--from", str(data_dir / "dump.txt")], cfg)
    assert "prices: none configured" in out


def test_report_bad_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["report", "--from", str(tmp_path / "missing.txt")])
    assert res.exit_code != 0 and "cannot read" in res.output
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "no jobs" in invoke(["report", "--from", str(empty)])
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\x00\xff\xfe garbage\n\x1f\x1f\n")
    out = invoke(["report", "--from", str(binary)])
    assert "unparsed: " in out
    res = runner.invoke(main, ["report", "--from", str(empty), "--start", "yesterday-ish"])
    assert res.exit_code == 2


def test_job_text_and_json(data_dir: Path, prices_config: Path) -> None:
    dump = str(data_dir / "dump.txt")
    out = invoke(["job", "5003", "--from", dump], prices_config)
    assert "platform" in out and "energy" in out and "kWh" in out and "EUR" in out
    raw = json.loads(invoke(["job", "5003", "--from", dump, "--json"]))
    assert raw["record_status"] == "ok" and raw["record"]["job"]["id"] == "5003"
    assert "unparsed" in invoke(["job", "9002", "--from", dump])
    assert "none" in invoke(["job", "9000", "--from", dump])
    res = CliRunner().invoke(main, ["job", "424242", "--from", dump])
    assert res.exit_code == 1 and "not found" in res.output
    res = CliRunner().invoke(main, ["job", "1;rm", "--from", dump])
    assert res.exit_code == 2


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@needs("Debian's chromium (renders the HTML report)", CHROMIUM is not None, SETUP_DEPS)
def test_html_renders_in_headless_chromium(
    data_dir: Path, prices_config: Path, tmp_path: Path
) -> None:
    page = tmp_path / "report.html"
    invoke(["report", "--from", str(data_dir / "dump.txt"), "--html", str(page)], prices_config)
    html = page.read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert CHROMIUM is not None
    argv = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    # The browser parsed the SVG charts: busbw histograms with the median's interval band,
    # ratio charts with whiskers, elapsed percentiles, cost and kWh per work unit.
    assert dom.count('<svg class="busbw"') == 1 and '<rect class="ci"' in dom
    assert dom.count('<svg class="ratios"') >= 2 and dom.count('<g class="whisker"') > 10
    assert dom.count('<svg class="elapsed"') == 1
    assert dom.count('<svg class="bars"') >= 4
    assert "Cost per GPU-hour" in dom and "kWh per 1M tokens" in dom and "bare/bare-metal" in dom
    # Tables are HTML tables (no preformatted dump), with interval rows; no empty card.
    assert "<pre" not in dom and dom.count("<table>") >= 3 and '<tr class="ci">' in dom
    assert '<div class="chart"></div>' not in dom
    assert "no clear difference" in dom or "too few jobs" in dom
    # Axes read at round values: the dot charts' gridlines carry labels like 0.25 or 1.05,
    # never a range's own end such as 0.293 (report/axis.py).
    axes = [
        re.findall(r'<line class="grid"[^>]*>(?:</line>)?<text[^>]*>([^<]*)</text>', svg)
        for svg in dom.split("<svg ")[1:]
    ]
    axes = [labels for labels in axes if labels]
    assert len(axes) >= 3 and all(_round_axis(labels) for labels in axes), axes
    # Print: the page lays out on A4 (Chromium's own PDF printer).
    pdf = tmp_path / "report.pdf"
    argv[-2:] = ["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()]
    subprocess.run(argv, capture_output=True, timeout=120, check=True)
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 20_000


def _round_axis(labels: list[str]) -> bool:
    """Tick labels at multiples of one round step (1, 2, 2.5 or 5 times a power of 10), or
    on a wide log axis at 1, 2 or 5 times powers of 10."""
    values = [float(label.rstrip("k")) * (1000 if label.endswith("k") else 1) for label in labels]
    if len(values) < 2:
        return len(values) == 1
    steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
    if len(steps) == 1:
        step = steps.pop()
        on_step = all(abs(v / step - round(v / step)) < 1e-6 for v in values)
        return _mantissa(step) in (1, 2, 2.5, 5) and on_step
    return values == sorted(values) and all(v > 0 and _mantissa(v) in (1, 2, 5) for v in values)


def _mantissa(value: float) -> float:
    return round(value / 10 ** math.floor(math.log10(value)), 6)


def test_report_table_fits_80_columns(data_dir: Path, prices_config: Path) -> None:
    """Nine partition/class columns and the intervals: blocks of columns, wrapped sentences."""
    out = invoke(["report", "--from", str(data_dir / "dump.txt")], prices_config)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert out.count("partition / platform") >= 3  # the groups table in blocks
    assert "95% interval" in out and "(n=61)" in out  # P95 of 61 jobs: n too small (72)
