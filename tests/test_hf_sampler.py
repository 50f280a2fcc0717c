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
    with pytest.raises(StarKitError, match="option static_cache='yes' is not true or false or 'auto'"):
        registry.create("samplers", "hf", tiny_model, static_cache="yes")


def test_hf_batch_size_auto_and_bad_values(tiny_model):
    registry = load_registry()
    assert registry.create("samplers", "hf", tiny_model, engine="generate").batch_size == 32  # CPU (GPU: 256)
    # checked against the option's annotation before the model loads, then by the sampler itself
    for bad, message in (("big", "option batch_size='big' is not an integer or 'auto'"),
                         (0, "batch_size must be auto or a positive integer, got 0")):
        with pytest.raises(StarKitError, match=message) as err:
            registry.create("samplers", "hf", tiny_model, batch_size=bad)
        assert err.value.exit_code == 2


def test_print_config_refuses_the_hf_samplers_bad_values_before_a_model_loads(capsys):
    """check_options: the values no machine takes are refused by --print-config too (one line, exit 2)."""
    from star_kit.cli import main

    for opt, message in (("batch_size=-4", "sampler 'hf': batch_size must be auto or a positive integer, got -4"),
                         ("device=gpu", "sampler 'hf': device 'gpu' is not a device (auto, cpu, cuda or cuda:N)"),
                         ("batch_size=0", "batch_size must be auto or a positive integer, got 0")):
        assert main(["run", "--sampler", "hf", "--sampler-opt", opt, "--print-config"]) == 2, opt
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err, (opt, captured.err)
    assert main(["run", "--sampler", "hf", "--sampler-opt", "batch_size=4", "--print-config"]) == 0
    assert "batch_size: 4" in capsys.readouterr().out


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
    with pytest.raises(StarKitError, match="option engine='fast' is not 'auto' or 'prefix' or 'generate'"):
        registry.create("samplers", "hf", tiny_model, engine="fast")


