"""Training throughput: the `trl-sft` trainer vs a plain torch loop on the same data (tokens/s).

The data are arithmetic SFT pairs (question prompt, place-value rationale completion), the shape STaR trains on.
The plain loop: AdamW, fp32, batches padded to the longest, loss on the completion tokens only; the same batch
size, learning rate and number of steps. Both start from the same base model.

    python benchmarks/train_throughput.py [--quick] [--steps 20] [--batch-size 8] [--model smollm2-135m] [--bf16]

``--bf16`` also trains with the trainer's ``bf16=true`` (autocast; on CPU it needs AVX512-BF16 or AMX to pay) and
reports ``trl_bf16_tok_s``.

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def pairs(n: int):
    from star_kit.records import TrainExample
    from star_kit.registry import load_registry
    from star_kit_plugins.arithmetic import place_value_rationale

    task = load_registry().create("tasks", "arithmetic")
    out = []
    for e in task.examples("train", n, 0):
        rationale = place_value_rationale(e.fields["a"], e.fields["b"])
        out.append(TrainExample(e.id, task.prompt(e, fewshot=False), task.target(rationale, e.answer), "sampled"))
    return out


def plain_loop(path, data, steps, batch_size, lr):
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
            c = tok(ex.completion, add_special_tokens=False)["input_ids"]
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
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bf16", action="store_true", help="also measure the trainer with bf16=true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch_size = 2, 2
    from star_kit.models import resolve_model
    from star_kit.registry import load_registry

    path = resolve_model(args.model)
    data = pairs(max(64, args.steps * args.batch_size))
    registry = load_registry()

    def trl(**options):
        trainer = registry.create("trainers", "trl-sft", per_device_train_batch_size=args.batch_size,
                                  warmup_steps=0, **options)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            trainer.train(path, data[: args.steps * args.batch_size], args.steps, os.path.join(tmp, "ckpt"))
            seconds = time.perf_counter() - t0
            log = [json.loads(line) for line in open(os.path.join(tmp, "ckpt", "train_log.jsonl"))]
        tokens = int(log[-1].get("num_tokens", 0)) if log else 0
        return tokens, seconds, trainer.sft_options["learning_rate"]

    trl_tokens, trl_s, lr = trl()
    plain_tokens, plain_s = plain_loop(path, data, args.steps, args.batch_size, lr)
    result = {
        "model": args.model, "steps": args.steps, "batch_size": args.batch_size,
        "plain_s": round(plain_s, 2), "plain_tok_s": round(plain_tokens / plain_s, 1),
        "trl_s_including_load_and_save": round(trl_s, 2),
        "trl_tok_s": round(trl_tokens / trl_s, 1) if trl_tokens else None,
        "trl_vs_plain": round((trl_tokens / trl_s) / (plain_tokens / plain_s), 2) if trl_tokens else None,
    }
    if args.bf16:
        tokens, seconds, _ = trl(bf16=True)
        result["trl_bf16_s_including_load_and_save"] = round(seconds, 2)
        result["trl_bf16_tok_s"] = round(tokens / seconds, 1) if tokens else None
        result["bf16_vs_fp32"] = round(trl_s / seconds, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
