"""Regenerate dump.txt: synthetic jobs plus every kind of bad row the report must survive.

Its synthetic records are v1 (record.py still reads them), as in the checked-in dump.

    python tests/data/report/make_dump.py > tests/data/report/dump.txt

Then refresh the golden files: UPDATE_GOLDEN=1 pytest tests/report
"""

from __future__ import annotations

import base64
import json
import random
import sys
import zlib

from slurm_ai.accounting.sacct import DELIMITER, FIELDS
from slurm_ai.record import encode_record
from slurm_ai.report.synth import dump_lines, make_job

D = DELIMITER


def line(row: dict[str, str]) -> str:
    return D.join(row[f] for f in FIELDS) + "\n"


def main() -> None:
    out = sys.stdout
    for text in dump_lines(150, seed=7, first_id=5000, version=1):
        out.write(text)
    rng = random.Random(99)
    jid = 9000

    def nxt(comment: str, **over: str) -> None:
        nonlocal jid
        row, _ = make_job(rng, jid, 1)
        row.update(over)
        row["AdminComment"] = comment
        out.write(line(row))
        jid += 1

    _, record = make_job(rng, 0, 1)
    good = encode_record(record)
    body = good[len("sai1:") :]
    nxt("")  # no record at all
    nxt("JS1:H4sIAAAAAAAAA6tWKkktLlGyUlAqS8wpTgUA")  # only another tool's content
    nxt(good[: 5 + len(body) // 4 * 2])  # truncated token (whole bytes, stream cut short)
    nxt("sai1:zz-not-hex!")  # corrupt token
    v2 = zlib.compress(json.dumps({"v": 99, "x": 1}).encode()).hex()
    nxt("sai1:" + v2)  # a format version this reader does not know
    nxt(
        encode_record(
            {
                "v": 1,
                "job": {"id": "9005"},
                "nodes": {
                    "n1": {
                        "energy": "garbage",
                        "gpus": [1, None],
                        "health": {"verdict": "pass", "busbw_gbps": "fast"},
                    }
                },
            }
        )
    )  # wrong types
    nxt(encode_record({"v": 1, "job": {"id": "9006"}}))  # no nodes at all
    nxt("free text | with pipes\nand a newline " + good)  # foreign text with '|' and a newline
    nxt(good, JobName="evil\n9999" + D + "x" + D * 11 + "sai1:forged")  # job name forging a row
    # A token written before the hex format (base64, case-sensitive): corrupt now.
    old = base64.urlsafe_b64encode(zlib.compress(b'{"v":1}')).rstrip(b"=").decode()
    nxt("SAI1:" + old)
    nxt(good.upper())  # upper-cased in transit: hex decodes in any case, a valid record
    nxt(good, JobIDRaw="9012.batch")  # a job step (dump made without -X)
    # A line that is no row: joined to the row before (a newline in its AdminComment).
    out.write("garbage line without delimiters\n")


if __name__ == "__main__":
    main()
