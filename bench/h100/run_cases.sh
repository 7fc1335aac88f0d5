#!/usr/bin/env bash
# On the lent H100, after vLLM 0.24.0 was installed (uv pip install --target, the lead's GPU setup) into
# /tmp/site: run cases FIRST..LAST (0-based) of bench/h100/cases.json with that tool's measure.py
# (copied to .gpu/tool), and bring back the records and the whole logs under $OUT.
# The copy keeps each log whole (measure.py keeps the last 60,000 characters), because the
# DEBUG line "Memory profiling takes ..." with the torch peak and non-torch increase is needed.
# Usage: bash bench/h100/run_cases.sh FIRST LAST
set -u
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TRUTH_LOGS=/tmp/truth-logs
mkdir -p "$TRUTH_LOGS"
nvidia-smi --query-gpu=name,memory.total,memory.used,memory.free,driver_version --format=csv \
  > "$OUT/smi-$1-$2.txt"
python3 -c "import torch; f, t = torch.cuda.mem_get_info(); print('mem_get_info', f, t)" \
  >> "$OUT/smi-$1-$2.txt"
sed 's/log\[-60000:\]/log/' .gpu/tool/measure.py > .gpu/tool/measure_full.py
python3 .gpu/tool/measure_full.py bench/h100/cases.json "$OUT/m-$1-$2.jsonl" "$1" "$2"
cd "$TRUTH_LOGS" && tar -czf "$OUT/logs-$1-$2.tar.gz" log-*.txt
