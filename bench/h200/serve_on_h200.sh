#!/usr/bin/env bash
# Run on the lent H200 (no network, no systemd), from the repository root, after
# vllm-on-gpu's setup.sh has put vLLM 0.24.0 into /tmp/site and with pyinfra's wheels in .whl/:
# for gpt-oss-20b and -120b, the deploy's own facts, preflight and plan through pyinfra @local, the
# unit and environment file rendered as a deploy writes them, then the unit's ExecStart run as a
# process (serve_unit.py), its ExecStartPost readiness check, the endpoint checks and NVML read-back.
# Usage: bash bench/h200/serve_on_h200.sh [MODEL...]   Writes to $OUT.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 VLLM_NO_USAGE_STATS=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# the "venv" the unit points at: the image's python3, which holds torch, with vLLM in PYTHONPATH
mkdir -p /srv/vllm/venvs/vllm-0.24.0/bin /srv/vllm/bin && ln -sfn "$(command -v python3)" /srv/vllm/venvs/vllm-0.24.0/bin/python
ln -sfn /srv/vllm/venvs/vllm-0.24.0 /srv/vllm/current
cp deploy/endpoint_check.py /srv/vllm/bin/endpoint_check.py
tok=""; [ -f .gpu/tokenizer/tokenizer.json ] && tok="--tokenizer $PWD/.gpu/tokenizer"
VLLM_API_KEY=$(python3 -c "import secrets; print(secrets.token_hex(24))"); export VLLM_API_KEY
nvidia-smi --query-gpu=index,name,uuid,compute_cap,memory.total,memory.used,memory.free,driver_version \
  --format=csv,noheader,nounits | tee "$OUT/smi.csv"
python3 -m pyinfra @local fact deploy.host_facts.PlatformFacts deploy.host_facts.GpuFacts > "$OUT/facts.txt" 2>&1
for m in "${@:-openai/gpt-oss-20b openai/gpt-oss-120b}"; do
  for model in $m; do
    name=${model#openai/}
    printf 'hosts = [("@local", {"model": "%s", "model_cache_dir": "/srv/models", "install_dir": "/srv/vllm", "config_dir": "/srv/vllm-etc"})]\n' "$model" > /tmp/inv.py
    echo "### $model: preflight, plan and unit through pyinfra @local"
    RENDER_OUT=/tmp/render-$name python3 -m pyinfra -y /tmp/inv.py bench/h200/render_unit.py 2>&1 | grep -v "^\s*$" | tail -15
    cp /tmp/render-$name/vllm.service "$OUT/$name.service"; cp /tmp/render-$name/verdict.json "$OUT/$name-verdict.json"
    grep -v "^VLLM_API_KEY=" /tmp/render-$name/vllm.env > "$OUT/$name.env-without-key"
    echo "### $model: ExecStart as a process, ExecStartPost, endpoint checks, NVML"
    MODEL_CONFIG=.gpu/tool/models/$name/config.json timeout 480 python3 bench/h200/serve_unit.py /tmp/render-$name/vllm.service /tmp/render-$name/vllm.env \
      "$OUT/$name-server.log" $tok | tee "$OUT/$name-serve.json"
  done
done
