"""Fixtures for the report tests: the recorded dump, prices, golden-file compare."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hooks_fixture import installed_hooks  # noqa: F401  (the cluster test's hooks)

DATA = Path(__file__).resolve().parent.parent / "data" / "report"
PRICES_TOML = """
[prices]
currency = "EUR"
cost_per_kwh = 0.25
pue = 1.3
co2_kg_per_kwh = 0.35
[prices.partitions.bare]
cost_per_gpu_hour = 1.80
[prices.partitions.vm]
cost_per_kwh = 0.30
cost_per_node_hour = 0.10
cost_per_gpu_hour = 1.60
"""


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture
def prices_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(PRICES_TOML)
    return path


@pytest.fixture
def golden() -> Callable[[str, str], None]:
    """compare(name, text): equal to tests/data/report/golden/name, or rewrite with UPDATE_GOLDEN=1."""

    def compare(name: str, text: str) -> None:
        path = DATA / "golden" / name
        if os.environ.get("UPDATE_GOLDEN") == "1":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"{path} missing: run UPDATE_GOLDEN=1 pytest tests/report"
        expected = path.read_text()
        assert text == expected, (
            f"{name} differs from the golden file; if the change is intended, "
            "regenerate with: UPDATE_GOLDEN=1 pytest tests/report"
        )

    return compare
