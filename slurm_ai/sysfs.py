"""Read-only access to /sys and /proc under a configurable root.

Every topology and energy probe reads the host through one `Sysfs` object, so a
node captured with `slurm-ai capture DIR` (a copy of the relevant sysfs/procfs
subset, symlinks kept) can be read in place of the live machine: `Sysfs(DIR)`.
"""

from __future__ import annotations

import os
from pathlib import Path


class Sysfs:
    """Filesystem view rooted at `root` ("/" for the live host)."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Sysfs({str(self.root)!r})"

    @property
    def is_live(self) -> bool:
        return self.root.resolve() == Path("/")

    def path(self, host_path: str) -> Path:
        """Map an absolute host path ("/sys/class/net") into this root."""
        return self.root / host_path.lstrip("/")

    def exists(self, host_path: str) -> bool:
        return self.path(host_path).exists()

    def read_text(self, host_path: str, default: str | None = None) -> str | None:
        """Stripped file content, or `default` when absent or unreadable."""
        try:
            return self.path(host_path).read_text(errors="replace").strip()
        except OSError:
            return default

    def read_int(self, host_path: str, default: int | None = None) -> int | None:
        text = self.read_text(host_path)
        if text is None:
            return default
        try:
            return int(text, 0) if text.startswith("0x") else int(text)
        except ValueError:
            return default

    def listdir(self, host_path: str) -> list[str]:
        """Sorted entries of a directory; empty when it does not exist."""
        try:
            return sorted(os.listdir(self.path(host_path)))
        except OSError:
            return []

    def realpath(self, host_path: str) -> str | None:
        """Resolve symlinks inside the root; returns a host-style absolute path."""
        full = self.path(host_path)
        if not full.exists():
            return None
        resolved = Path(os.path.realpath(full))
        root = Path(os.path.realpath(self.root))
        try:
            return "/" + str(resolved.relative_to(root))
        except ValueError:
            # A link pointing outside a captured tree: keep the raw target.
            return str(resolved)

    def readlink_name(self, host_path: str) -> str | None:
        """Last component of a symlink's target (e.g. a driver name)."""
        try:
            return os.path.basename(os.readlink(self.path(host_path)))
        except OSError:
            return None


def parse_cpu_list(text: str | None) -> list[int]:
    """Parse a kernel CPU list ("0-3,8,10-11") into sorted unique ints.

    Raises ValueError on malformed input so callers can say what was wrong.
    """
    if text is None:
        return []
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = int(lo_text), int(hi_text)
            if hi < lo:
                raise ValueError(f"bad CPU range {part!r}")
            cpus.update(range(lo, hi + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def format_cpu_list(cpus: list[int] | set[int]) -> str:
    """Inverse of parse_cpu_list: [0,1,2,3,8] -> "0-3,8"."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    start = prev = None
    for cpu in ordered:
        if start is None:
            start = prev = cpu
        elif prev is not None and cpu == prev + 1:
            prev = cpu
        else:
            ranges.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = cpu
    if start is not None:
        ranges.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(ranges)


def parse_cpu_mask(text: str | None) -> list[int]:
    """Parse a hex CPU mask as in cpumap ("ff,00000000") into CPU ids."""
    if not text:
        return []
    value = int(text.replace(",", ""), 16)
    return [bit for bit in range(value.bit_length()) if value >> bit & 1]
