"""The C decode (_fastrow: slurm_ai/report/native/) gives Python's answer, or declines.

Exactness is the rule: where figures() returns a tuple it must equal what
json.loads + facts._dict_figures make of the same token (a v1 record node by
node, a v2 record from its summary, in full or summarised form), and wherever
the Python path would not read the token as a record (any error, any odd JSON)
it must decline (None). Incomplete records are declined (facts.py marks them). The report itself is compared byte for byte, with the
extension on and off, on the recorded dump and on a synthetic one.
"""

from __future__ import annotations

import json
import os
import random
import zlib
from pathlib import Path
from typing import Any

import pytest
from core_parts import FASTROW_BUILD, needs

from slurm_ai.errors import RecordError
from slurm_ai.record import READABLE_VERSIONS, TOKEN_PREFIX, encode_record, token_payload
from slurm_ai.report import dumpfile, facts
from slurm_ai.report.dumpfile import Dump
from slurm_ai.report.pipeline import aggregate_file
from slurm_ai.report.prices import Prices
from slurm_ai.report.render import render_json
from slurm_ai.report.synth import make_job, write_dump

pytestmark = needs(
    "the report's C extension (slurm_ai/report/native/*.c)", facts.fast_available, FASTROW_BUILD
)

fastrow: Any = facts._fastrow


