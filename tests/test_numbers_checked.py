"""Every number is checked where it enters: configuration, records, sacct rows.

Each numeric setting of the reference table (admin/settings_ref.py) set to NaN,
inf, -inf, a negative value or an absurd one (1e300) is a ConfigError naming the
section and key, from the loader of the module that owns it. Records whose every
number is NaN, inf or absurd, and sacct rows with absurd numbers, never crash
`report` or `job`, never print nan/inf, and their JSON is JSON.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from slurm_ai.admin.settings_ref import SETTINGS
from slurm_ai.cli import main
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError
from slurm_ai.record import TOKEN_PREFIX, decode_token

DATA = Path(__file__).parent / "data" / "report"


def _loaders() -> dict[str, Callable[[Config], Any]]:
    from slurm_ai.accounting.settings import AccountingSettings
    from slurm_ai.agent.daemon import AgentSettings
    from slurm_ai.energy.hook import EnergySettings
    from slurm_ai.health.settings import HealthSettings
    from slurm_ai.report.prices import load_prices
    from slurm_ai.topology.settings import load_settings

    return {
        "accounting": AccountingSettings.from_config,
        "agent": AgentSettings.from_config,
        "energy": lambda c: EnergySettings.from_ctx(SimpleNamespace(config=c)),  # type: ignore[arg-type]
        "health": HealthSettings.from_config,
        "prices": load_prices,
        "report": load_prices,
        "topology": load_settings,
    }


def _numeric() -> list[tuple[str, str, tuple[str, ...]]]:
    """(section, key, path of tables) for every numeric setting, table sub-keys too."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for s in SETTINGS:
        if s.kind == "value" and isinstance(s.default, (int, float)):
            if not isinstance(s.default, bool):
                out.append((s.section, s.key, ()))
        elif s.kind == "table" and s.section in ("health", "prices"):
            for sub in s.subkeys:
                out.append((s.section, sub, (s.key, "p1")))
    return out


NUMERIC = _numeric()
BAD = [float("nan"), float("inf"), float("-inf"), -1.0, 1e300]


def test_the_reference_lists_the_numeric_settings_this_test_covers() -> None:
    assert len(NUMERIC) >= 45
    assert {section for section, _, _ in NUMERIC} <= set(_loaders())


@pytest.mark.parametrize(("section", "key", "tables"), NUMERIC)
@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf", "negative", "1e300"])
def test_a_bad_number_in_any_setting_is_a_config_error_naming_it(
    section: str, key: str, tables: tuple[str, ...], bad: float
) -> None:
    values: dict[str, Any] = {key: bad}
    for name in reversed(tables):
        values = {name: values}
    config = Config(path="test.toml", data={section: values})
    with pytest.raises(ConfigError, match=re.escape(key)):
        _loaders()[section](config)


def test_toml_nan_and_overflow_are_refused_from_a_real_file(tmp_path: Path) -> None:
    from slurm_ai.config import load_config
    from slurm_ai.report.prices import load_prices

    for text in ("nan", "inf", "-inf", "1e400"):
        path = tmp_path / "c.toml"
        path.write_text(f"[prices]\ncost_per_kwh = {text}\n")
        with pytest.raises(ConfigError, match=r"\[prices\] cost_per_kwh: must be a finite"):
            load_prices(load_config(str(path)))
    res = CliRunner().invoke(
        main, ["--config", str(path), "report", "--from", str(DATA / "dump.txt")]
    )
    assert res.exit_code != 0 and "cost_per_kwh" in res.output and "Traceback" not in res.output


def _poisoned_dump(tmp_path: Path, value: float, absurd_sacct: bool) -> Path:
    """The recorded dump with every number of every record set to `value`."""

    def poison(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: poison(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [poison(v) for v in obj]
        if isinstance(obj, (int, float)) and not isinstance(obj, bool):
            return value
        return obj

    head, *rows = (DATA / "dump.txt").read_text().splitlines()
    out = [head]
    for i, row in enumerate(rows[:60]):
        fields = row.split("\x1f")
        if fields[-1].startswith(TOKEN_PREFIX):
            record = decode_token(fields[-1])
            bad = {**poison(record), "v": record["v"]}
            raw = json.dumps(bad, separators=(",", ":"), sort_keys=True).encode()
            fields[-1] = TOKEN_PREFIX + zlib.compress(raw, 9).hex()
        if absurd_sacct and i % 3 == 0:  # NNodes, End, ElapsedRaw
            fields[6], fields[10], fields[11] = "9" * 20, "9" * 23, "9" * 21
        out.append("\x1f".join(fields))
    path = tmp_path / "dump.txt"
    path.write_text("\n".join(out) + "\n")
    return path


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


NOT_A_NUMBER = re.compile(r"\b(nan|inf|infinity)\b", re.IGNORECASE)


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), -1e300, 1e300], ids=["nan", "inf", "-1e300", "1e300"]
)
def test_report_and_job_never_show_a_non_finite_or_absurd_number(
    tmp_path: Path, value: float
) -> None:
    dump = _poisoned_dump(tmp_path, value, absurd_sacct=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[prices]\ncost_per_kwh = 0.25\npue = 1.3\nco2_kg_per_kwh = 0.3\n")
    runner = CliRunner()
    for fmt in ("table", "json", "csv"):
        res = runner.invoke(
            main, ["--config", str(cfg), "report", "--from", str(dump), "--format", fmt]
        )
        assert res.exit_code == 0, res.output
        assert not NOT_A_NUMBER.search(res.output), (fmt, NOT_A_NUMBER.search(res.output))
        if fmt == "json":
            _strict_json(res.output)
    job = runner.invoke(main, ["--config", str(cfg), "job", "5000", "--from", str(dump)])
    assert job.exit_code == 0, job.output
    assert not NOT_A_NUMBER.search(job.output) and "e+300" not in job.output, job.output
    raw = runner.invoke(main, ["--config", str(cfg), "job", "5000", "--json", "--from", str(dump)])
    assert raw.exit_code == 0
    _strict_json(raw.output)


def test_json_read_from_others_keeps_the_record_and_drops_only_the_bad_number() -> None:
    from slurm_ai import jsontext

    data = jsontext.loads('{"a": NaN, "b": Infinity, "c": -Infinity, "d": 1e400, "e": 2.5}')
    assert data == {"a": None, "b": None, "c": None, "d": None, "e": 2.5}
    assert jsontext.dumps({"x": [float("nan"), 1.0, {"y": float("inf")}]}) == (
        '{"x": [null, 1.0, {"y": null}]}'
    )


def test_a_marks_file_with_nan_is_refused_not_summed() -> None:
    from slurm_ai import jsontext
    from slurm_ai.accounting.marks import MarkError, validate

    for text in ('{"tokens": NaN}', '{"tokens": 1e400}', '{"epochs": -Infinity}'):
        with pytest.raises(MarkError):
            validate(jsontext.loads(text))


@pytest.mark.parametrize(
    "args",
    [
        ["healthcheck", "--timeout", "nan"],
        ["healthcheck", "--min-busbw", "nan"],
        ["healthcheck", "--max-small-time-us", "inf"],
        ["report", "--timeout", "nan"],
        ["agent", "--interval", "nan"],
        ["agent", "--duration", "inf"],
    ],
)
def test_a_non_finite_number_on_the_command_line_is_a_usage_error(args: list[str]) -> None:
    """click's FloatRange lets NaN through (every comparison with NaN is false)."""
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "finite" in res.output or "range" in res.output, res.output
