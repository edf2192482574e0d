"""Fixtures of the health tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
try:
    from hooks_fixture import installed_hooks
except ImportError:  # the hooks installer is not there yet: cluster drain tests skip
    installed_hooks = None

DATA = Path(__file__).resolve().parent.parent / "data" / "nvml"


@pytest.fixture
def recording() -> object:
    def path(name: str) -> str:
        return str(DATA / f"health_h100_{name}.json")

    return path