# -- the prefix engine against generate on models whose texts vary (tiny_model repeats one token) -----------------
def _varied_model(root, tokenizer, model_type="llama", generation=None, edit=None, **config):
    """A 2-layer model of ``model_type`` with SmolLM2's tokenizer, initialised widely enough that its greedy texts
    depend on the prompt; ``generation``: fields of its generation_config.json; ``edit(model)`` changes weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.3,
                  tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **{**fields, **config}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)  # attention biases (zero at initialisation) that matter
        if edit is not None:
            edit(model)
    for key, value in (generation or {}).items():
        setattr(model.generation_config, key, value)
    model.save_pretrained(root)
    tokenizer.save_pretrained(root)
    return str(root)


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def _run(model, prompts, params, **options):
    sampler = load_registry().create("samplers", "hf", model, **{"dtype": "float32", **options})
    try:
        return sampler.generate(prompts, params)
    finally:
        sampler.close()


@pytest.mark.parametrize("model_type,config", [
    ("llama", dict(tie_word_embeddings=False, rope_parameters=dict(
        rope_type="llama3", rope_theta=10000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=64))),
    ("qwen2", dict(head_dim=12)),
], ids=["llama-gqa-untied-llama3rope", "qwen2-bias-headdim"])
def test_prefix_engine_matches_generate_on_varied_texts(tmp_path, tokenizer, prompts_and_params, model_type, config):
    """Grouped-query attention (2 kv heads), an untied LM head, llama3 rope scaling, qwen2's attention biases and
    an explicit head_dim: 7 prompts through 3 slots (refills, a compacted tail, the cache grown past 16)."""
    prompts, _ = prompts_and_params
    task = load_registry().create("tasks", "arithmetic")
    prompts = prompts + [task.prompt(e) for e in task.examples("train", 1, 0)]
    model = _varied_model(tmp_path, tokenizer, model_type, **config)
    params = GenerationParams(max_new_tokens=40)
    plain = _run(model, prompts, params, engine="generate", prefix_cache=False)
    assert len({c[0] for c in plain}) == len(prompts)  # the texts differ: the comparison means something
    assert _run(model, prompts, params, engine="prefix", batch_size=3) == plain
    # the new rows' suffixes run through the model one row per pass (prefill_tokens=1) instead of all at once
    sampler = load_registry().create("samplers", "hf", model, dtype="float32", engine="prefix")
    try:
        sampler._engine.prefill_tokens = 1
        assert sampler.generate(prompts, params) == plain
    finally:
        sampler.close()


def _cuda():
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("model_type,config", [("llama", dict(tie_word_embeddings=False)),
                                               ("qwen2", dict(head_dim=12))],
                         ids=["llama-gqa-untied", "qwen2-bias-headdim"])
def test_prefix_engine_on_cuda_matches_generate(tmp_path, tokenizer, prompts_and_params, model_type, config, dtype):
    """On a GPU the prefix attention is torch's memory-efficient CUDA kernel (its log-sum-exp padded), or matmuls
    where it has no kernel for the shapes (on an H200, torch 2.11: bfloat16 with a head_dim of 8 or 12). Greedy
    texts as generate's in float32; in bfloat16 these random models' texts part after a few tokens (other kernels
    round differently: on the real SmolLM2, 79 of 128 arithmetic texts identical, the same accuracy), so there the
    engine must decode every row to its budget without an error."""
    prompts, _ = prompts_and_params
    model = _varied_model(tmp_path, tokenizer, model_type, **config)
    params = GenerationParams(max_new_tokens=40)
    plain = _run(model, prompts, params, engine="generate", prefix_cache=False, device="cuda", dtype=dtype)
    assert len({c[0] for c in plain}) == len(prompts)
    got = _run(model, prompts, params, engine="prefix", batch_size=4, device="cuda", dtype=dtype)
    if dtype == "float32":
        assert got == plain
    else:
        assert len(got) == len(prompts) and all(len(c) == 1 and c[0] for c in got)


def test_prefix_engine_attention_without_a_fused_kernel_falls_back_to_matmuls(tmp_path, tokenizer, prompts_and_params,
                                                                              capsys):
    """Where the GPU's fused kernel has none for the shapes ("cutlassF: no kernel found to launch!", seen in
    bfloat16 with a head_dim of 8 or 12), the engine attends to the prefix with matmuls and a float32 softmax: the
    same texts. Here on CPU, where the CUDA kernel has no implementation at all (also a RuntimeError)."""
    import torch

    prompts, _ = prompts_and_params
    model = _varied_model(tmp_path, tokenizer, "qwen2", head_dim=12)
    params = GenerationParams(max_new_tokens=40)
    plain = _run(model, prompts, params, engine="generate", prefix_cache=False, device="cpu")
    sampler = load_registry().create("samplers", "hf", model, dtype="float32", engine="prefix", batch_size=4,
                                     device="cpu")
    try:
        engine = sampler._engine
        q, k, v = (torch.randn(1, 2, n, 12) for n in (9, 30, 30))
        want, want_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=0.3)
        got, got_lse = engine._math_attention(q, k, v, 0.3)
        assert torch.allclose(got, want, atol=1e-5) and torch.allclose(got_lse, want_lse, atol=1e-5)
        engine.prefix_kernel = "efficient"  # CUDA's kernel, which has no CPU implementation
        assert sampler.generate(prompts, params) == plain
        assert engine.prefix_kernel == "math"  # decided once, kept for later calls, said once
        assert sampler.generate(prompts, params) == plain
        said = [line for line in capsys.readouterr().err.splitlines() if "memory-efficient attention" in line]
        assert said == ["sampler 'hf': torch's memory-efficient attention has no kernel here (torch.float32, "
                        "head_dim 12): the prefix engine attends with matmuls"]
    finally:
        sampler.close()


def test_prefix_engine_float16_attention_does_not_overflow(tmp_path, tokenizer, prompts_and_params):
    """Large values under broad attention: the decode step's attention weights are normalised before their
    products with the values, which overflowed float16 (inf, NaN logits) when left unnormalised."""
    def edit(model):
        for layer in model.model.layers:
            attn = layer.self_attn
            attn.q_proj.weight.zero_(), attn.q_proj.bias.zero_()  # uniform attention over ~500 positions
            attn.v_proj.weight.zero_(), attn.v_proj.bias.fill_(1000.0)  # every value 1000
            attn.o_proj.weight.mul_(1e-3)

    prompts, _ = prompts_and_params
    model = _varied_model(tmp_path, tokenizer, attention_bias=True, edit=edit)
    params = GenerationParams(max_new_tokens=6)
    plain = _run(model, prompts[:3], params, engine="generate", dtype="float16")
    assert _run(model, prompts[:3], params, engine="prefix", dtype="float16") == plain


def test_prefix_engine_float16_scores_do_not_overflow(tmp_path, tokenizer, prompts_and_params):
    """Query-key products past float16's range (~7e5 here, the limit 65504): the rows' own attention multiplies
    them in float32, as the prefix's kernel does."""
    def edit(model):
        for layer in model.model.layers:
            layer.self_attn.q_proj.bias.fill_(300.0), layer.self_attn.k_proj.bias.fill_(300.0)
            layer.self_attn.o_proj.weight.mul_(1e-2)

    prompts, _ = prompts_and_params
    model = _varied_model(tmp_path, tokenizer, attention_bias=True, edit=edit)
    params = GenerationParams(max_new_tokens=6)
    plain = _run(model, prompts[:3], params, engine="generate", dtype="float16")
    assert all(c[0] for c in plain)
    assert _run(model, prompts[:3], params, engine="prefix", dtype="float16") == plain


