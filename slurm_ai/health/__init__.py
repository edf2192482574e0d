"""All-reduce health check and GPU health (issue 4).

Layout (pure logic first, system access behind small modules):

- `verdict`    verdicts, their order and the verdict -> exit code table
- `measure`    nccl-tests-style sweep, bandwidth math, result table (pure)
- `backends/`  one `Collective` per backend: mpi4py (numpy) and torch.distributed
- `worker`     one rank: run the sweep, print the result line (rank 0)
- `launcher`   --scope node: start local ranks under one hard timeout
- `rendezvous` --scope job: rank, size and master address from the Slurm env
- `thresholds` fixed floors per partition and calibration from history
- `gpu`        NVML health checks (ECC, remaps, XIDs, throttling, PCIe, NVLink)
- `history`    results cache and per-partition history in the spool
- `policy`     when the Prolog runs the check
- `drain`      scontrol drain with a readable reason
- `prom`       node_exporter textfile output
- `node`       the node check end to end (used by the CLI and the Prolog)
- `cli`, `hook` thin entry points

Nothing here imports torch, mpi4py or numpy at module level: only the
backend that actually runs imports them.
"""
