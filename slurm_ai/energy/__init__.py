"""Per-job energy: counters snapshotted in the Prolog, deltas in the Epilog.

Sources, each named with its quality in the record: NVML total energy per
allocated GPU (measured), RAPL package/DRAM counters (measured, apportioned by
CPU share on a shared node), IPMI DCMI node power (estimated: two readings),
and where no counter exists an honest estimate: GPU power through NVML or a
CPU model from the job's CPU time and the package TDP.
"""
