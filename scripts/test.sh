#!/usr/bin/env bash
# The tests: unit tests, then the end-to-end deploy against real disposable hosts (root needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
.venv/bin/ruff check .
# tests/test_rollout_e2e.py (4 lab hosts) is not part of this gate yet: it passed alone twice and failed once with
# another lab running beside it (the canary's vLLM ended before /health, cause not found); issue 13 stays open until
# it and its three missing lab cases pass here. Run it by hand: .venv/bin/python -m pytest -s tests/test_rollout_e2e.py
.venv/bin/python -m pytest -v -s -p no:cacheprovider --durations=20 --ignore=tests/test_rollout_e2e.py "$@"
echo "tests took $(( $(date +%s) - start )) s"
