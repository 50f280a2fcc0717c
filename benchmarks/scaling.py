"""Throughput of the two scaled-out phases with 1 and 2 workers, in one run, with parallel efficiency.

    python benchmarks/scaling.py [--model smollm2-135m] [--prompts 64] [--steps 8] [--batch 8] [--json FILE]

* Sampling: the plain ``hf`` sampler in this process, then the ``ray`` sampler with 1 and 2 actors (each actor
  one CPU share / one GPU) on the same arithmetic prompts, greedy; the texts that differ from ``hf``'s are
  counted (none in float32; in bf16 a different batch composition changes rounding, as it does for ``hf`` alone
  with another batch size).
* Training: ``trl-sft`` in process, then under ``accelerate launch`` with 1 and 2 processes at the same effective
  batch (``--batch`` per step: per-device batch = batch / processes) and seed; loss curves compared.

Parallel efficiency = (time with 1 worker / time with 2 workers) / 2. On a 2-core machine two workers share the
cores the single in-process run already uses, so this measures correctness and overhead, not speed-up: speed-up
needs as many devices (GPUs, or machines) as workers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", default="auto", help="the samplers' dtype (float32: bit-equal greedy text expected)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    from star_kit.cli_common import quiet_libraries
    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams, TrainExample
    from star_kit.store import read_jsonl
    from star_kit_plugins.arithmetic import ArithmeticTask
    from star_kit_plugins.hf_sampler import HFSampler
    from star_kit_plugins.ray_sampler import RaySampler
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    quiet_libraries()
    model = resolve_model(args.model)
    task = ArithmeticTask()
    examples = task.examples("train", args.prompts, 0)
    prompts = [task.prompt(e) for e in examples]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, stop=task.stop)
    rows = []

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    # -- sampling ---------------------------------------------------------------------------------------
    hf = HFSampler(model, dtype=args.dtype)
    ref, t_hf = timed(lambda: hf.generate(prompts, params))
    hf.close()
    tokens = sum(len(hf.tokenizer(o[0])["input_ids"]) for o in ref)
    rows.append(("sample", "hf, in process", 1, t_hf, tokens / t_hf, 0))
    sample_times = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        sampler = RaySampler(model, workers=workers, chunk_size=max(1, args.prompts // (4 * workers)),
                             dtype=args.dtype)
        start = time.perf_counter() - t0
        out, t = timed(lambda: sampler.generate(prompts, params))
        sampler.close()
        sample_times[workers] = t
        rows.append(("sample", f"ray, {workers} actor{'s' if workers > 1 else ''} (start {start:.0f} s)", workers,
                     t, tokens / t, sum(a != b for a, b in zip(out, ref))))

    # -- training ---------------------------------------------------------------------------------------
    pairs = [TrainExample(e.id, task.prompt(e, fewshot=False), task.target(f"{e.question} = {e.answer}", e.answer),
                          "sampled") for e in task.examples("train", 4 * args.batch, 1)]
    losses, train_times = {}, {}
    with tempfile.TemporaryDirectory(prefix="star-kit-scaling-") as scratch:  # three checkpoints: removed after
        work = Path(scratch)
        for label, procs, opts in (("trl-sft, in process", 1, {}),
                                   ("accelerate, 1 process", 1, {"launcher": "accelerate", "num_processes": 1}),
                                   ("accelerate, 2 processes", 2, {"launcher": "accelerate", "num_processes": 2})):
            out_dir = work / label.replace(" ", "_").replace(",", "") / "checkpoint"
            trainer = TRLSFTTrainer(per_device_train_batch_size=args.batch // procs, logging_steps=1, **opts)
            _, t = timed(lambda: trainer.train(model, pairs, args.steps, out_dir, seed=0))
            losses[label] = [r["loss"] for r in read_jsonl(out_dir / "train_log.jsonl")]
            if opts:
                train_times[procs] = t
            rows.append(("train", label, procs, t, args.steps * args.batch / t, None))
    base = losses["trl-sft, in process"]
    for i, row in enumerate(rows):
        if row[0] == "train":
            other = losses[row[1]]
            dev = max(abs(a - b) / abs(a) for a, b in zip(base, other))
            rows[i] = (*row[:5], f"max loss dev {dev:.1e}")

    eff_sample = sample_times[1] / sample_times[2] / 2
    eff_train = train_times[1] / train_times[2] / 2
    print(f"{'phase':7} {'setup':36} {'workers':>7} {'seconds':>8} {'rate':>10}  check")
    for phase, label, w, t, rate, check in rows:
        unit = "tok/s" if phase == "sample" else "seq/s"
        if phase == "sample":
            shown = "same text as hf" if check == 0 else f"{check}/{len(prompts)} texts differ from hf's"
        else:
            shown = check
        print(f"{phase:7} {label:36} {w:>7} {t:>8.1f} {rate:>6.1f} {unit}  {shown}")
    print(f"parallel efficiency, 2 vs 1 worker: sampling {eff_sample:.2f}, training {eff_train:.2f} "
          f"(cores: {os.cpu_count()})")
    result = {"model": args.model, "prompts": args.prompts, "steps": args.steps, "batch": args.batch,
              "rows": [dict(zip(("phase", "setup", "workers", "seconds", "rate", "check"), r)) for r in rows],
              "efficiency": {"sampling": eff_sample, "training": eff_train}, "cores": os.cpu_count()}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
