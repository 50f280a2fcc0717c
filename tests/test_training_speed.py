"""The trainer's speed-ups change nothing that is learned.

* Padding-free batches: transformers builds a block-diagonal causal mask from the position ids for the attention
  used on CPU (sdpa), so each packed example's loss equals its loss alone, and the negative control (the same row
  read as one sequence) does not.
* The compact LM head gives TRL's fused head's log-probabilities, entropy, top-1, loss and gradients.
* The packed attention gives sdpa-with-the-block-mask's logits, loss and gradients, and hands every other batch to
  sdpa.
* The trainer with its defaults (padding-free, compact head, no activation checkpointing on CPU) follows the loss
  curve of the trainer as it was (padded, TRL's head, checkpointing), step by step, in fp32.

All on a tiny Llama built from a config: seconds.
"""

from __future__ import annotations

import copy

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from star_kit.errors import StarKitError  # noqa: E402
from star_kit.records import TrainExample  # noqa: E402
from star_kit.store import read_jsonl  # noqa: E402

# The trainer before padding-free batches and the compact head (as benchmarks/train_throughput.py's "before").
BEFORE = {"padding_free": False, "max_length": 1024, "compact_lm_head": False, "activation_checkpointing": True}


def _tiny(vocab=97, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, attn_implementation="sdpa", **config)
    return LlamaForCausalLM(cfg).eval()


def _examples(lengths=(5, 11, 3, 8), vocab=97):
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, vocab, (n,), generator=g) for n in lengths]


def _loss_per_example(logits, ids):
    """Mean next-token cross-entropy of one sequence from its logits (positions 0..n-2 predict 1..n-1)."""
    return torch.nn.functional.cross_entropy(logits[:-1].float(), ids[1:])


def test_padding_free_batches_keep_each_examples_loss_on_sdpa():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = _tiny()
    assert model.config._attn_implementation == "sdpa"
    examples = _examples()
    with torch.no_grad():
        alone = [_loss_per_example(model(input_ids=x[None]).logits[0], x) for x in examples]
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
            [{"input_ids": x.tolist()} for x in examples])
        assert batch["input_ids"].shape == (1, sum(len(x) for x in examples)) and "attention_mask" not in batch
        # use_cache=False, as in training (TRL sets it): with a cache, transformers looks for no packed rows
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        # the control: the same packed row without its position ids is one long sequence
        one_sequence = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    bounds = batch["cu_seq_lens_q"].tolist()
    packed = [_loss_per_example(logits[a:b], x) for (a, b), x in zip(zip(bounds, bounds[1:]), examples)]
    control = [_loss_per_example(one_sequence[a:b], x) for (a, b), x in zip(zip(bounds, bounds[1:]), examples)]
    for a, p in zip(alone, packed):
        assert p.item() == pytest.approx(a.item(), abs=1e-5)
    assert any(abs(c.item() - a.item()) > 1e-3 for a, c in zip(alone[1:], control[1:]))


def _fused_pair(**config):
    """Two copies of a tiny model: TRL's fused LM head, and the same with the compact head over it."""
    from trl.trainer.utils import add_fused_lm_head

    from star_kit_plugins.sft_lm_head import use_compact_lm_head

    trl_model = _tiny(**config).train()
    add_fused_lm_head(trl_model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer does
    compact = copy.deepcopy(trl_model)
    return trl_model, compact, use_compact_lm_head(compact)


@pytest.mark.parametrize("padding_free", [False, True])
def test_the_compact_lm_head_equals_trls_fused_head(padding_free):
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trl_model, compact, used = _fused_pair()
    assert used
    rows = []
    for i, x in enumerate(_examples()):  # a prompt of 2 tokens (label -100), the rest is the completion
        rows.append({"input_ids": x.tolist(), "labels": [-100, -100] + x[2:].tolist()})
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)(rows)
    outs = {}
    for name, model in (("trl", trl_model), ("compact", compact)):
        model.zero_grad()
        out = model(**batch, use_cache=False, fused_lm_head=True)
        out.log_probs.sum().backward()
        outs[name] = out, {n: p.grad.clone() for n, p in model.named_parameters()}
    (a, grads_a), (b, grads_b) = outs["trl"], outs["compact"]
    assert torch.equal(a.label_mask, b.label_mask)
    assert torch.allclose(a.log_probs, b.log_probs, atol=1e-5)
    assert torch.allclose(a.entropy, b.entropy, atol=1e-4)
    assert torch.equal(a.is_top1, b.is_top1)
    assert a.loss.item() == pytest.approx(b.loss.item(), abs=1e-5)
    for name, grad in grads_a.items():
        assert torch.allclose(grad, grads_b[name], atol=1e-5), name
    # num_items_in_batch divides the summed loss, as TRL's head does
    n = int(a.label_mask.sum()) * 2
    assert compact(**batch, fused_lm_head=True, num_items_in_batch=n).loss.item() == pytest.approx(
        trl_model(**batch, fused_lm_head=True, num_items_in_batch=n).loss.item(), abs=1e-5)
    # without fused_lm_head the forward is the model's own (generate, evaluation): logits
    plain = compact(input_ids=batch["input_ids"])
    assert plain.logits.shape[-1] == compact.config.vocab_size


