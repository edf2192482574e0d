"""Other projects' machines (tests/data/hwloc: mpibind's and hwloc's), and hwloc's tools.

hwloc (`lstopo`, `hwloc-calc`) is a core part: scripts/setup-deps installs Debian's
package, and a test that needs it fails under --require-core when it is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core_parts import SETUP_DEPS, needs

DATA = Path(__file__).resolve().parent.parent / "data" / "hwloc"
MPIBIND = DATA / "mpibind"
HWLOC = DATA / "hwloc"
V1 = DATA / "v1"
MPIBIND_MACHINES = {
    "coral-lassen": MPIBIND / "coral-lassen.xml",
    "epyc-corona": MPIBIND / "epyc-corona.xml",
    "cts1-quartz": MPIBIND / "cts1-quartz-smt1.xml",
}
HWLOC_XML = {
    "24em64t-2n6c2t-pci": HWLOC / "xml" / "24em64t-2n6c2t-pci.xml",
    "32em64t-2n8c2t-pci-normalio": HWLOC / "xml" / "32em64t-2n8c2t-pci-normalio.xml",
}
ALL_XML = {**MPIBIND_MACHINES, **HWLOC_XML}
CAPTURES = sorted(p.name[: -len(".tar.bz2")] for p in (HWLOC / "linux").glob("*.tar.bz2"))

LSTOPO = shutil.which("lstopo") or shutil.which("lstopo-no-graphics")
HWLOC_CALC = shutil.which("hwloc-calc")
HWLOC_INSTALL = f"Debian's hwloc package: apt-get install hwloc ({SETUP_DEPS})"
needs_lstopo = needs("hwloc's lstopo", LSTOPO is not None, HWLOC_INSTALL)
needs_hwloc_calc = needs("hwloc's hwloc-calc", HWLOC_CALC is not None, HWLOC_INSTALL)


def run_tool(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-500:]}"
    return done.stdout
