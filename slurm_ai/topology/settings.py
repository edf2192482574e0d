"""The [topology] config section (defaults are safe: nothing is required)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slurm_ai.errors import ConfigError

VISIBLE_CHOICES = ("auto", "index", "relative", "uuid")
SPANK_BIND_CHOICES = ("auto", "off", "verbose")


@dataclass(frozen=True)
class TopologySettings:
    nvml_timeout_s: float = 5.0
    cache_max_age_s: float = 3600.0
    visible_devices: str = "auto"
    nic_exclude: list[str] = field(default_factory=list)
    own_gpu_only: bool = False
    override_user_env: bool = False
    spank_bind: str = "auto"
    # [accounting] mark_dir: where `bind` notes, in the job's own mark directory,
    # that it pinned the job (the Epilog records which path pinned it). None
    # without a config file (no hooks, no record): nothing to note.
    mark_dir: Path | None = None


def load_settings(config: Any) -> TopologySettings:
    """Read [topology] from a Config; raises ConfigError on bad values."""
    from slurm_ai.accounting.settings import DEFAULT_MARK_DIR  # the config is loaded already

    section = config.section("topology")
    visible = section.get_str("visible_devices", "auto")
    if visible not in VISIBLE_CHOICES:
        raise ConfigError(
            f"[topology] visible_devices = {visible!r}: expected one of {', '.join(VISIBLE_CHOICES)}"
        )
    spank_bind = section.get_str("spank_bind", "auto")
    if spank_bind not in SPANK_BIND_CHOICES:
        raise ConfigError(
            f"[topology] spank_bind = {spank_bind!r}: expected one of {', '.join(SPANK_BIND_CHOICES)}"
        )
    return TopologySettings(
        nvml_timeout_s=section.get_float("nvml_timeout_s", 5.0, high=600.0, positive=True),
        cache_max_age_s=section.get_float("cache_max_age_s", 3600.0),
        visible_devices=visible,
        nic_exclude=section.get_str_list("nic_exclude", []),
        own_gpu_only=section.get_bool("own_gpu_only", False),
        override_user_env=section.get_bool("override_user_env", False),
        spank_bind=spank_bind,
        mark_dir=Path(config.section("accounting").get_str("mark_dir", DEFAULT_MARK_DIR)),
    )
