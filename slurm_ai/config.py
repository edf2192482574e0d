"""Configuration: one TOML file, every section owned by the module that uses it.

The file is /etc/slurm-ai/config.toml unless `--config` or SLURM_AI_CONFIG says
otherwise (hooks get the path baked into their one-line shims, because slurmd
runs them with an almost empty environment). A missing file means defaults,
which are safe: nothing drains, nothing is written outside the spool.

Modules read their own section through `Config.section(name)` and the typed
getters below, so adding a setting touches only the module that owns it.
"""

from __future__ import annotations

import math
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from slurm_ai.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/slurm-ai/config.toml"
DEFAULT_SPOOL_DIR = "/var/spool/slurm-ai"
DEFAULT_LOG_FILE = "/var/log/slurm-ai/slurm-ai.log"

T = TypeVar("T")
# Default upper bounds of numeric settings: far above any sensible value (a year is 3e7 s,
# a price per kWh is < 10), far below what overflows a sum or a C integer.
FLOAT_HIGH = 1e12
INT_HIGH = 2**31 - 1


@dataclass(frozen=True)
class Section:
    """A config table with typed getters that name the offending key on error."""

    name: str
    values: Mapping[str, Any] = field(default_factory=dict)

    def _get(self, key: str, default: T, kinds: tuple[type, ...]) -> T:
        if key not in self.values:
            return default
        value = self.values[key]
        # bool is an int in Python: keep "true" out of numeric settings.
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(f"[{self.name}] {key}: expected a number, got a boolean")
        if not isinstance(value, kinds):
            wanted = " or ".join(k.__name__ for k in kinds)
            raise ConfigError(f"[{self.name}] {key}: expected {wanted}, got {type(value).__name__}")
        return value  # type: ignore[return-value]

    def get_str(self, key: str, default: str) -> str:
        return self._get(key, default, (str,))

    def get_opt_str(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"[{self.name}] {key}: expected a string")
        return value

    def get_int(self, key: str, default: int, low: int = 0, high: int = INT_HIGH) -> int:
        """An integer in [low, high]: every numeric setting slurm-ai has is a count, a
        size or a limit, never negative; a value past `high` is a typo, not a wish."""
        value = self._get(key, default, (int,))
        self._in_range(key, value, low, high)
        return value

    def get_float(
        self,
        key: str,
        default: float,
        low: float = 0.0,
        high: float = FLOAT_HIGH,
        positive: bool = False,
    ) -> float:
        """A finite number in [low, high] (above 0 with `positive`). TOML accepts nan
        and inf (and 1e400 reads as inf): they would reach every sum, table and JSON
        document downstream, so they stop here with the key's name."""
        value = float(self._get(key, default, (int, float)))
        if not math.isfinite(value):
            raise ConfigError(f"[{self.name}] {key}: must be a finite number, got {value}")
        self._in_range(key, value, low, high)
        if positive and value <= 0:
            raise ConfigError(f"[{self.name}] {key}: must be positive, got {value:g}")
        return value

    def _in_range(self, key: str, value: float, low: float, high: float) -> None:
        if value < low:
            if low == 0:
                raise ConfigError(f"[{self.name}] {key}: must not be negative, got {value:g}")
            raise ConfigError(f"[{self.name}] {key}: must be at least {low:g}, got {value:g}")
        if value > high:
            raise ConfigError(f"[{self.name}] {key}: must be at most {high:g}, got {value:g}")

    def get_bool(self, key: str, default: bool) -> bool:
        return self._get(key, default, (bool,))

    def get_str_list(self, key: str, default: list[str]) -> list[str]:
        value = self._get(key, default, (list,))
        if not all(isinstance(v, str) for v in value):
            raise ConfigError(f"[{self.name}] {key}: expected a list of strings")
        return list(value)

    def get_int_list(self, key: str, default: list[int]) -> list[int]:
        value = self._get(key, default, (list,))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"[{self.name}] {key}: expected a list of integers")
        return list(value)

    def get_table(self, key: str) -> Section:
        value = self.values.get(key, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{self.name}] {key}: expected a table")
        return Section(f"{self.name}.{key}", value)


@dataclass(frozen=True)
class Config:
    """The parsed configuration file (or defaults when there is none)."""

    path: str | None
    data: Mapping[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Section:
        value = self.data.get(name, {})
        if not isinstance(value, Mapping):
            raise ConfigError(f"{self.path}: [{name}] must be a table")
        return Section(name, value)

    # Core settings used by several modules.
    @property
    def spool_dir(self) -> Path:
        return Path(self.section("spool").get_str("dir", DEFAULT_SPOOL_DIR))

    @property
    def log_file(self) -> str:
        return self.section("log").get_str("file", DEFAULT_LOG_FILE)

    @property
    def slurm_conf(self) -> str | None:
        """SLURM_CONF for Slurm client commands (hooks do not inherit it)."""
        return self.section("slurm").get_opt_str("conf")

    def slurm_env(self) -> dict[str, str]:
        """Extra environment for Slurm client commands run by slurm-ai."""
        conf = self.slurm_conf or os.environ.get("SLURM_CONF")
        return {"SLURM_CONF": conf} if conf else {}


def config_path(explicit: str | None = None) -> str:
    return explicit or os.environ.get("SLURM_AI_CONFIG") or DEFAULT_CONFIG_PATH


def load_config(explicit: str | None = None) -> Config:
    """Load the config; a missing default file gives defaults.

    An explicitly named file that is missing, or any malformed file, raises
    ConfigError with the path and the parser's message.
    """
    path = config_path(explicit)
    named = explicit is not None or "SLURM_AI_CONFIG" in os.environ
    found = True
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if named:
            raise ConfigError(f"config file {path} does not exist") from None
        data, found = {}, False
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    config = Config(path=path if found else None, data=data)
    _use_nvml_recording(config)
    return config


def nvml_recording(config: Config) -> str | None:
    """`[nvml] recording` as written ("{node}" not yet expanded); ConfigError if bad."""
    recording = config.section("nvml").get_opt_str("recording")
    if recording is not None and not recording.startswith("/"):
        raise ConfigError(f"[nvml] recording = {recording!r}: expected an absolute path")
    return recording


def _use_nvml_recording(config: Config) -> None:
    """`[nvml] recording`: every entry point (hooks, CLI, HealthCheckProgram, agent)
    loads the config once, and the recording replaces the driver for all of them."""
    from slurm_ai.nvml import use_site_recording

    recording = nvml_recording(config)
    if recording is not None:
        node = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]
        recording = recording.replace("{node}", node)
    use_site_recording(recording)