def test_the_compact_heads_blockwise_softmax_in_bf16_matches_float64(monkeypatch):
    """The vocabulary-wide part in blocks of rows (a remainder block too), on bf16 logits as under autocast: fp32
    log-probabilities and entropy, the same top-1, gradients within bf16's rounding -- and a confident target's own
    gradient, g (1 - p_t), to fp32 precision (from the bf16 probability it would be off by up to a quarter here)."""
    from star_kit_plugins import sft_lm_head

    monkeypatch.setattr(sft_lm_head, "ROWS", 8)
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(37, 50, generator=g, dtype=torch.float64) * 2).to(torch.bfloat16)
    targets = torch.randint(0, 50, (37,), generator=g)
    logits[0, targets[0]] = 9.0  # p_t ~ 0.99
    grad_in = torch.rand(37, generator=g, dtype=torch.float64) + 0.5
    x = logits.detach().clone().requires_grad_()
    token, entropy, is_top1 = sft_lm_head._function().apply(x, targets)
    token.backward(grad_in.float())
    assert token.dtype == torch.float32 and x.grad.dtype == torch.bfloat16

    ref = torch.log_softmax(logits.double(), -1)
    p = ref.exp()
    assert torch.allclose(token.double(), ref.gather(-1, targets[:, None]).squeeze(-1), atol=1e-5)
    assert torch.allclose(entropy.double(), -(p * ref).sum(-1), atol=1e-4)
    assert torch.equal(is_top1, ref.argmax(-1) == targets)
    want = grad_in[:, None] * (torch.nn.functional.one_hot(targets, 50).double() - p)
    # p, g and their product each rounded to bf16: within three roundings (2^-8 each)
    assert torch.allclose(x.grad.double(), want, rtol=3 * 2 ** -8, atol=1e-7)
    with pytest.raises(RuntimeError):  # its backward is not itself differentiable: a second derivative fails
        y = logits.detach().clone().requires_grad_()
        (g2,) = torch.autograd.grad(sft_lm_head._function().apply(y, targets)[0].sum(), y, create_graph=True)
        g2.float().sum().backward()
    own = x.grad[0, targets[0]].double()
    assert 1 - p[0, targets[0]] < 0.02 and own == pytest.approx(want[0, targets[0]].item(), rel=2 ** -7)


def test_the_compact_lm_head_leaves_other_models_alone():
    from star_kit_plugins.sft_lm_head import use_compact_lm_head

    assert not use_compact_lm_head(_tiny())  # not patched by TRL: nothing to replace
    _, _, used = _fused_pair(logit_scale=2.0)  # logits transformed by the config: TRL's head applies it
    assert not used


def _packed_pair(**config):
    """Two copies of a tiny model with grouped-query heads: sdpa with transformers' mask, and the packed attention."""
    from star_kit_plugins.sft_attention import use_packed_attention

    sdpa = _tiny(**config).train()
    packed = copy.deepcopy(sdpa)
    assert use_packed_attention(packed)
    assert packed.config._attn_implementation != "sdpa" and sdpa.config._attn_implementation == "sdpa"
    return sdpa, packed


