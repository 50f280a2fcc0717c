"""The decode step's attention to the shared few-shot prefix, three ways, on the real model's tensors (CPU):

* ``flash``: what the ``hf`` sampler's prefix engine does, torch's fused CPU attention kernel (float32 scores);
* ``bf16``: scores as one bf16 batched matmul (rounded to bf16 before the float32 softmax), then a bf16 matmul;
* ``shift``: the same, but each query row's scores are computed twice: once in bf16 to find the row's maximum c,
  then with c subtracted inside the matmul (q extended by c, the keys by -1), so the scores near the maximum
  (those the softmax weighs) are small numbers that bf16 keeps to ~3 decimals.

    python benchmarks/prefix_attention.py [--n 256] [--rounds 3] [--skip-ab] [--model smollm2-135m]

Part 1 captures the queries, prefix keys and values of one decode step (the last one with all 256 rows, 30 layers)
and times each variant per call, with the largest error of its output and log-sum-exp against float64. Part 2 runs
the sampler on ``--n`` arithmetic prompts with each variant in turn (``--rounds`` alternations in one process:
the machine's speed drifts), reporting seconds per call and how many completions equal the ``flash`` ones. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def flash(q, k, v, scale):
    import torch

    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)[:2]
    return out, lse


def bf16(q, k, v, scale):
    import torch

    s = torch.matmul(q * scale, k.transpose(-1, -2)).float()
    top = s.amax(-1)
    p = torch.softmax(s, -1)
    return torch.matmul(p.to(v.dtype), v), top - p.amax(-1).log()


def shift(q, k, v, scale):
    import torch

    qs = q * scale
    c = torch.matmul(qs, k.transpose(-1, -2)).amax(-1, keepdim=True)  # each row's maximum, in bf16
    s = torch.matmul(torch.cat([qs, c], -1), torch.cat([k, k.new_full((*k.shape[:-1], 1), -1)], -1)
                     .transpose(-1, -2)).float()
    p = torch.softmax(s, -1)
    return torch.matmul(p.to(v.dtype), v), c.squeeze(-1).float() + s.amax(-1) - p.amax(-1).log()


VARIANTS = {"flash": flash, "bf16": bf16, "shift": shift}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-ab", action="store_true")
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    import star_kit_plugins.hf_engine as engine
    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    registry = load_registry()
    sampler = registry.create("samplers", "hf", resolve_model(args.model))
    task = registry.create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("train", args.n, 0)]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    sampler.generate(prompts[:32], params)  # warm-up: the prefix cache
    engines = [o for o in __import__("gc").get_objects() if isinstance(o, engine.DecodeEngine)]
    assert engines, "the hf sampler did not use the prefix engine"

    def use(fn):
        for e in engines:
            e._prefix_attention = (lambda q, k, v, scale, fn=fn: fn(q, k, v, scale))  # the engine's own, replaced

    # -- 1. per call, on one full decode step's tensors --------------------------------------------------------
    captured = []

    def capture(q, k, v, scale):
        if q.shape[2] == engines[0].group * min(args.n, 256):  # all slots busy: [1, kv heads, group x rows, d]
            captured.append((q.clone(), k, v, scale))
            del captured[:-30]
        return flash(q, k, v, scale)

    use(capture)
    sampler.generate(prompts, GenerationParams(max_new_tokens=12, stop=task.stop))
    per_call = {}
    for name, fn in VARIANTS.items():
        worst_out = worst_lse = 0.0
        seconds = 0.0
        for q, k, v, scale in captured:
            s = (q.double() @ k.double().transpose(-1, -2)) * scale
            ref_out, ref_lse = torch.softmax(s, -1) @ v.double(), torch.logsumexp(s, -1)
            out, lse = fn(q, k, v, scale)
            worst_out = max(worst_out, (out.double() - ref_out).abs().max().item())
            worst_lse = max(worst_lse, (lse.double().reshape(ref_lse.shape) - ref_lse).abs().max().item())
            for _ in range(2):
                fn(q, k, v, scale)
            t0 = time.perf_counter()
            for _ in range(10):
                fn(q, k, v, scale)
            seconds += (time.perf_counter() - t0) / 10
        per_call[name] = {"ms_per_call": round(1e3 * seconds / len(captured), 3),
                          "max_out_error": round(worst_out, 4), "max_lse_error": round(worst_lse, 4)}
        print(name, per_call[name], flush=True)
    report = {"queries": list(captured[0][0].shape), "keys": list(captured[0][1].shape), "per_call": per_call}

    # -- 2. the whole sampler, variants alternated ------------------------------------------------------------
    if not args.skip_ab:
        seconds, texts = {n: [] for n in VARIANTS}, {}
        for _ in range(args.rounds):
            for name, fn in VARIANTS.items():
                use(fn)
                t0 = time.perf_counter()
                out = sampler.generate(prompts, params)
                seconds[name].append(round(time.perf_counter() - t0, 2))
                texts.setdefault(name, out)  # the first round's; later rounds must give the same
                assert out == texts[name], f"{name}: another round gave other texts"
            print(seconds, flush=True)
        extract = registry.extractor(task.extractor)
        gold = [e.answer for e in task.examples("train", args.n, 0)]
        report["generate_seconds"] = seconds
        report["mean_vs_flash"] = {n: round(sum(seconds["flash"]) / sum(s), 3) for n, s in seconds.items()}
        report["same_texts_as_flash"] = {n: sum(a == b for a, b in zip(texts["flash"], t))
                                         for n, t in texts.items() if n != "flash"}
        report["right_answers"] = {n: sum(bool(task.is_correct(extract(c[0]), g)) for c, g in zip(t, gold))
                                   for n, t in texts.items()}
        report["prompts"] = len(prompts)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
