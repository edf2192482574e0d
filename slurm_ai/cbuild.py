"""Building slurm-ai's C parts on the node, against the installed Slurm.

Shared by the native AdminComment writer (`accounting/native.py`) and the
SPANK plugin (`topology/spank.py`): both compile on the node against the
installed <slurm/*.h> (libslurm-dev / slurm-devel), so their struct layouts
and ABI always match the Slurm that loads or links them. Everything here runs
as root from `slurm-ai install` or a hook: one subprocess path (proc.py), a
PATH that finds the assembler and linker under slurmd, and a check that a
cached binary is root-owned and not writable by others before it is used.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

from slurm_ai.errors import CommandError
from slurm_ai.proc import run_command

DEFAULT_INCLUDE_DIRS = (Path("/usr/include"), Path("/usr/local/include"))
BUILD_TIMEOUT_S = 120.0
BUILD_PATH = ("/usr/local/bin", "/usr/bin", "/bin")

_VERSION_LINE = re.compile(r"^\s*#\s*define\s+SLURM_VERSION_NUMBER\s+(0x[0-9a-fA-F]+|\d+)", re.M)


def find_compiler() -> str | None:
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    return None


def find_slurm_include(
    headers: Sequence[str], include_dirs: Sequence[Path] = DEFAULT_INCLUDE_DIRS
) -> Path | None:
    """The include directory holding all of slurm/<headers>, if any."""
    for base in include_dirs:
        if all((base / "slurm" / name).is_file() for name in headers):
            return base
    return None


def header_version(include_dir: Path) -> str:
    """'22.05.8' from <slurm/slurm_version.h>'s SLURM_VERSION_NUMBER. Raises ValueError."""
    text = (include_dir / "slurm" / "slurm_version.h").read_text(errors="replace")
    match = _VERSION_LINE.search(text)
    if not match:
        raise ValueError(f"no SLURM_VERSION_NUMBER in {include_dir}/slurm/slurm_version.h")
    number = int(match.group(1), 0)
    return f"{number >> 16 & 0xFF}.{number >> 8 & 0xFF:02d}.{number & 0xFF}"


def installed_slurm_version(env: Mapping[str, str] | None = None) -> str | None:
    """'22.05.8' from `sinfo -V` ("slurm-wlm 22.05.8" / "slurm 24.11.5")."""
    try:
        out = run_command(["sinfo", "-V"], timeout=10, extra_env=env).stdout
    except CommandError:
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return f"{int(match[1])}.{int(match[2]):02d}.{int(match[3])}" if match else None


def headers_match_slurm(include_dir: Path, env: Mapping[str, str] | None = None) -> str | None:
    """None when the headers are of the running Slurm's release, else why not."""
    version = header_version(include_dir)
    running = installed_slurm_version(env)
    if running is not None and running.split(".")[:2] != version.split(".")[:2]:
        # Headers of another release than the Slurm in use: the struct
        # layouts may differ, which is exactly what building here avoids.
        return (
            f"Slurm headers are {version} but Slurm is {running}: install the matching libslurm-dev"
        )
    return None


def trusted_file(path: Path, *, executable: bool = True) -> bool:
    """A cached build is used only if it is a root-owned file nobody else can write."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        and (os.geteuid() != 0 or info.st_uid == 0)
        and (not executable or bool(info.st_mode & stat.S_IXUSR))
    )


def build_env(cc: str, env: Mapping[str, str] | None) -> dict[str, str]:
    """slurmd runs hooks without PATH, and the compiler driver finds `as` and
    `ld` through PATH (collect2: "cannot find 'ld'" otherwise)."""
    path = os.environ.get("PATH") or ""
    dirs = [str(Path(cc).parent), *path.split(os.pathsep), *BUILD_PATH]
    return {**(env or {}), "PATH": os.pathsep.join(dict.fromkeys(d for d in dirs if d))}


def link_flags(include_dir: Path) -> list[str]:
    """-L and an rpath for a Slurm installed under its own prefix (e.g. /opt/slurm)."""
    if include_dir in DEFAULT_INCLUDE_DIRS:
        return []  # the linker's and loader's default paths
    for lib in ("lib64", "lib"):
        libdir = include_dir.parent / lib
        if (libdir / "libslurm.so").exists():
            return [f"-L{libdir}", f"-Wl,-rpath,{libdir}"]
    return []


def compile_c(cc: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Run `cc ARGS` (with -O2 -Wall). Raises CommandError with the compiler's message."""
    run_command([cc, "-O2", "-Wall", *args], timeout=BUILD_TIMEOUT_S, extra_env=build_env(cc, env))
