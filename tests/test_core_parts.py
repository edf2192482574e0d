"""--require-core: a skip for a missing core part fails; other skips stay skips."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest
from core_parts import import_module, missing, needs

@needs("a compiler", False, "gcc")
def test_marked():
    pass

def test_missing_in_body():
    missing("a chromium", "chromium")

def test_missing_module():
    import_module("no_such_module_of_slurm_ai", "pip install it")

@pytest.fixture(scope="session")
def built():
    missing("a helper", "make")

def test_through_fixture(built):
    pass

def test_no_gpu_here():
    pytest.skip("no GPU on this machine")

@needs("python", True, "nothing")
def test_present():
    pass
"""
CONFTEST = """
from core_parts import pytest_addoption, pytest_runtest_makereport, pytest_runtest_setup

def pytest_configure(config):
    config.addinivalue_line("markers", "core_part(part, present, install): core part")
"""


def test_missing_core_parts_skip_by_default_and_fail_with_require_core(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-ra")
    result.assert_outcomes(passed=1, skipped=5)
    result.stdout.fnmatch_lines(["*core part missing: a compiler (install: gcc)*"])
    result = pytester.runpytest("--require-core", "-ra")
    # Setup-time skips (marker, fixture) become errors, in-test ones failures: both fail CI.
    result.assert_outcomes(passed=1, skipped=1, failed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*--require-core: a chromium is missing*install it: chromium*",
            "*SKIPPED*no GPU on this machine*",
        ]
    )
    assert "no_such_module_of_slurm_ai" in result.stdout.str()
