"""Node topology, virtualization fingerprint and affinity.

Layout (pure logic apart from the probes):

- `model`: the data (CPU topology, GPUs, NICs, the node) with JSON round trips.
- `pci`, `cpu`, `nics`, `gpus`, `virt`: probes reading one `Sysfs` root and NVML.
- `probe`: reads a whole node (live or captured), caches it per boot.
- `alloc`: what the job was given (CPUs, GPUs, tasks), from the environment.
- `plan`: the affinity plan, a pure function of topology and allocation.
- `bind`, `taskprolog`, `hook`, `capture`, `cli`: thin orchestration.

Nothing here imports pynvml at module import time: `bind` on a CPU-only job
never loads it.
"""