def test_generate_ignores_the_checkpoints_generation_defaults(tmp_path, tokenizer, prompts_and_params):
    """Completions follow GenerationParams alone on both engines: a checkpoint's repetition_penalty or
    no_repeat_ngram_size are not applied by generate, nor is a top-k (the model's, or transformers' default 50)."""
    prompts, _ = prompts_and_params
    model = _varied_model(tmp_path, tokenizer, generation=dict(
        do_sample=True, top_k=20, repetition_penalty=1.5, no_repeat_ngram_size=2))
    params = GenerationParams(max_new_tokens=24)
    assert _run(model, prompts, params, engine="generate") == _run(model, prompts, params, engine="prefix")
    # near-uniform sampling over 49k tokens: 80 draws give ~80 different tokens, at most 20 (or 50) under a top-k
    hot = GenerationParams(max_new_tokens=1, temperature=1000.0, n=80, seed=1)
    for engine in ("generate", "prefix"):
        assert len(set(_run(model, prompts[:1], hot, engine=engine)[0])) > 60, engine


def test_progress_counts_each_prompt_once(tiny_model, prompts_and_params):
    prompts, _ = prompts_and_params
    registry = load_registry()
    sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", engine="generate", batch_size=3)
    seen = []
    sampler.generate(prompts[:3], GenerationParams(max_new_tokens=2, n=2), advance=seen.append)
    assert sum(seen) == 3  # batches of 3 rows of 2 samples each: 1.5 prompts a batch
    sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", engine="prefix")
    seen = []
    assert sampler.generate(prompts, GenerationParams(max_new_tokens=0), advance=seen.append) == [[""]] * 6
    assert sum(seen) == len(prompts)


def test_prefix_engine_stop_detection_counts_bytes(tiny_model, tokenizer):
    """A stop string of multi-byte characters spans more tokens than characters (答案: 2 characters, 6 bytes,
    5 byte-level tokens); the row stops at the token that completes it."""
    tokens = tokenizer(" so the 答案 is 3", add_special_tokens=False)["input_ids"]
    through = next(k for k in range(len(tokens)) if "答案" in tokenizer.decode(tokens[: k + 1]))
    stopped = []

    class Scripted:  # an engine that emits ``tokens`` until the sampler's is_done says stop
        last_slots = 1

        def generate(self, rows, prefix_len, max_new_tokens, is_done, eos, *args):
            out = []
            for t in tokens:
                out.append(t)
                if is_done(out):
                    break
            stopped.append(len(out) - 1)
            return [out for _ in rows]

    sampler = load_registry().create("samplers", "hf", tiny_model, dtype="float32", engine="prefix")
    sampler._engine = Scripted()
    assert sampler.generate(["Q: 1 + 2 = ?\nA:"], GenerationParams(stop=("答案",))) == [[" so the "]]
    assert stopped == [through]


