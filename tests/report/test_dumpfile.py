"""Byte ranges of a dump: every row read exactly once, whatever the cut points."""

from __future__ import annotations

from pathlib import Path

import pytest
from core_parts import FASTROW_BUILD, missing

from slurm_ai.accounting.sacct import DELIMITER, FIELDS, read_rows
from slurm_ai.report import dumpfile
from slurm_ai.report.dumpfile import Dump, rows_in_range


@pytest.fixture(autouse=True, params=["python", "c"])
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: the Python loop, and the C one (_fastrow.Assembler) where built."""
    if request.param == "c" and not dumpfile.fast_available:
        missing("the report's C extension (slurm_ai/report/native/*.c)", FASTROW_BUILD)
    monkeypatch.setattr(dumpfile, "fast_available", request.param == "c")
    return str(request.param)


D = DELIMITER
HEADER = D.join(FIELDS) + "\n"


def row(jobid: str, name: str = "j", comment: str = "sai1:00") -> str:
    values = {f: "x" for f in FIELDS}
    values.update(JobIDRaw=jobid, JobName=name, AdminComment=comment)
    return D.join(values[f] for f in FIELDS)


NASTY = (
    HEADER
    + row("1") + "\n"
    + row("2", name="evil\n99" + D + "x" + D * 11 + "sai1:forged") + "\n"  # forged row in JobName
    + row("3", name="a\nb\nc") + "\n"  # newlines in JobName
    + row("4", comment="foreign | text\nmore sai1:ab") + "\n"  # newline in AdminComment
    + row("6") + "\r\n"  # CRLF
    + "\n"  # empty line: joined to row 6
    + row("7", comment="x" * 300) + "\n"
    + "garbage without delimiters\n"
    + row("8")  # no final newline
)  # fmt: skip


def _all_rows(dump: Dump, chunk: int, block: int) -> list[str]:
    out: list[str] = []
    for a, b in dump.ranges(chunk):
        out.extend(r for r, _ in rows_in_range(dump, a, b, block=block))
    return out


@pytest.mark.parametrize("text", [NASTY, NASTY[len(HEADER) :], HEADER, "", "\n\n"])
def test_every_cut_reads_every_row_once(tmp_path: Path, text: str) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(text.encode())
    # The reference: the line-based assembler of sacct.py.
    _, rows = read_rows(text.splitlines(keepends=True))
    expected = list(rows)
    dump = Dump.open(str(path))
    whole = _all_rows(dump, max(dump.size, 1), 1 << 20)
    assert whole == expected
    for chunk in range(1, len(text) + 2):
        assert _all_rows(dump, chunk, 7) == expected, chunk


def test_counts_and_ids_of_the_nasty_dump(tmp_path: Path) -> None:
    path = tmp_path / "dump.txt"
    path.write_bytes(NASTY.encode())
    dump = Dump.open(str(path))
    got = list(rows_in_range(dump, dump.data_start, dump.size))
    assert [r.split(D, 1)[0] for r, _ in got] == ["1", "2", "3", "4", "6", "7", "8"]
    assert all(count == r.count(D) for r, count in got)
    fields = dump.layout.split(got[3][0])
    assert fields is not None and fields["AdminComment"].endswith("more sai1:ab")


def test_header_gives_layout_and_missing_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "pipe.txt"
    path.write_bytes(b"JobIDRaw|Partition|AdminComment\n7|vm|a|b\n")
    dump = Dump.open(str(path))
    assert dump.layout.delimiter == "|" and dump.data_start == len(
        "JobIDRaw|Partition|AdminComment\n"
    )
    assert [r for r, _ in rows_in_range(dump, dump.data_start, dump.size)] == ["7|vm|a|b"]
    with pytest.raises(OSError):
        Dump.open(str(tmp_path / "missing.txt"))


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "bin.txt"
    path.write_bytes(HEADER.encode() + row("1", name="\udcff").encode("utf-8", "surrogateescape"))
    dump = Dump.open(str(path))
    (got,) = rows_in_range(dump, dump.data_start, dump.size)
    assert "\ufffd" in got[0]
