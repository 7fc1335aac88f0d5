#!/usr/bin/env bash
# Set up this checkout on a fresh machine: .venv with the project (pyinfra 3.10, ...), its test
# tools and what the lab's tiny model needs (CPU torch, transformers). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
links=()
# The CPU build of torch 2.13.0 is not on PyPI; machines of this kind keep it in /opt/wheels.
[ -d /opt/wheels ] && links=(--find-links /opt/wheels)
.venv/bin/python -m pip install -q --disable-pip-version-check "${links[@]}" -e '.[dev,lab]'
