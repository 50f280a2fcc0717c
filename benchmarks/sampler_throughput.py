"""Sampler throughput: star-kit's `hf` sampler vs a plain `model.generate` loop written the obvious way.

Same prompts, one process, alternated rounds after a warm-up. The naive loop: batches in the given order, left
padding, fp32, greedy, a fixed max_new_tokens (no stop strings). star-kit's sampler: bf16, the shared few-shot
prefix's KV cache reused, length-sorted batches, each sequence stopped at the task's stop string.
Both are scored on the same thing: the completions cut at the first stop string (useful tokens), so tokens/s
counts useful tokens and `speedup_vs_naive` is the ratio of wall times for the same work.

    python benchmarks/sampler_throughput.py [--quick] [--tasks arithmetic,gsm8k,commonsense_qa] [--n 64]
        [--batch-size 32] [--rounds 2] [--data-dir DATA]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def naive_generate(model, tokenizer, prompts, batch_size, max_new_tokens, stop):
    import torch

    from star_kit.records import cut_at_stop

    out = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True).to(model.device)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        texts = tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out.extend(cut_at_stop(t, stop) for t in texts)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (figures not meaningful)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default="arithmetic,gsm8k,commonsense_qa")
    parser.add_argument("--n", type=int, default=64, help="prompts per task")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data-dir", default=os.environ.get("STAR_KIT_DATA_DIR"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.batch_size = 4, 1, 4

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    registry = load_registry()
    path = resolve_model(args.model)
    sampler = registry.create("samplers", "hf", path, batch_size=args.batch_size)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    naive_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()

    results = {"model": args.model, "device": "cuda" if torch.cuda.is_available() else "cpu",
               "threads": torch.get_num_threads(), "n": args.n, "batch_size": args.batch_size, "tasks": {}}
    for name in [t for t in args.tasks.split(",") if t]:
        try:
            task = registry.create("tasks", name, data_dir=args.data_dir)
            examples = task.examples("eval", args.n, 0)
        except Exception as exc:  # e.g. no local data for gsm8k/commonsense_qa
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        prompts = [task.prompt(e) for e in examples]
        max_new = 16 if args.quick else task.max_new_tokens
        params = GenerationParams(max_new_tokens=max_new, stop=task.stop)
        # warm-up (one small batch each)
        sampler.generate(prompts[:2], params)
        naive_generate(naive_model, tokenizer, prompts[:2], 2, 4, task.stop)
        t_ours, t_naive, ours, naive = 0.0, 0.0, None, None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            naive = naive_generate(naive_model, tokenizer, prompts, args.batch_size, max_new, task.stop)
            t_naive += time.perf_counter() - t0
            t0 = time.perf_counter()
            ours = [c[0] for c in sampler.generate(prompts, params)]
            t_ours += time.perf_counter() - t0
        count = lambda texts: sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        tok_ours, tok_naive = count(ours) * args.rounds, count(naive) * args.rounds
        agree = sum(a.strip() == b.strip() for a, b in zip(ours, naive)) / len(prompts)
        results["tasks"][name] = {
            "prompts": len(prompts),
            "prompt_tokens_mean": round(sum(len(tokenizer(p)["input_ids"]) for p in prompts) / len(prompts), 1),
            "max_new_tokens": max_new,
            "naive_s": round(t_naive, 2), "hf_s": round(t_ours, 2),
            "naive_tok_s": round(tok_naive / t_naive, 1), "hf_tok_s": round(tok_ours / t_ours, 1),
            "speedup_vs_naive": round(t_naive / t_ours, 2),
            "same_completion": round(agree, 3),
        }
        print(f"{name}: {results['tasks'][name]}", file=sys.stderr)
    speedups = [v["speedup_vs_naive"] for v in results["tasks"].values()]
    results["speedup_vs_naive"] = round(min(speedups), 2) if speedups else None
    print(json.dumps(results))


if __name__ == "__main__":
    main()
