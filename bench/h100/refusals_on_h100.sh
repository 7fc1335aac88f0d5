#!/usr/bin/env bash
# On the lent H100: the preflight refusing configurations that cannot start, for real: a requested
# 120b configuration whose sampler warm-up leaves no KV cache, and the 120b default while another
# process holds 40 GiB of the GPU (as a desktop or a second server would). Writes to $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export VLLM_API_KEY=refusal-check-not-a-real-key-0123
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
inv() { printf 'hosts = [("@local", %s)]\n' "$1" > /tmp/inv.py; echo "### inventory settings: $1"; python3 -m pyinfra -y /tmp/inv.py preflight.py; }
{ inv '{"model": "openai/gpt-oss-120b", "gpu_memory_utilization": 0.9, "max_model_len": 131072, "max_num_seqs": 1024}'
  python3 -c "import torch,time; x=torch.empty(40*2**30, dtype=torch.uint8, device='cuda'); print('holding 40 GiB', flush=True); time.sleep(120)" &
  hog=$!; sleep 20
  nvidia-smi --query-gpu=memory.used,memory.free --format=csv
  inv '{"model": "openai/gpt-oss-120b"}'
  inv '{"model": "openai/gpt-oss-20b"}'
  kill $hog
} 2>&1 | tee "$OUT/refusals.txt"