def token_of(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return TOKEN_PREFIX + zlib.compress(raw, 9).hex()


def canon(fig: tuple[Any, ...]) -> str:
    """A figures tuple, comparable: set sorted, dict order kept, floats by repr (-0.0, 1 vs 1.0).

    units as row_facts reads them: UNITS names with int or float values.
    """
    units = [(k, v) for k, v in fig[10].items() if k in facts.UNITS and type(v) in (int, float)]
    workload = fig[11] if fig[11] in facts.WORKLOADS else None
    return repr(
        (fig[0], sorted(fig[1]), list(fig[2].items()), *fig[3:10], units, workload, fig[12])
    )


def python_figures(token: str) -> str | None:
    """The Python path's figures of a token, None where it does not read a record."""
    try:
        record = json.loads(token_payload(token))
    except (RecordError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or type(record.get("v")) is not int:
        return None
    if record["v"] not in READABLE_VERSIONS:
        return None
    try:
        return canon(facts._dict_figures(record))
    except (TypeError, OverflowError):  # an unhashable verdict, a huge int: Python's to raise
        return None


def check(token: str) -> bool:
    """C and Python agree on token; True when C took it (did not decline)."""
    fast = fastrow.figures(token)
    if fast is None:
        return False
    assert canon(fast) == python_figures(token), token
    return True


def synth_tokens(count: int, seed: int = 5, version: int = 2) -> list[str]:
    rng = random.Random(seed)
    return [encode_record(make_job(rng, 1000 + i, version)[1]) for i in range(count)]


@pytest.mark.parametrize("version", [1, 2])
def test_synthetic_records_taken_and_equal(version: int) -> None:
    for token in synth_tokens(300, version=version):
        assert check(token), "a usual record must not be declined"


def summarised_tokens(
    count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int = 6
) -> list[str]:
    """v2 tokens in summarised form, as the deliverer writes a job too large for full form
    (here every job: the full-form limit set to 0): failed nodes kept, a detail file."""
    from slurm_ai.accounting import deliver

    monkeypatch.setattr(deliver, "FULL_FORM_MAX_JSON", 0)
    rng = random.Random(seed)
    tokens = [deliver.encode_fitting(make_job(rng, 2000 + i)[1], tmp_path) for i in range(count)]
    monkeypatch.undo()
    return tokens


def test_summarised_records_taken_and_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = summarised_tokens(200, tmp_path, monkeypatch)
    records = [json.loads(token_payload(t)) for t in tokens]
    assert all("detail" in r and r["v"] == 2 for r in records)
    assert any(r["nodes"] for r in records) and any(not r["nodes"] for r in records)
    for token in tokens:
        assert check(token), "a summarised record must not be declined"


def test_full_and_summarised_forms_same_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = synth_tokens(50, seed=6)
    short = summarised_tokens(50, tmp_path, monkeypatch, seed=6)
    for a, b in zip(full, short, strict=True):
        assert canon(fastrow.figures(a)) == canon(fastrow.figures(b))


def test_incomplete_records_declined(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record with nodes missing: facts.py reads it (JobFacts.complete False), C declines."""
    from slurm_ai.record import merge_node_records

    rng = random.Random(21)
    for i in range(40):
        _, record = make_job(rng, 300 + i)
        job = {**record["job"], "nodes_expected": len(record["nodes"]) + 1}
        incomplete = merge_node_records(job, record["nodes"], units=record["units"])
        assert incomplete["complete"] is False
        token = encode_record(incomplete)
        assert fastrow.figures(token) is None and python_figures(token) is not None
        args = (*ROW[:11], token)
        assert fastrow.row(*args, None) is None
        assert python_row(args, None, monkeypatch).facts.complete is False


def test_payload_is_token_payload() -> None:
    for token in synth_tokens(50):
        assert fastrow.payload(token) == token_payload(token)


def damaged(token: str, rng: random.Random) -> str:
    digits = token[len(TOKEN_PREFIX) :]
    how = rng.randrange(8)
    if how == 0:  # one hex digit changed
        i = rng.randrange(len(digits))
        digits = digits[:i] + format((int(digits[i], 16) + 1) % 16, "x") + digits[i + 1 :]
    elif how == 1:  # truncated
        digits = digits[: 2 * rng.randrange(0, len(digits) // 2)]
    elif how == 2:  # trailing bytes
        digits += "00ff"
    elif how == 3:  # raw deflate, no zlib header
        digits = zlib.compress(b'{"v":1}')[2:].hex()
    elif how == 4:  # checksum wrong
        digits = digits[:-8] + format(int(digits[-8:], 16) ^ 1, "08x")
    elif how == 5:  # odd length, non-hex, upper case
        digits = rng.choice([digits[:-1], digits[:10] + "zz" + digits[12:], digits.upper()])
    elif how == 6:  # a smaller window (CINFO), or a preset dictionary flag
        head = rng.choice(["2815", "78bb", "0800"])
        digits = head + digits[4:]
    else:  # foreign text glued to the token, or unicode
        digits = digits + rng.choice(["\u00e9", " ", "\t", "x"])
    return rng.choice(["sai1:", "SAI1:", "Sai1:"]) + digits


def test_damaged_tokens_declined_or_equal() -> None:
    rng = random.Random(11)
    declined = 0
    for token in synth_tokens(60):
        for _ in range(12):
            bad = damaged(token, rng)
            if python_figures(bad) is None:
                assert fastrow.figures(bad) is None, bad
                declined += 1
            else:
                check(bad)
            payload = fastrow.payload(bad)
            if payload is not None:
                assert payload == token_payload(bad)
    assert declined > 300


def test_an_oversized_token_is_declined() -> None:
    # past record.py's one-shot size: its bounded path decides
    text = json.dumps({"v": 1, "pad": random.Random(1).randbytes(6000).hex()})
    token = token_of(text)
    assert len(token) > 2 * 4063
    assert fastrow.figures(token) is None and python_figures(token) is not None


@pytest.mark.parametrize(
    "text",
    [
        '{"v":1,"x":NaN}',
        '{"v":1,"x":Infinity}',
        '{"v":1,"x":-Infinity}',
        '{"v":1,"nodes":{"a":{}},"nodes":{}}',  # repeated key we read
        '{"v":1,"nodes":{"a":{},"a":{"platform":{"class":"vm"}}}}',  # repeated node name
        '{"v":1,"nod\\u0065s":{"a":{}}}',  # an escaped key
        '{"v":1,"nodes":{"a":{"platform":{"class":"v\\u006d"}}}}',  # an escaped value read
        '{"v":1,"nodes":{"a":{"health":{"verdict":["pass"]}}}}',  # unhashable: TypeError
        # an escaped string compared with "cpu", "gpu" or "gloo": C declines (it could be one)
        '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":1,"device":"\\u0063pu"}}}}',
        '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":1,"backend":"glo\\u006f"}}}}',
        '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":1,"device":"x\\n"}}}}',
        '{"v":1,"nodes":{"a":{"health":{"device":"cpu","device":"gpu"}}}}',  # repeated key
        '{"v":1,"nodes":{"a":{"health":{"backend":"gloo","provenance":{},"backend":"x"}}}}',
        '{"v":1,"nodes":{"a":{"health":{"provenance":{"source":{}}}}}}',
        '{"v":1,"nodes":{"a":{"energy":{"total_j":1234567890123456789}}}}',  # not exact
        '{"v":1,"units":{"tokens":12345678901234567}}',
        '{"v":1,"units":{"tokens":1,"tokens":2}}',
        '{"v":1,"x":"\\ud800"}',  # lone surrogate escape: taken or declined, equal either way
        '{"v":1,"x":1' + "0" * 5000 + "}",  # over Python's int digit limit
        '{"v":1,"x":' + "[" * 100 + "]" * 100 + "}",  # deeper than MAX_DEPTH
        '{"v":true}',
        '{"v":1.0}',
        '{"v":2}',
        '{"v":01}',
        "[1]",
        "{",
        '{"v":1,}',
        '{"v":1} x',
        '\ufeff{"v":1}',
        '{"v":1,"x":"a\x01b"}',
        '{"v":1,"x":"\\x"}',
        '{"v":1,"x":1.}',
        '{"v":1,"x":1e}',
        '{"v":1,"x":-}',
        '{"v":1,"x":tru}',
    ],
)
def test_odd_json_declined_or_equal(text: str) -> None:
    token = token_of(text)
    if python_figures(token) is None:
        assert fastrow.figures(token) is None
    else:
        check(token)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v":1,"x":"\xff"}',  # invalid UTF-8: Python raises
        b'{"v":1,"x":"\xc0\xaf"}',  # overlong
        b'{"v":1,"x":"\xed\xa0\x80"}',  # an encoded surrogate: surrogatepass takes it
        b'{"v":1,"x":"\xf4\x90\x80\x80"}',  # past U+10FFFF
        b'{\x00"v":1}',  # json.loads reads UTF-16 here
        b"",
    ],
)
def test_odd_bytes_declined(raw: bytes) -> None:
    assert fastrow.figures(token_of(raw)) is None


# Records (as json.dumps writes them) or JSON texts (for what json.dumps cannot write).
ODD_TAKEN: list[dict[str, Any] | str] = [
    {"v": 1},
    {"v": 1, "nodes": []},
    {"v": 1, "nodes": {"a": 5, "b": None, "c": {"platform": []}}},
    {"v": 1, "job": {"workload": 5}, "nodes": {"a": {}, "b": {"platform": {"class": ""}}}},
    {"v": 1, "job": {"workload": "inference"}, "job2": {"workload": "training"}},
    {"v": 1, "nodes": {"a": {"gpus": [{"model": 3}, {}, 7, None, {"model": "h100"}]}}},
    {"v": 1, "nodes": {"a": {"gpus": {"model": "x"}, "energy": {"total_j": -1}}}},
    {"v": 1, "nodes": {"a": {"energy": {"sources": [{"joules": True, "quality": "measured"}]}}}},
    '{"v":1,"nodes":{"a":{"energy":{"total_j":1e400,"sources":[5,{"joules":2.5}]}}}}',
    {"v": 1, "nodes": {"a": {"energy": {"total_j": -0.0}}, "b": {"energy": {"total_j": 3}}}},
    {"v": 1, "nodes": {"a": {"health": {"verdict": "pass", "busbw_gbps": 1e300, "ranks": 1e300}}}},
    {"v": 1, "nodes": {"a": {"health": {"verdict": "warn", "busbw_gbps": 5, "ranks": True}}}},
    {
        "v": 1,
        "nodes": {
            "a": {"health": {"verdict": "pass", "busbw_gbps": 7.5, "ranks": 8, "size_bytes": 2.9}},
            "b": {"health": {"verdict": "fail", "busbw_gbps": 7.5, "ranks": 4, "size_bytes": 1}},
            "c": {"health": {"verdict": "timeout", "busbw_gbps": 1.0, "provenance": {"source": 1}}},
            "d": {"health": {"verdict": 1.5, "provenance": {"source": "cached"}}},
            "e": {"health": {"verdict": None, "provenance": ["unchecked"]}},
        },
    },
    {"v": 1, "nodes": {"a": {"health": {"verdict": "pass", "busbw_gbps": -1, "ranks": "8"}}}},
    # what the all-reduce ran on (facts.busbw_model): the slowest node's device, else backend
    *(
        {"v": 1, "nodes": {"a": {"gpus": [{"model": "h100"}], "health": {**hl, **ran}}}}
        for hl in ({"verdict": "pass", "busbw_gbps": 5}, {"verdict": "skipped"})
        for ran in (
            {"device": "cpu", "backend": "gloo"},
            {"device": "cpu", "backend": "mpi"},
            {"device": "gpu", "backend": "nccl"},
            {"device": "gpu", "backend": "gloo"},
            {"backend": "gloo"},
            {"backend": "nccl"},
            {"backend": "mpi"},
            {},
            {"device": None, "backend": "gloo"},
            {"device": "cuda:0", "backend": "gloo"},
            {"device": ["cpu"], "backend": {"gloo": 1}},
            {"device": 1, "backend": "nccl"},
            {"device": "CPU", "backend": "GLOO"},
            {"device": "", "backend": None},
        )
    ),
    {
        "v": 1,
        "nodes": {
            "a": {"health": {"verdict": "pass", "busbw_gbps": 9, "device": "gpu"}},
            "b": {"health": {"verdict": "pass", "busbw_gbps": 3, "device": "cpu"}},
            "c": {"health": {"verdict": "pass", "busbw_gbps": 3, "device": "gpu"}},  # a tie
            "d": {"health": {"verdict": "fail", "busbw_gbps": 8, "backend": "gloo"}},
        },
    },
    # "-0" is the int 0 (busbw 0.0), "-0.0" the float -0.0: the sign of zero is kept as read
    '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":-0,"ranks":-0}}}}',
    '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":-0.0,"size_bytes":-0.0}}}}',
    '{"v":1,"nodes":{"a":{"energy":{"total_j":-0,"sources":[{"joules":-0,"quality":"measured"}]}}}}',
    '{"v":1,"units":{"tokens":-0,"epochs":-0.0}}',
    '{"v":1,"units":{"tokens":-5,"epochs":"3","requests":2,"other":1,"samples":1e400}}',
    '{"v":1,"nodes":{"a":{"health":{"verdict":"pass","busbw_gbps":1E+2,"ranks":-1e400}}}}',
    ' \t\r\n{ "v" : 1 , "nodes" : { "a" : { } } } \n',
    {"v": 1, "units": {"tokens": 0.5, "epochs": None, "samples": False}},
    {"v": 1, "units": [1, 2]},
    {"v": 1, "nodes": {"\u00e9\u4e2d\U0001f600": {"platform": {"class": "\u00e9vm\U0001f600"}}}},
    '{"v":1,"x":"\\ud800","nodes":{"a":{"gpus":[{"model":"b\u00e9"},{"model":"a"}]}}}',
    {"v": 1, "nodes": {f"n{i}": {"gpus": [{"model": f"m{i % 3}"}]} for i in range(9)}},
]


@pytest.mark.parametrize("record", ODD_TAKEN)
def test_odd_records_taken_and_equal(record: dict[str, Any] | str) -> None:
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
    assert check(token_of(text)), text


# v2 records whose summaries are odd (hand-made: the writer never makes them). Each is
# taken by C with Python's figures (TAKEN) or declined (None from figures()).
SUM = '"v":2,"complete":true,"job":{"workload":"inference"},"units":{"requests":3}'
ODD_V2: list[tuple[str, bool]] = [
    ('{"v":2,"summary":{}}', True),
    ('{"v":2,"nodes":{"a":{},"b":5},"summary":{}}', True),  # no count: len(nodes)
    ('{"v":2,"nodes":{"a":{},"a":{}},"summary":{}}', False),  # repeated node name
    ('{"v":2,"nodes":{"a":{},"a":{}},"summary":{"nodes":2}}', True),  # the count decides
    ('{"v":2,"nodes":[1],"summary":{"nodes":-3}}', True),
    ('{"v":2,"nodes":{"a":{}},"summary":{"nodes":-0}}', True),  # the int 0
    ('{"v":2,"nodes":{"a":{}},"summary":{"nodes":2.0}}', True),  # not an int: len(nodes)
    ('{"v":2,"summary":{"nodes":1234567890123456789}}', False),  # not exact
    ('{"v":2,"summary":{"nodes":1,"nodes":2}}', False),
    ('{"v":2}', False),  # no summary: facts.py reads the nodes
    ('{"v":2,"summary":[]}', False),
    ('{"v":2,"summary":null,"nodes":{"a":{}}}', False),
    ('{"v":2,"complete":false,"summary":{}}', False),
    ('{"v":2,"complete":"yes","summary":{}}', False),
    ('{"v":3,"summary":{}}', False),
    ('{"v":2.0,"summary":{}}', False),
    ('{"summary":{"nodes":1},"nodes":{"a":{"platform":{"class":"x"}}},"v":2}', True),
    ('{"summary":{"nodes":1,"platform":[]},"v":1}', True),  # v1: the summary is not read
    ('{"v":1,"summary":{"platform":{"a":1,"a":2}}}', True),
    ('{"v":2,"summary":{"platform":{"a":1,"a":2}}}', False),  # json.loads keeps the last
    ('{"v":2,"summary":{"platform":{"vm":1,"bare":0,"x":-1,"y":1.5,"z":true,"":2}}}', True),
    ('{"v":2,"summary":{"platform":{"vm":-0,"bare":1' + "0" * 30 + "}}}", True),
    ('{"v":2,"summary":{"platform":{"vm":3},"platform":{}}}', False),
    ('{"v":2,"summary":{"platform":[["vm",1]],"gpus":[]}}', True),
    ('{"v":2,"summary":{"platform":{"v\\u006d":1}}}', False),  # an escaped key
    ('{"v":2,"summary":{"platform":{' + ",".join(f'"c{i}":1' for i in range(40)) + "}}}", False),
    ('{"v":2,"summary":{"gpus":{"count":16,"models":{"h100":8,"a100":8,"":9}}}}', True),
    ('{"v":2,"summary":{"gpus":{"count":-1,"models":{"h100":0,"a100":-2}}}}', True),
    ('{"v":2,"summary":{"gpus":{"count":2.5,"models":{"b":3,"a":3,"c":2.9}}}}', True),
    ('{"v":2,"summary":{"gpus":{"count":1e400,"models":{"b":1' + "0" * 20 + "}}}}", False),
    ('{"v":2,"summary":{"gpus":{"count":3,"count":4}}}', False),
    ('{"v":2,"summary":{"gpus":{"models":{"h\\u0031":1}}}}', False),
    ('{"v":2,"summary":{"energy":{"total_j":5,"measured_j":3,"estimated_j":2}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":-0.0,"measured_j":-0.0,"estimated_j":-0}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":-1,"measured_j":-2.5,"estimated_j":1e400}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":1e400,"measured_j":true,"estimated_j":"1"}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":null,"measured_j":-1e400}}}', True),
    # FIGURE_MAX (1e18): at or past it a figure counts as missing (facts.py)
    ('{"v":2,"summary":{"energy":{"total_j":1e18,"measured_j":-1e18,"estimated_j":1e18}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":9.99e17,"measured_j":-9.99e17}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":1e18,"ranks":8}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"ranks":1e18,"size_bytes":-1e18}}}}', True),
    ('{"v":2,"summary":{"energy":{"total_j":NaN}}}', False),
    ('{"v":2,"summary":{"energy":{"measured_j":Infinity}}}', False),
    ('{"v":2,"summary":{"energy":{"total_j":12345678901234567}}}', False),
    ('{"v":2,"summary":{"energy":{"total_j":1,"total_j":2}}}', False),
    ('{"v":2,"summary":{"energy":{"total_j":4.9e-324,"measured_j":1.7976931348623157e308}}}', True),
    ('{"v":2,"summary":{"health":{"verdicts":{"pass":2,"fail":0,"skipped":3}}}}', True),
    ('{"v":2,"summary":{"health":{"verdicts":{"warn":1,"timeout":1}}}}', True),
    ('{"v":2,"summary":{"health":{"verdicts":{"fail":-1,"pass":1.0,"warn":true}}}}', True),
    ('{"v":2,"summary":{"health":{"verdicts":{"pass":1' + "0" * 40 + "}}}}", True),
    ('{"v":2,"summary":{"health":{"verdicts":{"fail":1,"fail":0}}}}', False),
    ('{"v":2,"summary":{"health":{"verdicts":{"x":1,"x":0,"pass":1}}}}', True),
    ('{"v":2,"summary":{"health":{"verdicts":[["pass",1]]}}}', True),
    ('{"v":2,"summary":{"health":{"worst_source":"cached"}}}', True),
    ('{"v":2,"summary":{"health":{"worst_source":"bogus"}}}', True),
    ('{"v":2,"summary":{"health":{"worst_source":["fresh"]}}}', False),  # TypeError
    ('{"v":2,"summary":{"health":{"worst_source":{"a":1}}}}', False),
    ('{"v":2,"summary":{"health":{"worst_source":5}}}', True),
    ('{"v":2,"summary":{"health":{"worst_source":"fresh","worst_source":"cached"}}}', False),
    (
        '{"v":2,"summary":{"health":{"busbw_min":{"gbps":350.5,"node":"a","ranks":16,'
        '"size_bytes":268435456}}}}',
        True,
    ),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":-0.0,"ranks":-0.0,"size_bytes":-0}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":-1,"ranks":8}}}}', True),
    (
        '{"v":2,"summary":{"health":{"busbw_min":{"gbps":1e300,"ranks":1e300,"size_bytes":2.9}}}}',
        True,
    ),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"ranks":true,"size_bytes":"1"}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"ranks":-1e400}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"gbps":6}}}}', False),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"ranks":12345678901234567}}}}', False),
    ('{"v":2,"summary":{"health":{"busbw_min":[5]}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":1e400}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"device":"cpu","backend":"mpi"}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"device":"gpu","backend":"gloo"}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"backend":"gloo"}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"backend":"nccl"}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"device":[],"backend":7}}}}', True),
    ('{"v":2,"summary":{"health":{"busbw_min":{"device":"cpu"}}}}', True),  # no busbw
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"device":"\\u0063pu"}}}}', False),
    ('{"v":2,"summary":{"health":{"busbw_min":{"gbps":5,"backend":"gloo","backend":"x"}}}}', False),
    ('{"v":2,"summary":{"health":[],"energy":5,"gpus":"x","platform":null}}', True),
    ("{" + SUM + ',"summary":{"nodes":3,"platform":{"vm":3}}}', True),
    ("{" + SUM + ',"summary":{"nodes":3},"summary":{"nodes":4}}', False),
    ("{" + SUM + ',"detail":{"file":"/x","nodes":900},"nodes":{},"summary":{"nodes":900}}', True),
]


@pytest.mark.parametrize(("text", "taken"), ODD_V2)
def test_odd_v2_summaries(text: str, taken: bool) -> None:
    token = token_of(text)
    assert (fastrow.figures(token) is not None) == taken, text
    if taken:
        assert check(token)
    elif python_figures(token) is None:
        assert fastrow.figures(token) is None
    args = (*ROW[:11], token)
    assert check_row(args, pytest.MonkeyPatch()) == taken


def mutate(text: str, rng: random.Random) -> str:
    """A random small change to a JSON text: often still JSON, sometimes odd."""
    pieces = [
        "NaN", "1e400", "-0", "0.5", "true", "null", '""', '"x"', "[]", "{}", "1" * 20,
        '"pass"', '"fail"', '"measured"', '"estimated"', '"fresh"', '"unchecked"',
        '"training"', '"cpu"', '"gpu"', '"gloo"', "\\u0041", "\\", '"', ",", ":", "{", "}", "[",
        "]", " ", "\u00e9",
    ]  # fmt: skip
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(text) + 1)
        how = rng.randrange(4)
        if how == 0:
            text = text[:i] + rng.choice(pieces) + text[i:]
        elif how == 1:
            text = text[:i] + text[i + rng.randrange(1, 8) :]
        elif how == 2:  # replace a value after a colon
            j = text.find(":", i)
            if j >= 0:
                k = min((x for x in (text.find(",", j), text.find("}", j)) if x >= 0), default=j)
                text = text[: j + 1] + rng.choice(pieces) + text[k:]
        else:  # duplicate a slice
            j = rng.randrange(i, min(len(text), i + 40) + 1)
            text = text[:j] + text[i:j] + text[j:]
    return text


def structural(record: Any, rng: random.Random) -> Any:
    """The record with values swapped for values of other JSON types, at random."""
    odd = [None, True, False, 0, -1, 2.5, -0.0, 1e300, "", "pass", "vm", [], {}, [1], {"a": 1}]
    if isinstance(record, dict):
        return {
            k: (rng.choice(odd) if rng.random() < 0.08 else structural(v, rng))
            for k, v in record.items()
        }
    if isinstance(record, list):
        return [structural(v, rng) for v in record]
    return record


@pytest.mark.parametrize("version", [1, 2])
def test_fuzz_fixed_seed(version: int) -> None:
    rng = random.Random(2026)
    taken = 0
    for i in range(1500):
        _, record = make_job(rng, 5000 + i, version)
        if i % 2:
            text = json.dumps(structural(record, rng), separators=(",", ":"))
        else:
            text = mutate(json.dumps(record, separators=(",", ":")), rng)
        token = token_of(text)
        if python_figures(token) is None:
            assert fastrow.figures(token) is None, text
        else:
            taken += check(token)
    assert taken > 500  # most changes still give a record both read


# ------------------------------------------------------------------ whole report


def report_json(path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, workers: int) -> str:
    monkeypatch.setattr(facts, "fast_available", fast)
    monkeypatch.setattr(dumpfile, "fast_available", fast)
    agg = aggregate_file(Dump.open(str(path)), workers=workers)
    monkeypatch.undo()
    prices = Prices.load(None) if hasattr(Prices, "load") else Prices()
    return render_json(agg.finish(prices))


def agg_state(
    path: Path, fast: bool, monkeypatch: pytest.MonkeyPatch, workers: int, keep: Any = None
) -> str:
    """Everything an Aggregate holds, floats by repr: equal strings, equal bits."""
    from dataclasses import asdict, fields

    monkeypatch.setattr(facts, "fast_available", fast)
    monkeypatch.setattr(dumpfile, "fast_available", fast)
    agg = aggregate_file(Dump.open(str(path)), workers=workers, chunk_bytes=64 << 10, keep=keep)
    monkeypatch.undo()
    out = [repr((agg.rows, agg.steps, agg.no_record, agg.foreign, sorted(agg.unparsed.items())))]
    out.append(repr(agg.incomplete))
    out.append(repr((agg.first_start, agg.last_end, list(agg.cells), list(agg.busbw_tax))))
    for key, cell in agg.cells.items():
        sums = [
            getattr(cell, f.name)
            for f in fields(cell)
            if type(getattr(cell, f.name)) in (int, float)
        ]
        series = [list(cell.elapsed.values), list(cell.wait.values), list(cell.busbw.values)]
        units = [(name, asdict(m)) for name, m in cell.units.items()]
        out.append(repr((key, sums, series, units, asdict(cell.per_job))))
    for key, tax in agg.busbw_tax.items():
        out.append(repr((key, list(tax.values))))
    return "\n".join(out)


def test_recorded_dump_same_aggregate_and_report(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dump = data_dir / "dump.txt"
    assert agg_state(dump, True, monkeypatch, 1) == agg_state(dump, False, monkeypatch, 1)
    assert report_json(dump, True, monkeypatch, 1) == report_json(dump, False, monkeypatch, 1)


@pytest.mark.parametrize(("intervals", "version"), [(True, 2), (False, 2), (True, 1)])
def test_synthetic_dump_same_aggregate_and_report(
    intervals: bool, version: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slurm_ai.report import aggregate

    path = tmp_path / "dump.txt"
    with path.open("w") as out:
        write_dump(out, 3000, 7, version)
    monkeypatch.setattr(aggregate, "INTERVALS", intervals)
    fast = agg_state(path, True, monkeypatch, 2)
    monkeypatch.setattr(aggregate, "INTERVALS", intervals)
    assert fast == agg_state(path, False, monkeypatch, 2)
    monkeypatch.setattr(aggregate, "INTERVALS", intervals)
    fast = report_json(path, True, monkeypatch, 2)
    monkeypatch.setattr(aggregate, "INTERVALS", intervals)
    assert fast == report_json(path, False, monkeypatch, 2)


# ------------------------------------------------------------------ whole rows


def python_row(args: tuple[str, ...], keep: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(facts, "fast_available", False)
    try:
        return facts.row_facts(*args, keep)
    finally:
        monkeypatch.undo()


def check_row(args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, keep: Any = None) -> bool:
    """_fastrow.row and row_facts agree; True when C took the row."""
    fast = fastrow.row(*args, keep)
    if fast is None:
        return False
    slow = python_row(args, keep, monkeypatch)
    if fast is False:
        assert slow is None
    else:
        assert repr(fast) == repr(slow), args  # repr: -0.0, 1 vs 1.0 and types count
    return True


ROW = ("7", "vm", "u", "a", "", "COMPLETED", "100", "160", "260", "100", "", "")


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {0: "7.batch"},  # a step: declined, row_facts counts it
        {1: ""},  # no partition: "?"
        {4: "3"},
        {4: "0"},
        {4: "x"},  # declined
        {5: "COMPLETED by 0"},
        {5: "FAILED"},
        {6: "Unknown"},  # declined: parse_time's
        {7: "2026-01-01T00:00:00"},
        {6: "300"},  # negative wait: None
        {9: ""},
        {9: "12345678901234567"},  # declined: not exact
        {10: "billing=4,cpu=48,gres/gpu=4"},
        {10: "gres/gpu:h100=2,gres/gpu:a100=3"},
        {10: "gres/gpu=8,gres/gpu:h100=8"},
        {10: "cpu=1"},
        {11: "JS1:abc"},  # foreign text: declined
        {11: "JS1:abc sai1:00"},
        {11: " "},
        {11: "sai1:zz"},
    ],
)
def test_rows_taken_or_declined_equal(
    changes: dict[int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for token in ["", *synth_tokens(5)]:
        args = list(ROW)
        args[11] = token
        for i, value in changes.items():
            args[i] = value
        check_row(tuple(args), monkeypatch)


@pytest.mark.parametrize("version", [1, 2])
def test_rows_of_synthetic_jobs_taken(version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(8)
    for i in range(300):
        row, record = make_job(rng, 100 + i, version)
        g = row.get
        args = (
            g("JobIDRaw", ""), g("Partition", ""), g("User", ""), g("Account", ""),
            g("NNodes", ""), g("State", ""), g("Submit", ""), g("Start", ""), g("End", ""),
            g("ElapsedRaw", ""), g("AllocTRES", ""), encode_record(record),
        )  # fmt: skip
        assert check_row(args, monkeypatch), args


def test_filter_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def keep(*fields: Any) -> bool:
        calls.append(fields)
        return fields[0] == "vm"

    token = synth_tokens(1)[0]
    for partition in ("vm", "bare", ""):
        args = (*ROW[:1], partition, *ROW[2:11], token)
        assert check_row(args, monkeypatch, keep)
    assert calls[0] == ("vm", "u", "a", 100.0, 160.0, 260.0)


def test_fuzz_rows_fixed_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(77)
    values = ["", "0", "1", "8", "07", "x", "-1", "1.5", "99999999999999", "\u0661", " 1"]
    tres = ["", "gres/gpu=2", "gres/gpu:a=1", "node=1,gres/gpu=0", "gres/gpus=3"]
    tokens = synth_tokens(40, seed=9)
    taken = 0
    for _ in range(1500):
        args = list(ROW)
        for i in (4, 6, 7, 8, 9):
            if rng.random() < 0.3:
                args[i] = rng.choice(values)
        args[10] = rng.choice(tres)
        args[5] = rng.choice(["COMPLETED", "FAILED", "completed", ""])
        args[11] = rng.choice([*tokens, "", tokens[0].upper()])
        taken += check_row(tuple(args), monkeypatch)
    assert taken > 300


def write_mixed_dump(path: Path, crlf: bool = False) -> None:
    """Rows C declines between rows it counts (and lines that end in CRLF when asked)."""
    from slurm_ai.accounting.sacct import DELIMITER, FIELDS
    from slurm_ai.report.synth import dump_lines

    rng = random.Random(31)
    escaped = token_of('{"v":1,"nod\\u0065s":{"a":{"platform":{"class":"vm"}}}}')

    def reshaped(token: str, how: int) -> str:
        record = json.loads(token_payload(token))
        if how == 10:  # incomplete: Python reads it (JobFacts.complete False), C declines
            record["complete"] = False
            record["missing_count"] = 1
        else:  # summarised form: the nodes in a detail file, the summary's figures
            record["detail"] = {"file": "/nonexistent", "nodes": len(record["nodes"])}
            record["nodes"] = dict(list(record["nodes"].items())[: how - 11])
        return encode_record(record)

    col = {name: i for i, name in enumerate(FIELDS)}
    lines = dump_lines(2000, 3)
    out = [next(lines)]
    for line in lines:
        parts = line.rstrip("\n").split(DELIMITER)
        how = rng.randrange(16)
        if how == 0:
            parts[col["JobIDRaw"]] += ".batch"
        elif how == 1:
            parts[col["Start"]] = "Unknown"
        elif how == 2:
            parts[col["AdminComment"]] = escaped  # Python reads it, C declines
        elif how == 3:
            parts[col["AdminComment"]] = parts[col["AdminComment"]][:-6]  # truncated
        elif how == 4:
            parts[col["AdminComment"]] = ""
        elif how == 5:
            parts[col["NNodes"]] = ""
        elif how == 6:
            parts[col["User"]] = "jos\u00e9"  # a row that is not ASCII: split in Python
        elif how == 7:
            parts[col["JobName"]] = "two\nlines"  # a row over two lines
        elif how == 8:
            parts[col["Partition"]] = rng.choice(["", "p\u00e4", "gpu"])
        elif how == 9 and crlf:
            parts[col["JobName"]] = "cr\r\nlf"  # "\r" dropped at the line's end
        elif how >= 10 and parts[col["AdminComment"]].startswith(TOKEN_PREFIX):
            parts[col["AdminComment"]] = reshaped(parts[col["AdminComment"]], how)
        end = "\r\n" if crlf and rng.randrange(3) == 0 else "\n"
        out.append(DELIMITER.join(parts) + end)
    path.write_text("".join(out), newline="")


def test_mixed_dump_same_aggregate_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows C declines, between rows it counts: each cell still gets its jobs in row order."""
    path = tmp_path / "mixed.txt"
    write_mixed_dump(path)
    state = agg_state(path, True, monkeypatch, 2)
    assert state == agg_state(path, False, monkeypatch, 2)
    assert int(state.split("\n")[1]) > 50  # incomplete records counted (by Python)

    def keep(partition: str, user: str, account: str, *times: float | None) -> bool:
        return partition != "gpu" and not user.endswith("7") and (times[1] or 0) % 3 != 0

    filtered = agg_state(path, True, monkeypatch, 2, keep)
    assert filtered == agg_state(path, False, monkeypatch, 2, keep)
    assert filtered != agg_state(path, True, monkeypatch, 2)
    assert report_json(path, True, monkeypatch, 1) == report_json(path, False, monkeypatch, 1)


@pytest.mark.parametrize("block", [1, 7, 1000, 5000, 1 << 20])
def test_scanner_blocks_same_aggregate(
    block: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Scanner's reads, whatever their size (rows longer than a block, CRLF, rows
    over two lines, ranges cut anywhere): the Python path's Aggregate."""
    from functools import partial

    from slurm_ai.report import pipeline

    path = tmp_path / "mixed.txt"
    write_mixed_dump(path, crlf=True)
    expected = agg_state(path, False, monkeypatch, 1)
    monkeypatch.setattr(pipeline, "untaken_rows", partial(dumpfile.untaken_rows, block=block))
    assert agg_state(path, True, monkeypatch, 1) == expected


def test_scanner_read_errors_and_a_file_cut_after_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A descriptor that cannot be read is an OSError; a dump cut short after Dump.open
    gives the rows still there, as the Python path reads them."""
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        with pytest.raises(IsADirectoryError):
            fastrow.Scanner(directory, b"\x1f", 1, 1, 0, 10, False, 64).next(None, None)
    finally:
        os.close(directory)
    path = tmp_path / "mixed.txt"
    write_mixed_dump(path, crlf=True)
    dump = Dump.open(str(path))
    with open(path, "r+b") as handle:
        handle.truncate(dump.size // 2)
    rows = {}
    for fast in (True, False):
        monkeypatch.setattr(dumpfile, "fast_available", fast)
        rows[fast] = [r for a, b in dump.ranges(50_000) for r in dumpfile.rows_in_range(dump, a, b)]
    assert rows[True] == rows[False] and 500 < len(rows[True]) < 1500


def test_scanner_refuses_a_second_next_while_one_runs(tmp_path: Path) -> None:
    """next() lets other threads run during its reads: a second next() on the same
    Scanner meanwhile (here from inside the row filter) is an error, not a shared buffer."""
    from slurm_ai.report.pipeline import RowCounter

    path = tmp_path / "mixed.txt"
    write_mixed_dump(path)
    dump = Dump.open(str(path))
    rules = dumpfile._Rules(dump.layout)
    with open(path, "rb") as handle:
        scanner = fastrow.Scanner(
            handle.fileno(), rules.delim, rules.need, rules.fixed, dump.data_start, dump.size,
            False, 4096,
        )  # fmt: skip

        def keep(*fields: Any) -> bool:
            return scanner.next(None, None) is not None

        tally = RowCounter(dump.layout).tally
        with pytest.raises(RuntimeError, match="already running"):  # rows C declines first
            while scanner.next(tally, keep) is not None:
                pass
        assert scanner.next(None, None) is not None  # usable again afterwards


def test_float_literals_read_as_float_reads_them() -> None:
    """The exact fast path for short literals, Python's strtod for the rest: float()'s bits."""
    rng = random.Random(4)
    for _ in range(3000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 25)))
        cut = rng.randrange(len(digits) + 1)
        text = (digits[:cut] or "0").lstrip("0") or "0"
        text += "." + (digits[cut:] or "0")
        if rng.random() < 0.5:
            text += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randrange(0, 40))
        text = rng.choice(["", "-"]) + text
        record = f'{{"v":1,"units":{{"tokens":{text}}},"nodes":{{"a":{{"energy":{{"total_j":{text}}}}}}}}}'
        fig = fastrow.figures(token_of(record))
        assert fig is not None
        assert repr(fig[10]["tokens"]) == repr(float(text)), text
        if 0 <= float(text) < facts.FIGURE_MAX:
            assert repr(fig[3]) == repr(0.0 + float(text)), text
        else:  # negative, absurd (past FIGURE_MAX) or inf: not energy, counted as none
            assert fig[3] in (None, 0.0), text


def test_every_prefix_and_random_bytes() -> None:
    """Bounds: a record cut at every byte, and random bytes, are declined or equal."""
    text = json.dumps(make_job(random.Random(12), 77)[1], separators=(",", ":")).encode()
    for end in range(len(text) + 1):
        token = token_of(text[:end])
        assert (fastrow.figures(token) is None) == (end != len(text)) or check(token)
    rng = random.Random(13)
    alphabet = b'{}[]":,0123456789.eE+- \\tnulrfasvu\xc3\xa9\xff\x00'
    for _ in range(2000):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        token = token_of(b'{"v":1,"nodes":' + raw)
        if python_figures(token) is None:
            assert fastrow.figures(token) is None
        else:
            check(token)
        fastrow.payload(TOKEN_PREFIX + rng.randbytes(rng.randrange(30)).hex())


@pytest.mark.parametrize("version", [1, 2])
def test_fuzz_number_literals_fixed_seed(version: int) -> None:
    """Every number of synthetic records swapped, at random, for a tricky literal."""
    import re

    tricky = [
        "-0", "-0.0", "0", "0.0", "0e0", "-0e-5", "1E2", "1e+2", "1e-400", "4.9e-324",
        "1e22", "1e23", "9007199254740993", "123456789012345", "1234567890123456",
        "0.1", "0.30000000000000004", "1e308", "1.8e308", "-1", "2.5", "7", "1.0",
    ]  # fmt: skip
    number = re.compile(r"(?<=[:\[,])-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?=[,\]}])")
    rng = random.Random(99)
    taken = 0
    for i in range(600):
        text = json.dumps(make_job(rng, 9000 + i, version)[1], separators=(",", ":"))
        text = number.sub(lambda m: rng.choice(tricky) if rng.random() < 0.3 else m[0], text)
        token = token_of(text)
        if python_figures(token) is None:
            assert fastrow.figures(token) is None, text
        else:
            taken += check(token)
    assert taken > 200
