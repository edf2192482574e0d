"""Skips for a missing core part, which CI (`pytest --require-core`, set by .ci/run) fails.

A developer's laptop may lack a C compiler or torch and still run the rest; a CI machine
must not: there a skipped core feature is an untested feature. So a test that cannot run
without one of the project's own parts (built or installed by scripts/setup-deps) skips
through this module, and the skip carries which part is missing and what installs it.
Skips for hardware or privileges a machine may legitimately lack (a GPU, /dev/kmsg, root)
stay plain `pytest.skip` and are listed by reason (`-ra`).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType
from typing import NoReturn

import pytest
from _pytest.outcomes import Skipped

MARKER = "core_part"


class MissingCorePart(Skipped):
    """A skip because a core part is missing; `part` and `install` say which and how."""

    def __init__(self, part: str, install: str) -> None:
        super().__init__(f"core part missing: {part} (install: {install})", _use_item_location=True)
        self.part = part
        self.install = install


def missing(part: str, install: str) -> NoReturn:
    raise MissingCorePart(part, install)


def needs(part: str, present: bool, install: str) -> pytest.MarkDecorator:
    """Mark a test (or module) that needs `part`; conftest skips it when not `present`."""
    return pytest.mark.core_part(part=part, present=present, install=install)


def import_module(name: str, install: str) -> ModuleType:
    """`pytest.importorskip` for a module the project requires."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python module {name}", install)


# -- hooks (tests/conftest.py imports them) ---------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-core",
        action="store_true",
        help="fail (not skip) tests whose core part is missing (CI: .ci/run sets it)",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers(MARKER):
        if not mark.kwargs["present"]:
            missing(mark.kwargs["part"], mark.kwargs["install"])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    excinfo = call.excinfo
    if (
        report.skipped
        and excinfo is not None
        and isinstance(excinfo.value, MissingCorePart)
        and item.config.getoption("--require-core")
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"--require-core: {excinfo.value.part} is missing, so this core feature would "
            f"go untested; install it: {excinfo.value.install}"
        )


SETUP_DEPS = "scripts/setup-deps"
DEV_EXTRA = "pip install -e '.[all,dev]' (scripts/setup-deps)"
# The report's optional C extension (slurm_ai/report/native/*.c): built by pip install.
FASTROW_BUILD = (
    "gcc python3-dev zlib1g-dev libisal-dev, then pip install -e '.[all,dev]' or "
    "python3 setup.py build_ext --inplace (scripts/setup-deps)"
)
# The native AdminComment writer: built on the node against its Slurm headers.
TOOLCHAIN = "a C compiler and the Slurm headers (native AdminComment writer)"
TOOLCHAIN_PACKAGES = f"gcc libc6-dev libslurm-dev ({SETUP_DEPS})"
