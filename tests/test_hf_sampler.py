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

    plain = run(prefix_cache=False, static_cache=False, engine="generate")
    assert all(len(c) == 1 for c in plain)
    assert run(prefix_cache=True, static_cache=False, engine="generate") == plain  # the prefix runs once
    assert run(prefix_cache=False, engine="prefix") == plain  # the prefix engine without a shared prefix
    assert run(static_cache=True) == plain  # a static KV cache (compiled by transformers on a GPU)


def test_static_cache_is_off_on_cpu_by_default_and_checked(tiny_model):
    registry = load_registry()
    sampler = registry.create("samplers", "hf", tiny_model)
    assert sampler.static_cache is False and sampler.prefix_cache is True
    with pytest.raises(StarKitError, match="static_cache must be auto, true or false"):
        registry.create("samplers", "hf", tiny_model, static_cache="yes")


def test_hf_batch_size_auto_and_bad_values(tiny_model):
    registry = load_registry()
    assert registry.create("samplers", "hf", tiny_model, engine="generate").batch_size == 32  # CPU (GPU: 256)
    for bad in ("big", 0):
        with pytest.raises(StarKitError, match="batch_size must be auto or a positive integer"):
            registry.create("samplers", "hf", tiny_model, batch_size=bad)


def test_prefix_engine_matches_generate_greedy_and_keeps_order(tiny_model, prompts_and_params):
    """The prefix engine (shared prefix cache, per-row static cache, continuous batching) gives the texts of
    transformers' generate in float32, also when fewer slots than prompts make rows refill finished slots."""
    prompts, params = prompts_and_params
    registry = load_registry()

    def run(engine, batch_size, prompts=prompts, params=params):
        sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", batch_size=batch_size, engine=engine)
        assert (sampler._engine is not None) == (engine == "prefix")
        try:
            return sampler.generate(prompts, params)
        finally:
            sampler.close()

    plain = run("generate", 4)
    assert run("prefix", 2) == plain  # 6 prompts through 2 slots: every slot is refilled twice
    assert run("prefix", 8) == plain
    # without a shared prefix (different few-shot prompts) the engine still decodes each row on its own
    mixed = [p.replace("Q:", "Question:", i % 2) for i, p in enumerate(prompts)]
    assert run("prefix", 3, mixed) == run("generate", 3, mixed)


def test_prefix_engine_stops_at_stop_strings_and_samples_reproducibly(tiny_model, prompts_and_params):
    prompts, _ = prompts_and_params
    registry = load_registry()
    sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", engine="prefix", batch_size=3)
    seen = []
    params = GenerationParams(max_new_tokens=20, temperature=1.0, top_p=0.9, n=2, seed=3, stop=(" ",))
    out = sampler.generate(prompts, params, advance=seen.append)
    assert sum(seen) == len(prompts)  # the progress bar counts prompts, each once
    assert all(len(c) == 2 for c in out) and all(" " not in t for c in out for t in c)
    assert sampler.generate(prompts, params) == out  # same seed, same samples
    assert sampler.generate(prompts, GenerationParams(max_new_tokens=20, temperature=1.0, n=2, seed=4,
                                                      stop=(" ",))) != out


def test_prefix_engine_option_is_checked_and_auto_picks_it_on_cpu(tiny_model):
    registry = load_registry()
    sampler = registry.create("samplers", "hf", tiny_model)
    assert sampler._engine is not None and sampler._engine.slots is None  # auto on CPU: a 1 GiB cache's worth
    assert registry.create("samplers", "hf", tiny_model, engine="generate")._engine is None
    with pytest.raises(StarKitError, match="engine must be one of auto, prefix, generate"):
        registry.create("samplers", "hf", tiny_model, engine="fast")
