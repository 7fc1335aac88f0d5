#!/usr/bin/env bash
# Run on the lent H100 machine (no network, no systemd) from the repository root, with the
# wheels of pyinfra and its dependencies carried in .whl/: the facts, the preflight table and
# the plan command against the real GPU, through pyinfra's @local connector. Writes to $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export VLLM_API_KEY=preflight-only-not-a-real-key-0123
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=index,name,uuid,compute_cap,memory.total,memory.used,memory.free,driver_version,mig.mode.current \
  --format=csv,noheader,nounits | tee "$OUT/smi.csv"
python3 -m deploy.nvml_probe | tee "$OUT/nvml.json"; echo
python3 -m pyinfra @local fact deploy.host_facts.PlatformFacts deploy.host_facts.GpuFacts 2>&1 | tee "$OUT/facts.txt"
inv() { printf 'hosts = [("@local", %s)]\n' "$1" > /tmp/inv.py; echo "### inventory settings: $1"; python3 -m pyinfra -y /tmp/inv.py preflight.py; }
{ inv '{"vllm_spec": "vllm==0.24.0"}'
  inv '{"vllm_spec": "vllm==0.10.1+gptoss"}'
  inv '{"vllm_spec": "vllm==0.12.0"}'
  inv '{"model": "openai/gpt-oss-120b"}'
  inv '{"model": "openai/gpt-oss-120b", "gpu_memory_utilization": 0.9, "max_model_len": 131072}'
} 2>&1 | tee "$OUT/preflight.txt"
free=$(python3 -c "import json; print(json.load(open('$OUT/nvml.json'))['gpus'][0]['free_mib'])")
total=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
for m in openai/gpt-oss-20b openai/gpt-oss-120b; do
  echo "### plan $m vllm 0.24.0, total $total MiB, NVML free $free MiB"
  python3 -m deploy.plan --model $m --vllm 0.24.0 --gpu "NVIDIA H100 80GB HBM3" --compute-capability 9.0 \
    --gpu-memory-mib "$total" --gpu-free-mib "$free" --json; echo "exit $?"
done 2>&1 | tee "$OUT/plan.txt"
