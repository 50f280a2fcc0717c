"""Training throughput of the `trl-sft` trainer on what the default job trains on: before vs after, in one run.

The data: the default job's training sets -- arithmetic questions of 1-5 digits (mixed lengths), the question alone
as the prompt and a place-value rationale with its answer as the completion, made by the loop's own
``build_training_set`` from gold rationales (``--examples`` questions, the default job's 128). The options: the
trainer's (batch 8, lr 5e-5, bf16 auto, completion-only loss), every variant on the same data, seed and steps.

Variants, alternated in the same process (before, after, after, before, ... so drift hits both alike):

* ``before``: the trainer as it was -- padded batches truncated at 1024 tokens, TRL's fused LM head, TRL's
  activation checkpointing;
* ``after``: the trainer's defaults now;
* ``--variant NAME=JSON`` adds more (trainer options, e.g. ``fp32='{"bf16": false}'``).

Per variant: real (non-padding) and padded tokens/s over steps 2..N (step 1 warms up), seconds including loading
and saving the model, the loss at every step, and model-FLOPs utilization: real tokens/s x FLOPs per token / the
matmul peak of the dtype it computes in, measured in this process (``peak.py``). FLOPs per token = 6 x the
parameters that do a matmul per token: every parameter except an untied input embedding (a lookup); a tied
embedding counts once, as the LM head. Attention-score FLOPs are left out (about 1% at these lengths).
``--plain`` adds a plain torch loop (fp32, padded, AdamW) as the naive reference.

    python benchmarks/train_throughput.py [--quick] [--steps 20] [--rounds 2] [--model smollm2-135m] [--plain]

The last line printed is one JSON object: per variant ``real_tok_s``, ``padded_tok_s``, ``step_s``, ``mfu``,
``loss``; ``after_vs_before`` (real tokens/s), ``loss_max_abs_diff`` (after vs before, per step) and
``loss_noise`` (the same variant in two rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# The trainer as it was before padding-free batches, the compact LM head and checkpointing off on CPU.
BEFORE = {"padding_free": False, "max_length": 1024, "compact_lm_head": False, "activation_checkpointing": True}


def training_set(n: int, digits: str, seed: int = 0):
    """What the default job trains on: ``build_training_set`` over gold place-value rationales for n questions."""
    from star_kit.loop import build_training_set
    from star_kit.records import Sample
    from star_kit.registry import load_registry

    task = load_registry().create("tasks", "arithmetic", digits=digits)
    examples = task.examples("train", n, seed)
    kept = []
    for e in examples:
        completion = task.target(task.gold_rationale(e.fields["a"], e.fields["b"]), e.answer)
        kept.append(Sample(e.id, e.question, completion, e.answer, e.answer, True))
    train, _ = build_training_set(task, examples, kept, [])
    return train


def flops_per_token(path: str) -> int:
    """6 x the parameters that do a matmul for each token (an untied input embedding is a lookup)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    tied = output is not None and output.weight is embedding
    return 6 * (params - (0 if tied else embedding.numel()))


class TokenCounter:
    """Counts the token positions the model embeds (padding included), with the time of each forward."""

    def __init__(self, vocab_size: int) -> None:
        import torch

        self.calls: list[tuple[float, int]] = []
        self.vocab_size = vocab_size

        def hook(module, args):
            if isinstance(module, torch.nn.Embedding) and module.num_embeddings == vocab_size and args:
                self.calls.append((time.perf_counter(), int(args[0].numel())))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)

    def since(self, t: float) -> int:
        return sum(n for when, n in self.calls if when > t)


def run_variant(registry, path, data, steps, batch_size, options, counter):
    """Train once; per-step times from the trainer's progress callback, losses and real tokens from its log."""
    trainer = registry.create("trainers", "trl-sft", per_device_train_batch_size=batch_size, warmup_steps=0,
                              logging_steps=1, **options)
    marks: list[float] = []
    counter.calls.clear()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer.train(path, data, steps, os.path.join(tmp, "ckpt"), advance=lambda k: marks.append(time.perf_counter()))
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in open(os.path.join(tmp, "ckpt", "train_log.jsonl"))]
    tokens = [int(h["num_tokens"]) for h in log]
    first = marks[0] if steps > 1 else t0  # steps 2..N: step 1 warms up (one step: the whole fit)
    real = tokens[-1] - (tokens[0] if steps > 1 else 0)
    return {"seconds": marks[-1] - first, "real": real, "padded": counter.since(first), "wall": wall,
            "loss": [round(h["loss"], 4) for h in log], "entropy": [round(h.get("entropy", 0.0), 4) for h in log]}


