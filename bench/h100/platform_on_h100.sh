#!/usr/bin/env bash
# On the lent H100 (driver 580 present, no systemd, no network), from the repository root with the
# pyinfra wheels in .whl/: the "leave a good driver alone" path, the CUDA paths for login shells,
# a converged second run, and the NVML fact. Writes to $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export VLLM_API_KEY=platform-check-not-a-real-key-0123
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
printf 'hosts = [("@local", {"cuda_toolkit": "13.0"})]\n' > /tmp/inv.py
{ echo "### first run"; python3 -m pyinfra -y /tmp/inv.py bench/h100/platform_steps.py
  echo "### second run"; python3 -m pyinfra -y /tmp/inv.py bench/h100/platform_steps.py
  echo "### /etc/profile.d/cuda.sh"; cat /etc/profile.d/cuda.sh
  echo "### fresh login shell"; env -i HOME=/root bash -lc 'command -v nvcc; nvcc --version | tail -2; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"'
  echo "### NVML fact with python3"; python3 -m pyinfra @local fact deploy.host_facts.NvmlFacts python=/usr/bin/python3
} 2>&1 | tee "$OUT/platform.txt"
