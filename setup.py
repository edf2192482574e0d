"""Build of the optional C part (metadata: setup.cfg).

slurm_ai/report/native/*.c is the report's per-record decode and dump reading in C,
the module slurm_ai.report._fastrow (see native/fastrow.h and slurm_ai/report/facts.py). It is optional: when it cannot be built (no C
compiler, no Python headers, no zlib headers) the install still succeeds and the
report decodes every record in Python, with the same figures, only slower. It
links Intel ISA-L's inflate (libisal-dev) when its header is found, else zlib;
SLURM_AI_FASTROW_INFLATER=zlib forces zlib.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ISAL_HEADER = "isa-l/igzip_lib.h"
NATIVE = Path("slurm_ai/report/native")
INCLUDE_DIRS = ("/usr/include", "/usr/local/include")


def fastrow(inflater: str) -> Extension:
    isal = inflater == "isa-l"
    return Extension(
        "slurm_ai.report._fastrow",
        sources=[str(source) for source in sorted(NATIVE.glob("*.c"))],
        depends=[str(NATIVE / "fastrow.h")],
        define_macros=[("FASTROW_ISAL", "1")] if isal else [],
        libraries=["isal"] if isal else ["z"],
        extra_compile_args=[
            "-O2",
            "-ffp-contract=off",
            "-fvisibility=hidden",  # one symbol out: PyInit__fastrow
            "-Wall",
            "-Wextra",
            "-Wno-unused-parameter",
        ],
    )


def inflater() -> str:
    wanted = os.environ.get("SLURM_AI_FASTROW_INFLATER", "")
    if wanted in ("zlib", "isa-l"):
        return wanted
    found = any((Path(d) / ISAL_HEADER).is_file() for d in INCLUDE_DIRS)
    return "isa-l" if found else "zlib"


class OptionalBuildExt(build_ext):
    """build_ext that never fails the install: the pure-Python path stays."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # a compiler or header missing: any error
            if "FASTROW_ISAL" in dict(ext.define_macros):
                print(f"slurm-ai: _fastrow with ISA-L failed ({exc}); trying zlib", file=sys.stderr)
                try:
                    super().build_extension(fastrow("zlib"))
                    return
                except Exception as exc2:
                    exc = exc2
            print(
                f"slurm-ai: optional C extension _fastrow not built ({exc}); "
                "the report decodes records in Python (same figures, slower)",
                file=sys.stderr,
            )


setup(ext_modules=[fastrow(inflater())], cmdclass={"build_ext": OptionalBuildExt})
