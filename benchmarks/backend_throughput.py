"""Throughput of one sampler (model backend) on the same arithmetic prompts: useful tokens per second.

    python benchmarks/backend_throughput.py --sampler hf [--n 64] [--model smollm2-135m] [--sampler-opt K=V ...]
    python benchmarks/backend_throughput.py --sampler naive   # a plain fp32 model.generate loop, batches of 32
    .venv-vllm/bin/python benchmarks/backend_throughput.py --sampler vllm
    python benchmarks/backend_throughput.py --sampler openai --sampler-opt base_url=http://127.0.0.1:8000/v1

Greedy, the task's stop strings and token budget, one warm-up call on 4 prompts, then one timed call on ``--n``
prompts (1–5 digit addition, seed 0). Tokens are the completions (cut at the stop string) re-tokenized with the
model's tokenizer. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


class NaiveLoop:
    """The obvious way: fp32, batches of 32 in the given order, left padding, greedy ``model.generate`` to the
    full token budget (no stop strings), each completion cut at the stop string afterwards; on the GPU when there
    is one."""

    def __init__(self, model: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        self.tokenizer.pad_token = self.tokenizer.pad_token or self.tokenizer.eos_token
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from sampler_throughput import naive_generate  # the one naive loop, shared with that benchmark

        self.naive_generate = naive_generate

    def generate(self, prompts, params):
        texts = self.naive_generate(self.model, self.tokenizer, prompts, 32, params.max_new_tokens, params.stop)
        return [[t] for t in texts]

    def close(self) -> None:
        pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sampler", default="hf")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--sampler-opt", action="append", default=[], metavar="K=V")
    args = p.parse_args()
    from transformers import AutoTokenizer

    from star_kit.cli_common import key_value
    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    registry = load_registry()
    task = registry.create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("eval", args.n, 0)]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    model = resolve_model(args.model)
    options = dict(key_value(kv) for kv in args.sampler_opt)  # values read as on the command line
    t0 = time.perf_counter()
    sampler = NaiveLoop(model) if args.sampler == "naive" else registry.create("samplers", args.sampler, model,
                                                                                **options)
    load_s = time.perf_counter() - t0
    try:
        sampler.generate(prompts[:4], params)
        t0 = time.perf_counter()
        out = sampler.generate(prompts, params)
        seconds = time.perf_counter() - t0
    finally:
        sampler.close()
    tok = AutoTokenizer.from_pretrained(model)
    tokens = sum(len(tok(c[0], add_special_tokens=False)["input_ids"]) for c in out)
    print(json.dumps({"sampler": args.sampler, "prompts": len(prompts), "tokens": tokens,
                      "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                      "load_s": round(load_s, 1)}))


if __name__ == "__main__":
    main()
