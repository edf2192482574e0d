"""The [accounting] config section, read once into a typed object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slurm_ai.accounting.spoolmode import SpoolMode
from slurm_ai.accounting.spoolmode import decide as decide_spool_mode
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError

DEFAULT_MARK_DIR = "/var/spool/slurm-ai-marks"
DEFAULT_HOLD_DIR = "/run/slurm-ai/held"


@dataclass(frozen=True)
class AccountingSettings:
    backend: str = "auto"
    timeout_s: float = 20.0
    shared_spool: bool = True
    deliver_inline: bool = True
    inline_budget_s: float = 10.0
    batch_size: int = 100
    max_writes_per_s: float = 20.0
    partial_after_s: float = 600.0
    stale_after_s: float = 31 * 86400.0
    settle_s: float = 120.0
    mark_dir: Path = Path(DEFAULT_MARK_DIR)
    mark_max_bytes: int = 4096
    # None: decide from the Slurm version (see backend.sacctmgr_folds_case).
    sacctmgr_folds_case: bool | None = None
    foreign_case: str = "protect"
    # Per-job detail files of summarised records; None: <spool dir>/detail.
    detail_dir: Path | None = None
    detail_retention_days: float = 180.0
    # Node-local spools: where Epilogs leave their node file for the job's one
    # writer (docs/accounting.md "Node-local spools"); None: each node delivers.
    gather_dir: Path | None = None
    # Where the hooks keep what the spool refused (held.py), for `slurm-ai deliver`.
    hold_dir: Path = Path(DEFAULT_HOLD_DIR)

    @property
    def gathers(self) -> bool:
        """One writer per job: the nodes' records meet in one directory (shared
        spool, or node-local spools with a gather_dir)."""
        return self.shared_spool or self.gather_dir is not None

    def delivery_root(self, spool_dir: Path) -> Path:
        """Where node records, claims and the outbox live: the gather directory
        with node-local spools that have one, else the spool."""
        if not self.shared_spool and self.gather_dir is not None:
            return self.gather_dir
        return spool_dir

    @classmethod
    def from_config(cls, config: Config) -> AccountingSettings:
        sec = config.section("accounting")
        d = cls()
        if sec.get_str("foreign_case", d.foreign_case) not in ("protect", "allow"):
            raise ConfigError('[accounting] foreign_case: expected "protect" or "allow"')
        return cls(
            backend=sec.get_str("backend", d.backend),
            timeout_s=sec.get_float("timeout_s", d.timeout_s),
            # true / false as configured; "auto" (the default): what the spool is.
            shared_spool=spool_mode(config).shared,
            deliver_inline=sec.get_bool("deliver_inline", d.deliver_inline),
            inline_budget_s=sec.get_float("inline_budget_s", d.inline_budget_s),
            batch_size=max(1, sec.get_int("batch_size", d.batch_size)),
            max_writes_per_s=sec.get_float("max_writes_per_s", d.max_writes_per_s),
            partial_after_s=sec.get_float("partial_after_s", d.partial_after_s),
            stale_after_s=sec.get_float("stale_after_s", d.stale_after_s),
            settle_s=sec.get_float("settle_s", d.settle_s),
            mark_dir=Path(sec.get_str("mark_dir", DEFAULT_MARK_DIR)),
            mark_max_bytes=sec.get_int("mark_max_bytes", d.mark_max_bytes),
            sacctmgr_folds_case=_folds_case_setting(sec.values.get("sacctmgr_folds_case", "auto")),
            foreign_case=sec.get_str("foreign_case", d.foreign_case),
            detail_dir=_optional_path(sec.get_str("detail_dir", "")),
            detail_retention_days=sec.get_float("detail_retention_days", d.detail_retention_days),
            gather_dir=_optional_path(sec.get_str("gather_dir", "")),
            hold_dir=_optional_path(sec.get_str("hold_dir", DEFAULT_HOLD_DIR))
            or Path(DEFAULT_HOLD_DIR),
        )


def spool_mode(config: Config) -> SpoolMode:
    """Shared or node-local spool, and why (slurm_ai.accounting.spoolmode)."""
    configured = config.section("accounting").values.get("shared_spool", "auto")
    return decide_spool_mode(configured, config.spool_dir)


def _folds_case_setting(value: object) -> bool | None:
    """[accounting] sacctmgr_folds_case: true, false or "auto" (from the Slurm version)."""
    if value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ConfigError('[accounting] sacctmgr_folds_case: expected true, false or "auto"')


def _optional_path(text: str) -> Path | None:
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute():
        raise ConfigError(f"[accounting] path {text!r} must be absolute")
    return path
