"""The SPANK plugin `slurm_ai_spank.so`: build it and register it with Slurm.

slurmstepd loads the plugin in every step; at each task's start it reads the
job's plan file (`planfile.py`, written by the Prolog), computes the task's
binding with the C core (`native/sai_bind.c`) and applies it: CPU affinity,
memory policy, CUDA_VISIBLE_DEVICES, NIC variables, OMP_NUM_THREADS. No job
script change and no Python at task start.

Built on the node by `slurm-ai install` against the installed <slurm/spank.h>
(with `cbuild`, as the native AdminComment writer is), into a root-only
directory keyed by the Slurm version and a hash of the sources, and
registered by a `plugstack.conf.d/slurm-ai.conf` line:

    optional /var/lib/slurm-ai/spank/<key>/slurm_ai_spank.so spool=/var/spool/slurm-ai bind=auto

`optional`: a plugin that cannot load never stops a job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from slurm_ai import cbuild
from slurm_ai import spool as spoolmod
from slurm_ai.errors import CommandError, SlurmAIError, SpoolError

DEFAULT_SPANK_DIR = Path("/var/lib/slurm-ai/spank")
PLUGIN_NAME = "slurm_ai_spank.so"
HARNESS_NAME = "sai_bind_harness"
CORE_SOURCES = ("sai_bind.c", "sai_args.c", "sai_bind.h")
PLUGIN_SOURCES = (*CORE_SOURCES, "sai_spank.c")
HARNESS_SOURCES = (*CORE_SOURCES, "sai_bind_harness.c")
HEADERS = ("slurm_version.h", "spank.h")
CONF_NAME = "slurm-ai.conf"
BIND_MODES = ("auto", "off", "verbose")
# The tests' harness: any out-of-bounds access or undefined behaviour aborts it.
SANITIZE_FLAGS = ("-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all")


class SpankError(SlurmAIError):
    """The plugin cannot be built or registered."""


def source(name: str) -> bytes:
    return (resources.files("slurm_ai.topology") / "native" / name).read_bytes()


def _stage(build_dir: Path, names: Sequence[str]) -> list[Path]:
    paths = []
    for name in names:
        spoolmod.atomic_write_bytes(build_dir / name, source(name))
        paths.append(build_dir / name)
    return [p for p in paths if p.suffix == ".c"]


def _build(
    dest: Path, names: Sequence[str], extra: Sequence[str], env: Mapping[str, str] | None
) -> None:
    """Compile `names` into `dest` through a temporary file (never a half-written binary)."""
    cc = cbuild.find_compiler()
    if cc is None:
        raise SpankError("no C compiler (cc/gcc/clang) to build the SPANK plugin")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        sources = _stage(dest.parent, names)
        cbuild.compile_c(cc, ["-o", tmp, *map(str, sources), *extra], env)
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except (CommandError, OSError, SpoolError) as exc:
        raise SpankError(f"building {dest.name} failed: {exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def build_harness(
    dest_dir: Path, env: Mapping[str, str] | None = None, *, sanitize: bool = False
) -> Path:
    """The core's test harness (no Slurm needed), built if missing; `sanitize`:
    under ASan and UBSan (the tests). Raises SpankError."""
    extra = list(SANITIZE_FLAGS) if sanitize else []
    digest = hashlib.sha256(b"".join(source(n) for n in HARNESS_SOURCES))
    digest.update(" ".join(extra).encode())
    build_dir = dest_dir / f"harness-{digest.hexdigest()[:12]}"
    harness = build_dir / HARNESS_NAME
    if not harness.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        _build(harness, HARNESS_SOURCES, extra, env)
    return harness


def build_plugin(
    dest_dir: Path = DEFAULT_SPANK_DIR,
    *,
    include_dirs: Sequence[Path] = cbuild.DEFAULT_INCLUDE_DIRS,
    env: Mapping[str, str] | None = None,
) -> Path:
    """The plugin for the installed Slurm, compiled now unless cached. Raises SpankError."""
    include_dir = cbuild.find_slurm_include(HEADERS, include_dirs)
    if include_dir is None:
        raise SpankError(
            "Slurm headers not found (slurm/spank.h): install libslurm-dev (Debian) "
            "or slurm-devel (RPM)"
        )
    try:
        mismatch = cbuild.headers_match_slurm(include_dir, env)
        digest = hashlib.sha256(b"".join(source(n) for n in PLUGIN_SOURCES))
        for name in HEADERS:
            digest.update((include_dir / "slurm" / name).read_bytes())
        key = f"{cbuild.header_version(include_dir)}-{digest.hexdigest()[:12]}"
    except (OSError, ValueError) as exc:
        raise SpankError(f"cannot read the Slurm headers: {exc}") from exc
    if mismatch:
        raise SpankError(mismatch)
    try:
        spoolmod.ensure_private_dir(dest_dir)
        build_dir = dest_dir / key
        build_dir.mkdir(mode=0o755, exist_ok=True)  # slurmstepd loads it as root
    except (OSError, SpoolError) as exc:
        raise SpankError(f"SPANK plugin directory: {exc}") from exc
    plugin = build_dir / PLUGIN_NAME
    if cbuild.trusted_file(plugin):
        return plugin
    _build(plugin, PLUGIN_SOURCES, ["-shared", "-fPIC", f"-I{include_dir}"], env)
    return plugin


def conf_line(plugin: Path, spool_dir: Path, bind: str) -> str:
    """The plugstack.conf line: `optional` so a plugin that cannot load stops no job."""
    if bind not in BIND_MODES:
        raise SpankError(f"bind mode {bind!r}: expected one of {', '.join(BIND_MODES)}")
    for value in (str(plugin), str(spool_dir)):
        if any(ch.isspace() for ch in value):
            raise SpankError(f"{value!r}: plugstack.conf cannot hold a path with spaces")
    return f"optional {plugin} spool={spool_dir} bind={bind}\n"
