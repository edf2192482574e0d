"""The slim decode (msgspec, only the fields the report reads) equals json.loads, or declines."""

from __future__ import annotations

import json
import random
import zlib
from typing import Any

import pytest
from core_parts import DEV_EXTRA, needs

from slurm_ai.record import encode_record
from slurm_ai.report import facts
from slurm_ai.report.slim import available, slim_record
from slurm_ai.report.synth import make_job

pytestmark = needs("msgspec (the report's fast decode)", available(), DEV_EXTRA)


def payload(text: str) -> bytes:
    return text.encode()


@pytest.mark.parametrize(
    "text",
    [
        '{"v":1,"x":NaN}',  # json.loads takes NaN, msgspec does not
        '{"v":1,"nodes":{"n1":5}}',  # a node that is no object
        '{"v":1,"nodes":{"n1":{"health":"x"}}}',
        '{"v":1,"units":{"a":"\\ud800"}}',  # lone surrogate
        '{"v":1,"units":{"a":1e400}}',  # out of range
        '{"v":2}',  # v2 without a summary object
        '{"v":2,"summary":[]}',
        '{"v":true}',  # isinstance(True, int): the full path's answer is needed
        '{"v":1.0}',
        "[1]",
        "{",
    ],
)
def test_declines_what_it_cannot_take_exactly(text: str) -> None:
    assert slim_record(payload(text)) is None


def test_keeps_only_what_the_report_reads() -> None:
    _, record = make_job(random.Random(3), 42)
    slim = slim_record(json.dumps(record).encode())
    assert slim is not None
    node = next(iter(slim["nodes"].values()))
    assert set(node) == {"platform", "gpus", "energy", "health"}
    assert set(node["platform"]) == {"class"}
    assert slim["units"] == record["units"]


ODD_RECORDS: list[dict[str, Any]] = [
    {"v": 1, "nodes": {}},
    {"v": 1, "job": {"workload": 5}, "nodes": {"a": {}, "b": {"platform": {"class": ""}}}},
    {"v": 1, "nodes": {"a": {"gpus": [{"model": 3}, {}], "energy": {"total_j": -1}}}},
    {"v": 1, "nodes": {"a": {"energy": {"sources": [{"joules": True, "quality": "measured"}]}}}},
    {"v": 1, "nodes": {"a": {"health": {"verdict": "pass", "busbw_gbps": 10**30}}}},
    {"v": 1, "units": {"tokens": -5, "epochs": "3", "requests": 2, "other": 1}},
    {"v": 1, "nodes": {"a": 5}},  # declined: full path
    {"v": 1, "nodes": [1]},
    # v2: figures from the summary, whatever its shape
    {"v": 2, "nodes": {"a": {}}, "summary": {}},
    {
        "v": 2,
        "nodes": {},
        "summary": {
            "nodes": 3,
            "platform": {"vm": 2, "bare": 0, "x": "1"},
            "gpus": {"count": 16, "models": {"h100": 16, "a": -1}},
            "energy": {"total_j": 5.5, "measured_j": 5, "estimated_j": True},
            "health": {
                "verdicts": {"pass": 2, "fail": 1},
                "busbw_min": {"gbps": 3, "ranks": 8, "size_bytes": 1e300},
                "worst_source": "cached",
            },
        },
        "job": {"workload": "inference"},
        "units": {"tokens": 4},
    },
    {
        "v": 2,
        "summary": {
            "nodes": -1,
            "platform": [],
            "gpus": 5,
            "energy": {"total_j": -2},
            "health": {"verdicts": {"timeout": 0}, "busbw_min": {"gbps": "x"}},
        },
    },
    {"v": 2, "nodes": {"a": {}}, "summary": None},  # not an object: declined, nodes read
    {"v": 2, "nodes": {"a": {}}, "summary": {"nodes": 1}, "complete": False},  # declined
]


@pytest.mark.parametrize("record", ODD_RECORDS)
def test_facts_same_with_and_without_slim(
    record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = encode_record(record)
    args = ("7", "vm", "u", "a", "", "COMPLETED", "1", "2", "3", "60", "", token)
    with_slim = facts.row_facts(*args)
    monkeypatch.setattr(facts, "slim_available", False)
    assert facts.row_facts(*args) == with_slim


def test_nan_record_takes_the_full_path() -> None:
    token = "sai1:" + zlib.compress(b'{"v":1,"nodes":{"a":{"energy":{"total_j":NaN}}}}').hex()
    outcome = facts.row_facts("7", "vm", "u", "a", "1", "", "", "", "", "60", "", token)
    assert outcome is not None and outcome.kind == facts.OK
    assert outcome.facts is not None and outcome.facts.energy_j is None
