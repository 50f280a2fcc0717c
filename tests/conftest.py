"""Shared fixtures: the real embedded SmolLM2 (converted once, cached) and a tiny Llama built from a config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The real GSM8K and CommonsenseQA files (the layout --data-dir reads), for the tests that need them (skipped
# without): $STAR_KIT_TEST_DATA, else a shared/data folder beside the checkout, as CI provides it.
REAL_DATA = Path(os.environ.get("STAR_KIT_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def smollm2() -> str:
    """The embedded SmolLM2-135M-Instruct as a bf16 Hugging Face folder."""
    from star_kit.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2) -> str:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer: real transformers code, seconds to run."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture()
def test_plugin(monkeypatch):
    """Load tests/plugins_for_tests.py as a plugin without installing it (STAR_KIT_PLUGINS)."""
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("STAR_KIT_PLUGINS", "plugins_for_tests")
    return "plugins_for_tests"


@pytest.fixture(scope="session")
def plugin_env() -> dict:
    """The environment of a `star-kit` subprocess that loads tests/plugins_for_tests.py (one thread per process)."""
    env = dict(os.environ, STAR_KIT_PLUGINS="plugins_for_tests", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), env.get("PYTHONPATH", "")) if p)
    return env
