#!/usr/bin/env bash
# Run every GPU check on a lent GPU machine, each bounded in time, logging to $OUT.
# Usage (repo root): bash bench/gpu/run_all.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp/gpu-checks}
mkdir -p "$out"
{
  echo "== machine"; nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,pci.bus_id,power.draw,virtualization_mode --format=csv 2>&1
  python3 -c "import sys, torch, pynvml; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'nccl', torch.cuda.nccl.version())" 2>&1
  python3 -m pip install -q -e . --no-deps --no-build-isolation >/dev/null 2>&1 || echo "(editable install failed; using PYTHONPATH)"
} 2>&1 | tee "$out/machine.txt"
for check in bench/gpu/check_hooks.py bench/gpu/check_health.py bench/gpu/check_health_background.py bench/gpu/check_agent.py bench/gpu/check_topology.py bench/gpu/check_spank.py bench/gpu/check_energy.py; do
  name=$(basename "$check" .py)
  echo "== $name"
  timeout -k 5 90 python3 "$check" 2>&1 | tee "$out/$name.txt"
  echo "(exit ${PIPESTATUS[0]})"
done
