"""The ``hf`` sampler's two engines on one device, in one process: star-kit's prefix engine against batched
``model.generate``, on the STaR workload (arithmetic few-shot prompts, greedy, the task's stop strings).

    python benchmarks/gpu_sampler.py --model smollm2-135m [--n 1024] [--slots 256,512,1024] [--rounds 2]
                                     [--agree 128] [--out result.json] [--quick]

Made for a CUDA GPU (it runs on CPU too, slowly: the test suite runs it with ``--quick``). Steps:

1. ``agreement``: the same ``--agree`` held-out prompts through both engines in float32 and in bfloat16
   (``gpu_check.step_agreement``, which prints its cumulative result as each run ends and records a run's error in
   it): identical texts, and the accuracy of each. (Before this reuse, the step drew training prompts, as the
   throughput step does, and took the default dtype: the JSON of ``docs/results/gpu_sampler_*.json``.)
2. ``throughput``: ``--n`` prompts through ``generate`` (its default batch) and through the prefix engine at each
   of ``--slots`` (and auto), alternated for ``--rounds`` rounds after a warm-up: useful tokens per second
   (completions cut at the stop string, re-tokenized), seconds, and the fraction of the device's bf16 matmul peak
   (tokens/s x FLOPs per token / peak, FLOPs per token by ``sampling_speed.model_costs``: 2 x parameters +
   attention over the mean context).

Each step's result is printed as it finishes; the last line is one JSON object (also written to ``--out``).
Every contender holds its own copy of the model at once (one per slot count, plus ``generate``): fine for a small
model; for a large one time fewer ``--slots``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--slots", default="256,512,1024", help="prefix-engine slot counts to time, besides auto")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--agree", type=int, default=128)
    p.add_argument("--out", default=None)
    p.add_argument("--quick", action="store_true", help="a few prompts, one round (for the tests)")
    args = p.parse_args()
    if args.quick:
        args.n, args.agree, args.rounds, args.slots = 8, 4, 1, "4"
    import torch
    from transformers import AutoTokenizer

    from gpu_check import step_agreement
    from peak import matmul_peak
    from sampling_speed import model_costs
    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    cuda = torch.cuda.is_available()
    registry = load_registry()
    task = registry.create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("train", args.n, 0)]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    model = resolve_model(args.model)
    tok = AutoTokenizer.from_pretrained(model)
    result: dict = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
                    "prompts": args.n}

    def show() -> None:
        print(json.dumps(result), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1) + "\n")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    # 1. agreement
    result["agreement"] = step_agreement(model, args.agree, ("generate_fp32", "prefix_fp32", "generate_bf16",
                                                             "prefix_bf16"))
    show()

    # 2. throughput
    peak = matmul_peak("bfloat16", n=8192 if cuda else 1024)
    contenders = {"generate": dict(engine="generate")}
    contenders["prefix_auto"] = dict(engine="prefix")
    for s in [int(x) for x in args.slots.split(",") if x]:
        contenders[f"prefix_{s}"] = dict(engine="prefix", batch_size=s)
    samplers = {name: registry.create("samplers", "hf", model, **opts) for name, opts in contenders.items()}
    timings: dict = {name: [] for name in samplers}
    tokens: dict = {}
    slots: dict = {}
    try:
        for sampler in samplers.values():
            sampler.generate(prompts[:16], params)  # warm-up
        for _ in range(args.rounds):
            for name, sampler in samplers.items():
                sync()
                t0 = time.perf_counter()
                out = sampler.generate(prompts, params)
                sync()
                timings[name].append(time.perf_counter() - t0)
                if name not in tokens:
                    tokens[name] = sum(len(tok(c[0], add_special_tokens=False)["input_ids"]) for c in out)
                    slots[name] = sampler._engine.last_slots if sampler._engine is not None else sampler.batch_size
    finally:
        for sampler in samplers.values():
            sampler.close()
    rows = {}
    for name in samplers:  # each contender's own mean context (its completions' mean length)
        costs = model_costs(model, args.n, split="train", new_tokens=tokens[name] / args.n)
        tps = tokens[name] / min(timings[name])
        rows[name] = {"tokens": tokens[name], "seconds": [round(t, 3) for t in timings[name]],
                      "tokens_per_s": round(tps, 1), "slots": slots[name],
                      "fraction_of_bf16_peak": round(tps * costs["flops_per_token"] / (peak * 1e9), 5)}
    base = rows["generate"]["tokens_per_s"]
    for row in rows.values():
        row["vs_generate"] = round(row["tokens_per_s"] / base, 2)
    result.update(bf16_peak_gflops=round(peak, 1), mean_context=costs["mean_context"], throughput=rows)
    show()


if __name__ == "__main__":
    main()
