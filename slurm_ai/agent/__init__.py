"""In-job telemetry: a node agent sampling GPU and CPU use per job.

Layout (one job per module):

- `gpu`: per-GPU sampling through the NVML gateway (utilisation, memory,
  power, SM clock, throttle reasons, energy counter, PCIe/NVLink, ECC, XID).
- `procs`: finds each job's processes (cgroup path or SLURM_JOB_ID in
  /proc/<pid>/environ, filtered by node) and measures their CPU time and RSS.
- `store`: the bounded per-node sample store (sqlite, pruned to a byte cap),
  also holding the RAPL counter readings.
- `rollup`: per-minute rollups of the store and the segment queries over them.
- `summary`: the per-job summary the Epilog puts into the record ("usage").
- `export`: Prometheus text format, node_exporter textfile, HTTP /metrics.
- `daemon`: the sampling loop; `cli`: `slurm-ai agent`; `hook`: epilog_step.
- `render`: usage summary -> bars and notes for `slurm-ai job`.
- `unit`: the systemd unit text that `slurm-ai install` writes.
"""
