"""Pure core modules: hostlists, job environment, config, sysfs, spool, records."""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import pytest

from slurm_ai.config import load_config
from slurm_ai.errors import ConfigError, RecordError, SpoolError
from slurm_ai.record import (
    TOKEN_PREFIX,
    AdminComment,
    decode_token,
    encode_record,
    merge_node_records,
    new_job_record,
)
from slurm_ai.slurmenv import JobEnv, expand_hostlist, parse_index_list
from slurm_ai.spool import (
    CorruptFileError,
    atomic_write_json,
    ensure_private_dir,
    quarantine,
    read_bytes_nofollow,
    read_json,
    read_json_identified,
)
from slurm_ai.sysfs import Sysfs, format_cpu_list, parse_cpu_list, parse_cpu_mask


@pytest.mark.parametrize(
    ("text", "hosts"),
    [
        ("n1", ["n1"]),
        ("n[1-3]", ["n1", "n2", "n3"]),
        ("gpu[01-03,07],login1", ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
        ("a[098-101]", ["a098", "a099", "a100", "a101"]),
    ],
)
def test_expand_hostlist(text: str, hosts: list[str]) -> None:
    assert expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["n[1-", "n[3-1]", "n[a-b]", "n]1["])
def test_expand_hostlist_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        expand_hostlist(text)


def test_parse_index_list_reports_garbage_without_raising() -> None:
    assert parse_index_list("0,2-3,2") == ([0, 2, 3], [])
    indices, problems = parse_index_list("0,$(rm -rf /),GPU-abc")
    assert indices == [0]
    assert len(problems) == 2


def test_job_env_from_prolog_environment() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_JOB_USER": "alice",
        "SLURM_JOB_UID": "1000",
        "SLURM_JOB_PARTITION": "bare",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NODELIST": "n[1-2]",
        "SLURMD_NODENAME": "n1",
        "SLURM_SCRIPT_CONTEXT": "prolog_slurmd",
        "CUDA_VISIBLE_DEVICES": "4,5",
    }
    job = JobEnv.from_environ(env)
    assert job.job_id == "42"
    assert job.nodelist == ["n1", "n2"]
    assert job.gpus == [4, 5]
    assert job.uid == 1000
    assert job.in_job


def test_job_env_rejects_unsafe_job_id() -> None:
    assert JobEnv.from_environ({"SLURM_JOB_ID": "../../etc"}).job_id is None


def test_config_defaults_and_typed_errors(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SLURM_AI_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "absent.toml"))
    path = tmp_path / "c.toml"
    path.write_text('[spool]\ndir = "/x/spool"\n[health]\nmin_busbw = true\n')
    config = load_config(str(path))
    assert str(config.spool_dir) == "/x/spool"
    with pytest.raises(ConfigError, match=r"\[health\] min_busbw"):
        config.section("health").get_float("min_busbw", 1.0)


def test_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[spool]\ndir = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(str(path))


