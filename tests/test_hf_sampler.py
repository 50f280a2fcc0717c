"""The `hf` sampler's fast paths give the same text as the plain path (greedy, fp32, a tiny model)."""

import pytest

from star_kit.errors import StarKitError
from star_kit.records import GenerationParams
from star_kit.registry import load_registry


@pytest.fixture(scope="module")
def prompts_and_params():
    task = load_registry().create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("eval", 6, 0)]
    return prompts, GenerationParams(max_new_tokens=12, stop=task.stop)


def test_prefix_cache_and_static_cache_match_the_plain_path(tiny_model, prompts_and_params):
    prompts, params = prompts_and_params
    registry = load_registry()

    def run(**options):
        sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", batch_size=4, **options)
        try:
            return sampler.generate(prompts, params)
        finally:
            sampler.close()

    plain = run(prefix_cache=False, static_cache=False)
    assert all(len(c) == 1 for c in plain)
    assert run(prefix_cache=True, static_cache=False) == plain  # the shared few-shot prefix runs once
    assert run(static_cache=True) == plain  # a static KV cache (compiled by transformers on a GPU)


def test_static_cache_is_off_on_cpu_by_default_and_checked(tiny_model):
    registry = load_registry()
    sampler = registry.create("samplers", "hf", tiny_model)
    assert sampler.static_cache is False and sampler.prefix_cache is True
    with pytest.raises(StarKitError, match="static_cache must be auto, true or false"):
        registry.create("samplers", "hf", tiny_model, static_cache="yes")


def test_hf_batch_size_auto_and_bad_values(tiny_model):
    registry = load_registry()
    assert registry.create("samplers", "hf", tiny_model).batch_size == 32  # auto on CPU (256 on a GPU)
    for bad in ("big", 0):
        with pytest.raises(StarKitError, match="batch_size must be auto or a positive integer"):
            registry.create("samplers", "hf", tiny_model, batch_size=bad)
