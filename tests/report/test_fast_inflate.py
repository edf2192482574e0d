"""The report's ISA-L inflate gives token_payload's answer, bytes and errors alike."""

from __future__ import annotations

import random
import zlib

import pytest
from core_parts import DEV_EXTRA, needs

from slurm_ai.errors import RecordError
from slurm_ai.record import TOKEN_PREFIX, encode_record, token_payload
from slurm_ai.report import facts, slim
from slurm_ai.report.synth import make_job

pytestmark = needs(
    "isal (the report's fast inflate)", slim.inflate is not zlib.decompress, DEV_EXTRA
)


def answer(token: str, fast: bool) -> bytes | str:
    """token_payload's bytes, or its error's words."""
    try:
        if fast:
            return token_payload(token, slim.inflate, slim.INFLATE_ERRORS)
        return token_payload(token)
    except RecordError as exc:
        return f"RecordError: {exc}"


def tokens(count: int) -> list[str]:
    rng = random.Random(5)
    return [encode_record(make_job(rng, 1000 + i)[1]) for i in range(count)]


def test_same_bytes_as_zlib_on_synthetic_records() -> None:
    for token in tokens(200):
        fast = answer(token, True)
        assert isinstance(fast, bytes) and fast == answer(token, False)


def damaged(token: str, rng: random.Random) -> str:
    hex_digits = token[len(TOKEN_PREFIX) :]
    how = rng.randrange(5)
    if how == 0:  # one hex digit changed: a bad block, a bad distance or a bad checksum
        i = rng.randrange(len(hex_digits))
        hex_digits = (
            hex_digits[:i] + format((int(hex_digits[i], 16) + 1) % 16, "x") + hex_digits[i + 1 :]
        )
    elif how == 1:  # truncated (whole bytes)
        hex_digits = hex_digits[: 2 * rng.randrange(1, len(hex_digits) // 2)]
    elif how == 2:  # trailing bytes after the stream
        hex_digits += "00ff"
    elif how == 3:  # a raw deflate stream with no zlib header
        hex_digits = zlib.compress(b'{"v":1}')[2:].hex()
    else:  # the checksum alone wrong
        hex_digits = hex_digits[:-8] + format(int(hex_digits[-8:], 16) ^ 1, "08x")
    return TOKEN_PREFIX + hex_digits


def test_same_answer_as_zlib_on_damaged_records() -> None:
    rng = random.Random(11)
    seen_errors = 0
    for token in tokens(60):
        for _ in range(10):
            bad = damaged(token, rng)
            fast = answer(bad, True)
            assert fast == answer(bad, False), bad
            seen_errors += isinstance(fast, str)
    assert seen_errors > 300  # most damage is caught, in zlib's words


def test_report_facts_same_with_either_inflate(monkeypatch: pytest.MonkeyPatch) -> None:
    for token in tokens(30):
        args = ("7", "vm", "u", "a", "", "COMPLETED", "1", "2", "3", "60", "", token)
        fast = facts.row_facts(*args)
        monkeypatch.setattr(facts, "inflate", zlib.decompress)
        monkeypatch.setattr(facts, "inflate_errors", (zlib.error,))
        assert facts.row_facts(*args) == fast
        monkeypatch.undo()