def plain_loop(path, data, steps, batch_size, lr):
    """The naive reference: fp32, batches padded to the longest, loss on the completion tokens, AdamW."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    tokens = 0
    t0 = time.perf_counter()
    for step in range(steps):
        batch = [data[(step * batch_size + i) % len(data)] for i in range(batch_size)]
        ids, labels = [], []
        for ex in batch:
            p = tok(ex.prompt, add_special_tokens=False)["input_ids"]
            c = tok(ex.completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            ids.append(p + c)
            labels.append([-100] * len(p) + c)
        width = max(map(len, ids))
        input_ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in ids])
        label_t = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
        loss = model(input_ids=input_ids, attention_mask=mask, labels=label_t).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += int(mask.sum())
    return tokens, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="each variant trains this many times, alternated")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--examples", type=int, default=128, help="questions in the training set")
    parser.add_argument("--digits", default="1-5")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=JSON",
                        help="another variant: trainer options as a JSON object")
    parser.add_argument("--plain", action="store_true", help="also time a plain torch loop (fp32, padded)")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch_size, args.rounds, args.examples = 3, 2, 1, 8
    from peak import peaks

    from star_kit.models import resolve_model
    from star_kit.registry import load_registry
    from star_kit_plugins.trl_trainer import bf16_supported

    path = resolve_model(args.model)
    data = training_set(args.examples, args.digits)
    registry = load_registry()
    variants = {"before": BEFORE, "after": {}}
    for spec in args.variant:
        name, _, options = spec.partition("=")
        variants[name] = json.loads(options)
    peak = peaks()
    per_token = flops_per_token(path)
    from transformers import AutoConfig

    counter = TokenCounter(AutoConfig.from_pretrained(path).get_text_config().vocab_size)
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
            runs[name].append(run_variant(registry, path, data, args.steps, args.batch_size, variants[name], counter))

    result = {"model": args.model, "steps": args.steps, "rounds": args.rounds, "batch_size": args.batch_size,
              "examples": len(data), "digits": args.digits, "flops_per_token": per_token, "peak_gflops": peak,
              "variants": {}}
    for name, rs in runs.items():
        seconds = sum(x["seconds"] for x in rs)
        real, padded = sum(x["real"] for x in rs), sum(x["padded"] for x in rs)
        bf16 = variants[name].get("bf16", "auto")
        dtype_peak = peak["bf16_gflops"] if (bf16_supported(False) if bf16 == "auto" else bf16) else peak["fp32_gflops"]
        tok_s = real / seconds if seconds else 0.0
        result["variants"][name] = {
            "options": variants[name], "real_tok_s": round(tok_s, 1), "padded_tok_s": round(padded / seconds, 1)
            if seconds else 0.0, "padding_share": round(1 - real / padded, 3) if padded else None,
            "step_s": round(seconds / (len(rs) * max(args.steps - 1, 1)), 3),
            "wall_s_including_load_and_save": round(sum(x["wall"] for x in rs) / len(rs), 2),
            "mfu": round(tok_s * per_token / (dtype_peak * 1e9), 4), "loss": rs[0]["loss"], "entropy": rs[0]["entropy"],
            "round_tok_s": [round(x["real"] / x["seconds"], 1) if x["seconds"] else 0.0 for x in rs],
        }
    before, after = result["variants"]["before"], result["variants"]["after"]
    result["after_vs_before"] = round(after["real_tok_s"] / before["real_tok_s"], 2) if before["real_tok_s"] else None
    result["wall_after_vs_before"] = round(before["wall_s_including_load_and_save"]
                                           / after["wall_s_including_load_and_save"], 2)
    result["loss_max_abs_diff"] = round(max(abs(a - b) for a, b in zip(after["loss"], before["loss"])), 4)
    result["entropy_max_abs_diff"] = round(max(abs(a - b) for a, b in zip(after["entropy"], before["entropy"])), 4)
    noise = [abs(a - b) for rs in runs.values() if len(rs) > 1 for a, b in zip(rs[0]["loss"], rs[1]["loss"])]
    result["loss_noise"] = round(max(noise), 4) if noise else None
    if args.plain:
        tokens, seconds = plain_loop(path, data, args.steps, args.batch_size, 5e-5)
        result["plain_tok_s"] = round(tokens / seconds, 1)
        result["after_vs_plain"] = round(after["real_tok_s"] / result["plain_tok_s"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