def _forward_backward(model, batch, autocast=False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(**batch, use_cache=False)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("kept", [True, False])
def test_the_packed_attention_equals_sdpa_with_the_block_mask(autocast, kept, monkeypatch):
    """Logits, loss and every gradient, for a packed row of examples of 1 to 11 tokens; bf16 within its rounding.
    With the probabilities kept for the backward, and recomputed there (a row past MAX_KEPT)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from star_kit_plugins import sft_attention

    if not kept:
        monkeypatch.setattr(sft_attention, "MAX_KEPT", 0)
    sdpa, packed = _packed_pair()
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
        [{"input_ids": x.tolist()} for x in _examples((5, 11, 1, 3, 8))])
    assert "cu_seq_lens_q" in batch
    (a, grads_a), (b, grads_b) = _forward_backward(sdpa, batch, autocast), _forward_backward(packed, batch, autocast)
    tol = 3e-2 if autocast else 1e-5
    assert torch.allclose(a.logits.float(), b.logits.float(), atol=tol)
    assert a.loss.item() == pytest.approx(b.loss.item(), abs=tol / 10)
    for name, grad in grads_a.items():
        scale = grad.abs().max().item() or 1.0
        assert (grad - grads_b[name]).abs().max().item() <= tol * scale, name


def test_the_packed_attention_keeps_each_example_to_itself():
    """Each packed example's loss equals its loss alone; the same row without position ids (one sequence) differs."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    _, model = _packed_pair()
    model.eval()
    examples = _examples()
    with torch.no_grad():
        alone = [_loss_per_example(model(input_ids=x[None]).logits[0], x) for x in examples]
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(
            [{"input_ids": x.tolist()} for x in examples])
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        one_sequence = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    bounds = batch["cu_seq_lens_q"].tolist()
    spans = list(zip(bounds, bounds[1:]))
    for (lo, hi), x, a in zip(spans, examples, alone):
        assert _loss_per_example(logits[lo:hi], x).item() == pytest.approx(a.item(), abs=1e-5)
    assert any(abs(_loss_per_example(one_sequence[lo:hi], x).item() - a.item()) > 1e-3
               for (lo, hi), x, a in zip(spans[1:], examples[1:], alone[1:]))


def test_the_packed_attention_hands_other_batches_to_sdpa(monkeypatch):
    """Padded batches (an attention mask, no boundaries) and rows too big for the padded layout: sdpa, same result."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from star_kit_plugins import sft_attention

    sdpa, packed = _packed_pair()
    rows = [{"input_ids": x.tolist()} for x in _examples()]
    padded = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=False)(rows)
    assert "cu_seq_lens_q" not in padded and "attention_mask" in padded
    monkeypatch.setattr(sft_attention, "MAX_SCORES", 8)
    row = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(rows)
    called = []
    monkeypatch.setattr(sft_attention, "_function", lambda: called.append(1))  # the packed path would call it
    for batch in (padded, row):
        (a, grads_a), (b, grads_b) = _forward_backward(sdpa, batch), _forward_backward(packed, batch)
        assert torch.allclose(a.logits, b.logits, atol=1e-6)
        assert all(torch.allclose(g, grads_b[n], atol=1e-6) for n, g in grads_a.items())
    assert not called


def test_the_packed_attention_leaves_other_models_alone():
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    from star_kit_plugins.sft_attention import use_packed_attention

    small = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, attn_implementation="sdpa")
    assert not use_packed_attention(MistralForCausalLM(MistralConfig(sliding_window=4, **small)))
    assert use_packed_attention(MistralForCausalLM(MistralConfig(sliding_window=None, **small)))
    assert use_packed_attention(Qwen2ForCausalLM(Qwen2Config(use_sliding_window=False, **small)))
    eager = {**small, "attn_implementation": "eager"}  # the user chose another attention: kept
    assert not use_packed_attention(MistralForCausalLM(MistralConfig(sliding_window=None, **eager)))


def _pairs():
    """Arithmetic pairs of 1-4 digits: mixed lengths, so padded batches really pad."""
    import random

    rng = random.Random(0)
    out = []
    for i in range(24):
        d = 1 + i % 4
        a, b = rng.randint(0, 10**d - 1), rng.randint(0, 10**d - 1)
        out.append(TrainExample(f"e{i}", f"Q: {a} + {b} = ?\nA:", f" {a} + {b} = {a + b}. The answer is {a + b}.\n\n",
                                "sampled"))
    return out


@pytest.fixture()
def sft_configs(monkeypatch):
    """Every trl.SFTConfig the trainer trains with, in order (their output_dir is the checkpoint's scratch
    ``.work`` folder; the option check's config, built when the trainer is, is not recorded)."""
    import trl

    configs = []

    class Recorded(trl.SFTConfig):
        def __post_init__(self):
            super().__post_init__()
            if str(self.output_dir).endswith(".work"):
                configs.append(self)

    monkeypatch.setattr(trl, "SFTConfig", Recorded)
    return configs


def test_the_trainers_defaults_follow_the_loss_curve_of_the_trainer_before(tiny_model, tmp_path, capsys, sft_configs):
    """fp32, so any difference is the speed-up's, not bf16 rounding: every logged loss, and the trained weights."""
    from safetensors.torch import load_file

    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    runs = {}
    for name, options in (("before", BEFORE), ("after", {})):
        out = tmp_path / name
        TRLSFTTrainer(bf16=False, learning_rate=1e-3, per_device_train_batch_size=6, warmup_steps=0,
                      logging_steps=1, **options).train(tiny_model, _pairs(), 8, out, seed=0)
        runs[name] = [r["loss"] for r in read_jsonl(out / "train_log.jsonl")], load_file(out / "model.safetensors")
    before, after = sft_configs
    assert (before.padding_free, before.activation_checkpointing, before.max_length) == (False, True, 1024)
    assert (after.padding_free, after.activation_checkpointing, after.max_length) == (True, False, None)
    err = capsys.readouterr().err
    assert "8 optimizer steps; padding-free batches; compact LM head; packed attention" in err
    (loss_a, weights_a), (loss_b, weights_b) = runs["before"], runs["after"]
    assert len(loss_a) == len(loss_b) == 8
    assert loss_b == pytest.approx(loss_a, abs=2e-4)
    assert loss_a[-1] < loss_a[0]  # it learned something, so equal curves mean something
    for key, tensor in weights_a.items():  # trained in fp32 from an fp32 model: saved in fp32
        assert tensor.dtype == torch.float32
        assert torch.allclose(tensor, weights_b[key], atol=1e-3), key


def test_padding_free_batches_are_used_only_where_the_model_keeps_packed_examples_apart(tiny_model, tmp_path, capsys,
                                                                                         sft_configs, monkeypatch):
    """Measured on the loaded model (two packed sequences vs the second alone): Llama and GPT-2 keep them apart
    (GPT-2's dropout makes packed and padded losses differ in training, not its attention); a model whose
    attention ignores the position ids would not, and then trains on padded batches, or refuses an explicit
    padding_free=true."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from star_kit_plugins import trl_trainer

    assert trl_trainer.packing_is_exact(_tiny())
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    assert trl_trainer.packing_is_exact(gpt2) and gpt2.training  # measured in eval mode, the mode restored
    blind = _tiny()
    forward = blind.forward
    blind.forward = lambda *a, position_ids=None, **kw: forward(*a, **kw)  # attends across the whole row
    assert not trl_trainer.packing_is_exact(blind)

    monkeypatch.setattr(trl_trainer, "packing_is_exact", lambda model: False)
    trl_trainer.TRLSFTTrainer(bf16=False).train(tiny_model, _pairs()[:4], 1, tmp_path / "a")
    assert sft_configs[-1].padding_free is False
    assert "padded batches for LlamaForCausalLM: its attention does not keep packed examples apart" in \
        capsys.readouterr().err
    with pytest.raises(StarKitError, match="padding_free=true, but LlamaForCausalLM lets packed examples attend"):
        trl_trainer.TRLSFTTrainer(bf16=False, padding_free=True).train(tiny_model, _pairs()[:4], 1, tmp_path / "b")


def test_a_checkpoint_keeps_the_base_models_16_bit_dtype_only_after_mixed_precision(tmp_path):
    from star_kit_plugins.trl_trainer import checkpoint_dtype

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        path = tmp_path / str(dtype)
        _tiny().to(dtype).save_pretrained(path)
        assert checkpoint_dtype(str(path), mixed_precision=True) == dtype  # the embedded bf16 model stays bf16
        assert checkpoint_dtype(str(path), mixed_precision=False) == torch.float32  # trained in fp32: fp32


def test_the_users_checkpointing_and_truncation_choices_are_kept(tiny_model, tmp_path, sft_configs):
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    # TRL's old name for it: not overridden by the CPU default
    TRLSFTTrainer(gradient_checkpointing=True, bf16=False).train(tiny_model, _pairs()[:4], 1, tmp_path / "a")
    assert sft_configs[-1].activation_checkpointing is True
    # max_length truncates padded batches only: padding_free turns off with it
    trainer = TRLSFTTrainer(max_length=64)
    assert trainer.sft_options["padding_free"] is False and trainer.sft_options["max_length"] == 64
    assert TRLSFTTrainer(max_length=64, packing=True).sft_options["padding_free"] is True  # TRL packs: its rules
    with pytest.raises(StarKitError, match="padding_free=false with max_length"):
        TRLSFTTrainer(max_length=64, padding_free=True)
    with pytest.raises(StarKitError, match="compact_lm_head must be auto, true or false"):
        TRLSFTTrainer(compact_lm_head="yes")
    with pytest.raises(StarKitError, match="packed_attention must be auto, true or false"):
        TRLSFTTrainer(packed_attention="yes")
