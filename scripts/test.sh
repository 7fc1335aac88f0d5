#!/usr/bin/env bash
# The tests: unit tests, then the end-to-end deploy against real disposable hosts (root needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
.venv/bin/ruff check .
.venv/bin/python -m pytest -v -s -p no:cacheprovider --durations=20 "$@"
echo "tests took $(( $(date +%s) - start )) s"
