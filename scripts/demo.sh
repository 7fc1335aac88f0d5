#!/usr/bin/env bash
# The main job on an embedded default: set up, boot disposable hosts, deploy with the cpu
# backend, print each endpoint and a real completion. Needs root (network namespaces, nspawn).
set -euo pipefail
usage() {
  echo "usage: sudo bash scripts/demo.sh [HOSTS]"
  echo "  boot HOSTS disposable hosts (1 to 8, default 2), deploy vLLM (cpu backend, a tiny model) to them,"
  echo "  print each endpoint and a real completion; remove them with: .venv/bin/python -m lab.hosts down"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|[1-8]) [ $# -le 1 ] || { usage >&2; exit 2; } ;;
  *) echo "scripts/demo.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m lab.demo "$@"
