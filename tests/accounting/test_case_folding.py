"""Does sacctmgr lower-case AdminComment here? From the config, else the Slurm version."""

from __future__ import annotations

import pytest

from slurm_ai.accounting import backend
from slurm_ai.accounting.settings import AccountingSettings
from slurm_ai.config import Config
from slurm_ai.errors import ConfigError


@pytest.mark.parametrize(
    ("version", "folds"),
    [
        ((22, 5), True),
        ((23, 11), True),
        ((24, 5), True),
        ((24, 11), False),
        ((25, 11), False),
        (None, True),
    ],
)
def test_auto_follows_the_slurm_version(monkeypatch: pytest.MonkeyPatch, version, folds) -> None:
    monkeypatch.setattr(backend, "slurm_version", lambda env=None: version)
    assert backend.sacctmgr_folds_case(None) is folds


def test_explicit_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "slurm_version", lambda env=None: (22, 5))
    assert backend.sacctmgr_folds_case(False) is False


@pytest.mark.parametrize(("value", "parsed"), [("auto", None), (True, True), (False, False)])
def test_setting_values(value: object, parsed: bool | None) -> None:
    config = Config(path=None, data={"accounting": {"sacctmgr_folds_case": value}})
    assert AccountingSettings.from_config(config).sacctmgr_folds_case is parsed
    assert AccountingSettings.from_config(Config(path=None)).sacctmgr_folds_case is None


def test_bad_setting_is_a_config_error() -> None:
    config = Config(path=None, data={"accounting": {"sacctmgr_folds_case": "sometimes"}})
    with pytest.raises(ConfigError, match="sacctmgr_folds_case"):
        AccountingSettings.from_config(config)
