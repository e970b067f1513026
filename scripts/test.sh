#!/usr/bin/env bash
# The test command (README and CI): set up, then run the whole suite.
# The first run converts SmolLM2's GGUF file once into ~/.cache/toolprm-agents (about 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY="${PYTHON:-python3}"
exec "$PY" -m pytest -q "$@"
