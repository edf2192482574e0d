"""Template tests: the hooks installed into the local cluster (tests/hooks_fixture.py)."""

import sys
from pathlib import Path

# The admin tests' cluster helpers (submit, wait, read records).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "admin"))

from hooks_fixture import installed_hooks  # noqa: F401  (re-exported fixture)
