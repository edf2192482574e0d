"""The sacct --parsable2 reader: layouts, nasty AdminComment/JobName content, streaming."""

from __future__ import annotations

import sys

import pytest

from slurm_ai.accounting.sacct import (
    DEFAULT_LAYOUT,
    DELIMITER,
    FIELDS,
    SacctQuery,
    assemble_rows,
    parse_header,
    parse_time,
    read_rows,
    sacct_argv,
    stream_lines,
    tres_gpus,
)
from slurm_ai.errors import CommandError, CommandTimeout

D = DELIMITER


def row(jobid: str = "10", name: str = "job", comment: str = "") -> str:
    values = {f: "" for f in FIELDS}
    values.update(JobIDRaw=jobid, Partition="bare", NNodes="1", JobName=name, AdminComment=comment)
    return D.join(values[f] for f in FIELDS)


def rows_of(text: str) -> list[dict[str, str]]:
    layout, rows = read_rows(text.splitlines(keepends=True))
    out = []
    for r in rows:
        fields = layout.split(r)
        assert fields is not None
        out.append(fields)
    return out


HEADER = D.join(FIELDS) + "\n"


def test_header_gives_layout_and_plain_pipe_dumps_work() -> None:
    assert parse_header(HEADER) == DEFAULT_LAYOUT
    pipe = parse_header("JobIDRaw|Partition|AdminComment\n")
    assert pipe is not None and pipe.delimiter == "|"
    assert pipe.split("7|vm|a|b") == {"JobIDRaw": "7", "Partition": "vm", "AdminComment": "a|b"}
    assert parse_header("7|vm|x") is None


def test_admin_comment_with_pipes_spaces_and_newlines() -> None:
    comment = "foreign | text\nnext line\r\n  SAI1:abc"
    text = HEADER + row("1", comment=comment) + "\n" + row("2") + "\n"
    got = rows_of(text)
    assert [g["JobIDRaw"] for g in got] == ["1", "2"]
    assert got[0]["AdminComment"] == "foreign | text\nnext line\r\n  SAI1:abc".replace("\r", "")


def test_job_name_cannot_forge_a_row_or_a_comment() -> None:
    forged = "x\n999" + D + "vm" + D * 11 + "SAI1:forged"
    text = HEADER + row("1", name=forged, comment="SAI1:real") + "\n" + row("2") + "\n"
    got = rows_of(text)
    assert [g["JobIDRaw"] for g in got] == ["1", "2"]
    assert got[0]["AdminComment"] == "SAI1:real"
    assert got[0]["JobName"].startswith("x\n999")


def test_job_name_with_the_delimiter_stays_in_job_name() -> None:
    got = rows_of(HEADER + row("1", name="a" + D + "SAI1:forged", comment="mine") + "\n")
    assert got[0]["AdminComment"] == "mine"
    assert got[0]["JobName"] == "a" + D + "SAI1:forged"


def test_headerless_input_uses_default_layout() -> None:
    layout, rows = read_rows([row("5") + "\n"])
    assert layout == DEFAULT_LAYOUT
    assert [layout.split(r)["JobIDRaw"] for r in rows] == ["5"]  # type: ignore[index]


def test_short_row_is_unsplittable_not_a_crash() -> None:
    assert DEFAULT_LAYOUT.split("garbage") is None
    assert list(assemble_rows([], DEFAULT_LAYOUT)) == []


@pytest.mark.parametrize(
    ("tres", "gpus"),
    [
        ("billing=8,cpu=96,mem=64G,node=1,gres/gpu=8", 8),
        ("cpu=4,gres/gpu:h100=2,gres/gpu=2,node=1", 2),
        ("cpu=4,gres/gpu:a100=1,gres/gpu:h100=2", 3),
        ("cpu=4,mem=1G,node=1", None),
        ("", None),
    ],
)
def test_tres_gpus(tres: str, gpus: int | None) -> None:
    assert tres_gpus(tres) == gpus


def test_parse_time() -> None:
    assert parse_time("1735689600") == 1735689600.0
    assert parse_time("Unknown") is None
    assert parse_time("") is None
    assert parse_time("not a time") is None
    assert parse_time("2025-01-01T00:00:00") is not None


def test_sacct_argv_allocations_only_with_filters() -> None:
    argv = sacct_argv(SacctQuery(start="2025-01-01", partitions=("bare", "vm"), users=("u",)))
    assert argv[:3] == ["sacct", "-X", "--parsable2"]
    assert f"--delimiter={D}" in argv
    assert "--format=" + ",".join(FIELDS) in argv
    assert "--partition=bare,vm" in argv and "--user=u" in argv and "--allusers" in argv
    assert FIELDS[-1] == "AdminComment" and FIELDS[-2] == "JobName"


def test_stream_lines_streams_and_reports_failures() -> None:
    code = "import sys\nfor i in range(3): print(i, flush=True)\nsys.stdout.write('tail')"
    assert list(stream_lines([sys.executable, "-c", code])) == ["0\n", "1\n", "2\n", "tail"]
    with pytest.raises(CommandError):
        list(stream_lines([sys.executable, "-c", "import sys; sys.exit(3)"]))
    with pytest.raises(CommandError):
        list(stream_lines(["/nonexistent/sacct"]))


def test_stream_lines_kills_a_hung_command() -> None:
    code = "import time; print('x', flush=True); time.sleep(60)"
    lines = stream_lines([sys.executable, "-c", code], idle_timeout=0.5, timeout=30)
    assert next(lines) == "x\n"
    with pytest.raises(CommandTimeout):
        next(lines)
