"""One attention layer of a padding-free training row, forward + backward: sdpa with transformers' block-diagonal
mask (what the trainer used before) vs the trainer's packed attention (`plugins/sft_attention.py`), in one process.

Shapes are SmolLM2-135M's (9 query heads, 3 key/value heads, head dim 64; rotary q/k in fp32, v in bf16, as they
reach the attention under bf16 autocast). Rows: the default job's (nine 1-digit-sum examples of ~25 tokens), the
training benchmark's (nine 1-5-digit examples of 33-130 tokens), and `--train-fewshot` rows (eight examples of
~450 tokens, where the packed attention recomputes its probabilities in the backward instead of keeping them).

    python benchmarks/attention_speed.py [--repeats 20]

The last line printed is one JSON object: per row, milliseconds per layer for each, their ratio, and the largest
difference of the outputs and of each input's gradient (relative to its largest value).
"""

from __future__ import annotations

import argparse
import json
import time

ROWS = {
    "default_job": [25, 27, 30, 24, 26, 28, 31, 25, 22],
    "train_benchmark": [40, 130, 62, 95, 118, 33, 88, 104, 71],
    "train_fewshot": [440, 452, 431, 447, 460, 438, 445, 450],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from star_kit_plugins import sft_attention

    class Layer:  # what transformers' attention functions read from the module
        training = True
        num_key_value_groups = 3
        is_causal = True

    results = {}
    for name, lengths in ROWS.items():
        torch.manual_seed(0)
        total = sum(lengths)
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
        q = torch.randn(1, total, 9, 64).transpose(1, 2).requires_grad_()
        k = torch.randn(1, total, 3, 64).transpose(1, 2).requires_grad_()
        v = torch.randn(1, total, 3, 64, dtype=torch.bfloat16).transpose(1, 2).requires_grad_()
        grad = torch.randn(1, total, 9, 64)
        example = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        mask = (example[:, None] == example[None, :]) & torch.ones(total, total, dtype=torch.bool).tril()

        def step(packed: bool):
            q.grad = k.grad = v.grad = None
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if packed:
                    out, _ = sft_attention.packed_attention_forward(Layer(), q, k, v, None, scaling=0.125,
                                                                    cu_seq_lens_q=cu, cu_seq_lens_k=cu)
                else:
                    out, _ = sdpa_attention_forward(Layer(), q, k, v, mask[None, None], scaling=0.125)
            out.backward(grad.to(out.dtype))
            return out.float(), [t.grad.float() for t in (q, k, v)]

        def timed(packed: bool) -> float:
            for _ in range(3):
                step(packed)
            t0 = time.perf_counter()
            for _ in range(args.repeats):
                step(packed)
            return (time.perf_counter() - t0) / args.repeats * 1000

        sdpa_ms, packed_ms = timed(False), timed(True)
        (out_a, grads_a), (out_b, grads_b) = step(False), step(True)
        scores = 9 * len(lengths) * max(lengths) ** 2
        results[name] = {
            "tokens": total, "examples": len(lengths), "longest": max(lengths),
            "probabilities": "kept" if scores <= sft_attention.MAX_KEPT else "recomputed",
            "sdpa_ms": round(sdpa_ms, 2), "packed_ms": round(packed_ms, 2), "ratio": round(sdpa_ms / packed_ms, 2),
            "max_abs_diff_out": round((out_a - out_b).abs().max().item(), 5),
            "max_rel_diff_grad": [round(((a - b).abs().max() / a.abs().max()).item(), 5)
                                  for a, b in zip(grads_a, grads_b)],
        }
        print(f"{name}: {total} tokens in {len(lengths)} examples: sdpa + mask {sdpa_ms:.1f} ms, packed "
              f"{packed_ms:.1f} ms ({sdpa_ms / packed_ms:.2f}x)", flush=True)
    print(json.dumps({"threads": torch.get_num_threads(), "rows": results}))


if __name__ == "__main__":
    main()
