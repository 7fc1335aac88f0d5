#!/usr/bin/env bash
# The main job on an embedded default: set up, boot disposable hosts, deploy with the cpu
# backend, print each endpoint and a real completion. Needs root (network namespaces, nspawn).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m lab.demo "$@"
