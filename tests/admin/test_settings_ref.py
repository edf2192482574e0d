"""The settings table is complete and right: every key a module reads is in it, with the
module's own default, and docs/configuration.md lists each one."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.admin.doctor import _module_loaders
from slurm_ai.admin.settings_ref import (
    SETTINGS,
    render_documented_config,
    sections,
    unknown_keys,
)
from slurm_ai.config import Config

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


class Recording(dict[str, Any]):
    """A config table that records every key a module asks for (present or not)."""

    def __init__(self, name: str, data: dict[str, Any], seen: set[tuple[str, str]]) -> None:
        super().__init__(
            {
                k: Recording(f"{name}.{k}" if name else k, v, seen) if isinstance(v, dict) else v
                for k, v in data.items()
            }
        )
        self.name, self.seen = name, seen

    def _see(self, key: object) -> None:
        if isinstance(key, str):
            self.seen.add((self.name, key))

    def __contains__(self, key: object) -> bool:
        self._see(key)
        return super().__contains__(key)

    def __getitem__(self, key: str) -> Any:
        self._see(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._see(key)
        return super().get(key, default)


def _defaults_data() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = {}
    for s in SETTINGS:
        if s.kind == "value" and s.default is not None:
            data.setdefault(s.section, {})[s.key] = s.default
    return data


def _read_keys(data: dict[str, Any]) -> set[tuple[str, str]]:
    """(section, key) pairs the modules look up; ("", name) for the sections themselves."""
    seen: set[tuple[str, str]] = set()
    # Every known section present (empty), so lookups inside it are recorded too.
    tables = {sec: dict(data.get(sec, {})) for sec in sections()}
    config = Config(path=None, data=Recording("", tables, seen))
    for _name, loader in _module_loaders():
        loader(config)
    return {(sec, key) for sec, key in seen if "." not in sec}


def test_every_key_a_module_reads_is_documented() -> None:
    read = _read_keys({})
    listed = {(s.section, s.key) for s in SETTINGS} | {("", sec) for sec in sections()}
    assert len(read) > 50, "the recording saw almost nothing: the test is broken"
    assert read - listed == set(), "settings read by a module but missing in settings_ref"


def test_every_listed_key_is_read_by_its_module() -> None:
    read = _read_keys(_defaults_data())
    # Platform keys are picked by iterating the table (OVERRIDABLE), not by lookup.
    listed = {(s.section, s.key) for s in SETTINGS if s.section != "platform"}
    assert listed - read == set(), "settings_ref lists keys no module reads"


def test_listed_defaults_are_the_modules_defaults() -> None:
    """Loading each module with the listed defaults written out equals loading nothing."""
    empty = Config(path=None, data={})
    explicit = Config(path=None, data=_defaults_data())
    for name, loader in _module_loaders():
        got, want = loader(explicit), loader(empty)
        if name == "prices":  # writing cost_per_kwh at all marks prices as configured
            got = dataclasses.replace(got, configured=False)
        assert got == want, f"[{name}] defaults differ from settings_ref"


def test_documented_config_parses_and_keeps_values() -> None:
    data = {
        "spool": {"dir": "/s"},
        "platform": {"class": "bare-metal", "nodes": {"gpu[01-04]": {"class": "mig"}}},
        "health": {"floors": {"gpu-bare": {"min_busbw_gbps": 350.0}}},
        "site": {"x": 1},
    }
    text = render_documented_config(data)
    parsed = tomllib.loads(text)
    assert parsed["spool"] == {"dir": "/s"}
    assert parsed["platform"]["nodes"]["gpu[01-04]"] == {"class": "mig"}
    assert parsed["health"]["floors"]["gpu-bare"]["min_busbw_gbps"] == 350.0
    assert parsed["site"] == {"x": 1}
    # Every default is visible as a comment.
    assert '# when = "background"' in text
    assert "# max_writes_per_s = 20.0" in text


def test_unknown_keys_with_suggestions() -> None:
    problems = unknown_keys(
        {
            "health": {"enable": True, "floors": {"p": {"min_busbw": 1.0}}},
            "acounting": {},
            "spool": {"dir": "/x"},
        }
    )
    text = "\n".join(problems)
    assert "[health] enable is not a setting (did you mean enabled?)" in text
    assert "[acounting] is not a slurm-ai section (did you mean [accounting]?)" in text
    assert "[health.floors.p] min_busbw is not a setting" in text
    assert "spool" not in text


@pytest.mark.skipif(not DOCS.exists(), reason="docs/configuration.md not written")
def test_configuration_reference_lists_every_key() -> None:
    text = DOCS.read_text()
    missing = []
    for s in SETTINGS:
        # A table row `| key | default | meaning | owner |` under the section heading.
        section = re.search(rf"^## `\[{re.escape(s.section)}\]`.*?(?=^## |\Z)", text, re.S | re.M)
        if not section or not re.search(rf"^\| `{re.escape(s.key)}` \|", section.group(0), re.M):
            missing.append(f"[{s.section}] {s.key}")
    assert missing == []


def test_configuration_reference_is_current() -> None:
    from slurm_ai.admin.settings_ref import render_reference_markdown

    assert DOCS.read_text() == render_reference_markdown(), (
        "docs/configuration.md is stale: python -m slurm_ai.admin.settings_ref > "
        "docs/configuration.md"
    )
