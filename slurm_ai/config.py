"""Configuration: one TOML file, every section owned by the module that uses it.

The file is /etc/slurm-ai/config.toml unless `--config` or SLURM_AI_CONFIG says
otherwise (hooks get the path baked into their one-line shims, because slurmd
runs them with an almost empty environment). A missing file means defaults,
which are safe: nothing drains, nothing is written outside the spool.

Modules read their own section through `Config.section(name)` and the typed
getters below, so adding a setting touches only the module that owns it.
"""

from __future__ import annotations

import os
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

    def get_int(self, key: str, default: int) -> int:
        return self._get(key, default, (int,))

    def get_float(self, key: str, default: float) -> float:
        return float(self._get(key, default, (int, float)))

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
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        if named:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config(path=None)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return Config(path=path, data=data)
