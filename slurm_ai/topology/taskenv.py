"""The environment a rank gets, shared by `bind` and the TaskProlog.

Values are validated, not quoted: Slurm's TaskProlog takes everything after
`export NAME=` literally (no shell parsing), so a quote would become part of
the value. Anything outside a conservative character set is dropped with a
warning instead of being passed on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
VALUE = re.compile(r"^[A-Za-z0-9_.,:=/+@-]*$")
# Set by Slurm itself (ROCR_VISIBLE_DEVICES for AMD GPUs); ours replaces it (reordered,
# same GPUs).
SLURM_OWNED = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def task_env(
    planned: Mapping[str, str],
    current: Mapping[str, str],
    *,
    override_user_env: bool,
    warnings: list[str],
) -> dict[str, str]:
    """Variables to set: the plan's, minus the ones the user already chose."""
    out: dict[str, str] = {}
    for name, value in planned.items():
        if not NAME.match(name) or not VALUE.match(value) or len(value) > 4096:
            warnings.append(f"not exporting {name[:40]!r}: unsafe value {value[:60]!r}")
            continue
        if name in current and name not in SLURM_OWNED and not override_user_env:
            continue  # the user set it on purpose
        out[name] = value
    return out


def export_lines(env: Mapping[str, str]) -> list[str]:
    return [f"export {name}={value}" for name, value in sorted(env.items())]
