"""slurm.conf checks: what is missing or conflicting, with the line to paste."""

from __future__ import annotations

from pathlib import Path

from slurm_ai.admin.slurmconf import check_slurm_conf, load_slurm_conf, parse_text

SCRIPTS = {
    "prolog_script": "/etc/slurm/prolog.d/50-slurm-ai",
    "epilog_script": "/etc/slurm/epilog.d/50-slurm-ai",
    "taskprolog_script": "/etc/slurm/slurm-ai-taskprolog",
}


def by_key(findings):
    return {f.key: f for f in findings}


def test_bare_conf_lists_every_missing_line() -> None:
    conf = parse_text("ClusterName=c\nSlurmctldHost=h\n")
    found = by_key(check_slurm_conf(conf, **SCRIPTS))
    assert found["Prolog"].status == "missing"
    assert found["Prolog"].paste == "Prolog=/etc/slurm/prolog.d/*"
    assert found["Epilog"].paste == "Epilog=/etc/slurm/epilog.d/*"
    assert found["TaskProlog"].paste == "TaskProlog=/etc/slurm/slurm-ai-taskprolog"
    assert found["PrologFlags"].paste == "PrologFlags=Alloc"
    assert found["AccountingStorageType"].status == "missing"
    assert found["PrologEpilogTimeout"].status == "missing"
    assert "GresTypes" not in found  # no GPUs on this node


def test_complete_conf_is_all_ok(tmp_path: Path) -> None:
    (tmp_path / "hooks.conf").write_text(
        "Prolog=/etc/slurm/prolog.d/*\nEpilog=/etc/slurm/epilog.d/*\n"
        "TaskProlog=/etc/slurm/slurm-ai-taskprolog\n"
    )
    main = tmp_path / "slurm.conf"
    main.write_text(
        "PrologFlags=Contain,Alloc  # comment\n"
        "AccountingStorageType=accounting_storage/slurmdbd\n"
        "PrologEpilogTimeout=300\nGresTypes=gpu\n"
        "NodeName=gpu[01-04] CPUs=64 Gres=gpu:8\n"
        "PartitionName=bare Nodes=gpu[01-04] Default=YES\n"
        "Include hooks.conf\n"
    )
    conf = load_slurm_conf(main)
    assert conf.problems == []
    findings = check_slurm_conf(conf, node_name="gpu03", gpu_count=8, **SCRIPTS)
    assert {f.status for f in findings} == {"ok"}, findings


def test_site_prolog_and_flags_are_conflicts_with_merged_paste() -> None:
    conf = parse_text(
        "Prolog=/usr/local/sbin/site-prolog\nPrologFlags=Contain\n"
        "TaskProlog=/usr/local/sbin/site-task\nAccountingStorageType=accounting_storage/none\n"
        "GresTypes=mps\nNodeName=n1 CPUs=8\n"
    )
    found = by_key(check_slurm_conf(conf, node_name="n1", gpu_count=2, **SCRIPTS))
    assert found["Prolog"].status == "conflict"
    assert "prolog.d" in found["Prolog"].message
    assert found["PrologFlags"].paste == "PrologFlags=Contain,Alloc"
    assert found["TaskProlog"].status == "conflict"
    assert found["AccountingStorageType"].status == "conflict"
    assert found["GresTypes"].paste == "GresTypes=mps,gpu"
    assert found["Gres"].paste == "NodeName=n1 ... Gres=gpu:2"


def test_missing_include_and_garbage_are_reported_not_raised(tmp_path: Path) -> None:
    main = tmp_path / "slurm.conf"
    main.write_text("Include nowhere/*.conf\n=oops\nNodeName=n[1-\n")
    conf = load_slurm_conf(main)
    assert any("no such file" in p for p in conf.problems)
    findings = check_slurm_conf(conf, node_name="n1", gpu_count=1, **SCRIPTS)
    assert by_key(findings)["NodeName"].status == "missing"


def test_health_check_program_lines_only_when_health_is_installed() -> None:
    hc = "/etc/slurm/slurm-ai-healthcheck"
    bare = parse_text("ClusterName=c\n")
    assert "HealthCheckProgram" not in by_key(check_slurm_conf(bare, **SCRIPTS))
    found = by_key(check_slurm_conf(bare, healthcheck_script=hc, **SCRIPTS))
    assert [(found[k].status, found[k].paste) for k in (
        "HealthCheckProgram", "HealthCheckInterval", "HealthCheckNodeState"
    )] == [
        ("missing", f"HealthCheckProgram={hc}"),
        ("missing", "HealthCheckInterval=3600"),
        ("missing", "HealthCheckNodeState=IDLE"),
    ]  # fmt: skip
    nhc = parse_text(
        "HealthCheckProgram=/usr/sbin/nhc\nHealthCheckInterval=0\nHealthCheckNodeState=ANY\n"
    )
    found = by_key(check_slurm_conf(nhc, healthcheck_script=hc, **SCRIPTS))
    assert found["HealthCheckProgram"].status == "conflict"
    assert "--healthcheck-chain /usr/sbin/nhc" in found["HealthCheckProgram"].message
    assert found["HealthCheckInterval"].status == "conflict"
    assert "never runs the HealthCheckProgram" in found["HealthCheckInterval"].message
    assert found["HealthCheckNodeState"].status == "conflict"
    ours = parse_text(
        f"HealthCheckProgram={hc}\nHealthCheckInterval=600\nHealthCheckNodeState=IDLE,CYCLE\n"
    )
    found = by_key(check_slurm_conf(ours, healthcheck_script=hc, **SCRIPTS))
    assert all(found[k].status == "ok" for k in found if k.startswith("HealthCheck"))


def test_another_slurm_ai_install_s_hook_lines_are_a_conflict(tmp_path: Path) -> None:
    """Slurm 24.11 runs every Prolog=/Epilog= line: an older install's lines left beside
    ours make two hook sets write each job's record (seen on 24.11). A site's own extra
    Prolog line is not ours to flag."""
    old, ours = tmp_path / "old", tmp_path / "new"
    for root in (old, ours):
        for kind in ("prolog.d", "epilog.d"):
            (root / kind).mkdir(parents=True)
            (root / kind / "50-slurm-ai").write_text("#!/bin/sh\n")
    (tmp_path / "site-prolog").write_text("#!/bin/sh\n")
    scripts = {
        "prolog_script": str(ours / "prolog.d" / "50-slurm-ai"),
        "epilog_script": str(ours / "epilog.d" / "50-slurm-ai"),
        "taskprolog_script": "/etc/slurm/slurm-ai-taskprolog",
    }
    conf = parse_text(
        f"Prolog={old}/prolog.d/*\nEpilog={old}/epilog.d/*\nProlog={tmp_path}/site-prolog\n"
        f"Prolog={ours}/prolog.d/*\nEpilog={ours}/epilog.d/*\n"
    )
    found = by_key(check_slurm_conf(conf, **scripts))
    assert found["Prolog"].status == "ok" and found["Epilog"].status == "ok"  # the last lines
    for key in ("Prolog", "Epilog"):
        other = found[f"{key} (another slurm-ai)"]
        assert other.status == "conflict" and f"{old}/{key.lower()}.d/50-slurm-ai" in other.message
        assert "24.11" in other.message
    keys = [f.key for f in check_slurm_conf(conf, **scripts)]
    assert keys.count("Prolog (another slurm-ai)") == 1  # the site's own line is not flagged
    alone = parse_text(f"Prolog={ours}/prolog.d/*\nEpilog={ours}/epilog.d/*\n")
    assert not [f for f in check_slurm_conf(alone, **scripts) if "another" in f.key]