def test_cpu_lists_round_trip() -> None:
    assert parse_cpu_list("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpu_list([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert parse_cpu_mask("ff,00000000") == list(range(32, 40))
    with pytest.raises(ValueError):
        parse_cpu_list("3-1")


def test_sysfs_reads_under_root(tmp_path: Path) -> None:
    node = tmp_path / "sys/devices/system/node/node0"
    node.mkdir(parents=True)
    (node / "cpulist").write_text("0-7\n")
    (tmp_path / "sys/class").mkdir(parents=True)
    os.symlink("../devices/system/node/node0", tmp_path / "sys/class/n0")
    fs = Sysfs(tmp_path)
    assert fs.read_text("/sys/devices/system/node/node0/cpulist") == "0-7"
    assert fs.read_int("/sys/missing", default=-1) == -1
    assert fs.realpath("/sys/class/n0") == "/sys/devices/system/node/node0"
    assert fs.listdir("/sys/devices/system/node") == ["node0"]


def test_atomic_write_is_private_and_readable(tmp_path: Path) -> None:
    spool = ensure_private_dir(tmp_path / "spool", require_root_owner=False)
    target = spool / "rec.json"
    atomic_write_json(target, {"a": 1})
    assert read_json(target) == {"a": 1}
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert oct(spool.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in spool.iterdir()] == ["rec.json"]


def test_world_writable_spool_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    spool.chmod(0o777)
    with pytest.raises(SpoolError, match="world-writable"):
        ensure_private_dir(spool, require_root_owner=False)


def test_reads_never_follow_symlinks_and_are_bounded(tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:x")
    link = tmp_path / "units"
    link.symlink_to(secret)
    with pytest.raises(SpoolError, match="refusing"):
        read_bytes_nofollow(link, max_bytes=100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 200)
    with pytest.raises(SpoolError, match="more than"):
        read_bytes_nofollow(big, max_bytes=100)


def test_corrupt_file_is_quarantined(tmp_path: Path) -> None:
    spool = ensure_private_dir(tmp_path / "spool", require_root_owner=False)
    bad = spool / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SpoolError, match="corrupt"):
        read_json(bad)
    moved = quarantine(bad, spool, "corrupt json")
    assert moved is not None and moved.exists() and not bad.exists()


def test_quarantine_never_moves_a_fresh_file_renamed_into_place(tmp_path: Path) -> None:
    """A reader finds a corrupt file; before it quarantines, a writer renames a good
    one into place: the good one stays, whichever side of the check the rename lands."""
    spool = ensure_private_dir(tmp_path / "spool", require_root_owner=False)
    path = spool / "last.json"
    path.write_text("{not json")
    with pytest.raises(CorruptFileError) as caught:
        read_json_identified(path)
    atomic_write_json(path, {"fresh": 1})  # before the check
    assert quarantine(path, spool, "corrupt", caught.value.identity) is None
    assert read_json(path) == {"fresh": 1}

    path.write_text("{not json again")
    with pytest.raises(CorruptFileError) as caught:
        read_json_identified(path)
    real_replace = os.replace

    def writer_lands_after_the_check(src: Any, dst: Any) -> None:
        if Path(src) == path:  # the quarantine's rename: the writer got in first
            atomic_write_json(path, {"fresh": 2})
        real_replace(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", writer_lands_after_the_check)
        assert quarantine(path, spool, "corrupt", caught.value.identity) is None
    assert read_json(path) == {"fresh": 2}
    assert [p.name for p in (spool / "corrupt").iterdir()] == []
    # The corrupt file itself, still in place: moved as before.
    path.write_text("{not json")
    with pytest.raises(CorruptFileError) as caught:
        read_json_identified(path)
    moved = quarantine(path, spool, "corrupt", caught.value.identity)
    assert moved is not None and moved.read_text() == "{not json" and not path.exists()


def test_json_nested_too_deep_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    spool = ensure_private_dir(tmp_path / "spool", require_root_owner=False)
    deep = spool / "deep.json"
    deep.write_text("[" * 5000 + "]" * 5000)  # RecursionError in json.loads
    with pytest.raises(SpoolError, match="nested too deeply"):
        read_json(deep)
    payload = zlib.compress(b'{"v": 1, "nodes": ' + b"[" * 5000 + b"]" * 5000 + b"}")
    with pytest.raises(RecordError, match="nested too deeply"):
        decode_token(TOKEN_PREFIX + payload.hex())


def test_record_round_trip_keeps_foreign_content() -> None:
    record = merge_node_records(
        {"id": "7", "nodes_expected": 2}, {"n1": {"energy": []}}, units={"tokens": 1e6}
    )
    assert record["complete"] is False
    token = encode_record(record)
    assert " " not in token and "|" not in token and "\n" not in token
    comment = AdminComment.parse("JS1:H4sIAAAA " + token)
    assert comment.foreign == "JS1:H4sIAAAA"
    assert comment.record() == record
    # Re-delivery replaces only our token.
    newer = merge_node_records({"id": "7", "nodes_expected": 2}, {"n2": {}}, previous=record)
    text = comment.with_token(encode_record(newer))
    again = AdminComment.parse(text)
    assert again.foreign == "JS1:H4sIAAAA"
    assert set(again.record()["nodes"]) == {"n1", "n2"}  # type: ignore[index]
    assert again.record()["complete"] is True  # type: ignore[index]


def test_record_token_survives_sacctmgr_lowercasing() -> None:
    # sacctmgr (Slurm 22.05) lower-cases AdminComment values; our token must not care.
    record = new_job_record({"id": "9", "partition": "GPU-Bare"})
    token = encode_record(record)
    assert token == token.lower()
    assert decode_token(token.upper().replace("SAI1:", "sai1:")) == record
    assert AdminComment.parse("js1:abc " + token.lower()).record() == record


def test_large_job_record_fits_admin_comment() -> None:
    # 64 nodes x 8 GPUs with every node section filled: well inside the 64 KiB column.
    nodes = {
        f"gpu{n:03d}": {
            "platform": {"class": "bare-metal", "evidence": ["dmi: Dell PowerEdge XE9680"]},
            "gpus": [
                {
                    "index": g,
                    "uuid": f"GPU-{n:04x}{g:04x}-1111-2222-3333-444455556666",
                    "model": "NVIDIA H100 80GB HBM3",
                    "energy_j": 123456.7 + n * 8 + g,
                }
                for g in range(8)
            ],
            "energy": {
                "total_j": 1e6 + n,
                "sources": [
                    {
                        "source": "nvml",
                        "domain": f"gpu{g}",
                        "joules": 123456.7 + g,
                        "quality": "measured",
                    }
                    for g in range(8)
                ],
            },
            "time": {"prolog_s": 0.08, "epilog_s": 0.12, "health_s": 6.5},
            "health": {"verdict": "pass", "backend": "nccl", "busbw_gbps": 471.3 - n / 10},
        }
        for n in range(64)
    }
    token = encode_record(merge_node_records({"id": "1", "nodes_expected": 64}, nodes))
    assert len(token) < 48 * 1024


@pytest.mark.parametrize("token", ["sai1:", "sai1:!!!", "sai1:78da2b492d2e01", "sai1:789c4b4c4a06"])
def test_corrupt_tokens_raise_record_error(token: str) -> None:
    with pytest.raises(RecordError):
        decode_token(token)


def test_new_job_record_requires_id() -> None:
    with pytest.raises(RecordError):
        new_job_record({})