def test_on_cuda_static_cache_is_off_by_default_and_the_prefix_engine_is_offered(monkeypatch):
    from star_kit_plugins.hf_sampler import HFSampler

    import torch

    monkeypatch.setattr(HFSampler, "load", lambda self, model: None)  # no GPU needed: the options alone
    if not torch.cuda.is_available():  # as a machine with one GPU says it
        with pytest.raises(StarKitError, match=r"^sampler 'hf': device 'cuda': torch sees no CUDA devices on this "
                                               r"machine$"):
            HFSampler("m", device="cuda", dtype="float32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(StarKitError, match=r"device 'cuda:1': torch sees 1 CUDA device on this machine$"):
        HFSampler("m", device="cuda:1", dtype="float32")
    with pytest.raises(StarKitError, match=r"device 'gpu' is not a device \(auto, cpu, cuda or cuda:N\)"):
        HFSampler("m", device="gpu", dtype="float32")
    sampler = HFSampler("m", device="cuda", dtype="float32")  # generate on a GPU, measured faster uncompiled
    assert sampler.static_cache is False and sampler.prefix_cache is True
    assert HFSampler("m", device="cuda", dtype="float32", static_cache=True).static_cache is True
    assert HFSampler("m", device="cuda", dtype="float32", engine="prefix").engine_option == "prefix"
    # another accelerator (Apple's mps): generate, as before; the engine's kernels are CPU's and CUDA's
    assert HFSampler("m", device="mps", dtype="float32")._make_engine(None) is None
    with pytest.raises(StarKitError, match=r"^sampler 'hf': engine=prefix runs on cpu or cuda, not on 'mps' \(use "
                                           r"engine=generate, the default there\)$"):
        HFSampler("m", device="mps", dtype="float32", engine="prefix")._make_engine(None)


def test_prefix_engine_out_of_memory_halves_the_slots_and_counts_each_prompt_once(tiny_model, prompts_and_params,
                                                                                  capsys):
    import torch

    prompts, params = prompts_and_params
    registry = load_registry()
    expected = registry.create("samplers", "hf", tiny_model, dtype="float32", engine="prefix",
                               batch_size=2).generate(prompts, params)
    sampler = registry.create("samplers", "hf", tiny_model, dtype="float32", engine="prefix", batch_size=4)
    real, calls = sampler._engine._decode_step, []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 5:  # after some rows have finished
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(*args)

    sampler._engine._decode_step = flaky
    seen = []
    assert sampler.generate(prompts, params, advance=seen.append) == expected
    assert sum(seen) == len(prompts) and sampler.batch_size == sampler._engine.slots == 2
    assert capsys.readouterr().err.count("out of memory; batch size halved to 2") == 1


def test_prefix_groups_split_prompts_by_their_shared_prefix():
    from star_kit_plugins.hf_sampler import prefix_groups

    a, b = list(range(100, 140)), list(range(500, 540))
    rows = [a + [1], b + [2], a + [3], [7, 8], b + [4], [9, 1, 2], a + [5]]
    assert prefix_groups(rows) == [[0, 2, 6], [1, 4], [3, 5]]  # each kind with its prefix, then the rest
    assert prefix_groups([a + [1], a + [2], [5]]) == [[0, 1], [2]]
    few = [a + [1], a + [2]] + [[i, i] for i in range(50)]  # 2 of 52 share a prefix: too few to split off ...
    assert prefix_groups(few) == [list(range(52))]
    assert prefix_groups([a + [1], a + [2]]) == [[0, 1]]  # ... one shared prefix: one group
    assert prefix_groups([[1], [2]]) == [[0, 1]] and prefix_groups([[1]]) == [[0]]


@pytest.mark.parametrize("engine", ["prefix", "generate"])
def test_prompts_of_two_kinds_in_one_call_each_keep_their_prefix_cache(tiny_model, prompts_and_params, engine,
                                                                          monkeypatch):
    """M(n)'s evaluation prompts (the question alone) riding along with few-shot sampling prompts: the same texts as
    two calls, and the few-shot ones still decoded from one cached prefix."""
    from star_kit_plugins import hf_sampler

    prompts, params = prompts_and_params
    task = load_registry().create("tasks", "arithmetic")
    alone = [task.prompt(e, fewshot=False) for e in task.examples("eval", 4, 1)]
    sampler = load_registry().create("samplers", "hf", tiny_model, dtype="float32", engine=engine, batch_size=4)
    try:
        apart = sampler.generate(prompts, params) + sampler.generate(alone, params)
        seen = []
        real = hf_sampler.shared_prefix_length
        monkeypatch.setattr(hf_sampler, "shared_prefix_length", lambda ids, *a: seen.append(real(ids, *a)) or seen[-1])
        mixed = alone[:2] + prompts + alone[2:]
        together = sampler.generate(mixed, params)
    finally:
        sampler.close()
    assert together == apart[len(prompts):][:2] + apart[: len(prompts)] + apart[len(prompts):][2:]
    assert max(seen) > 100  # the few-shot group's prefix (~400 tokens) was found and cached
