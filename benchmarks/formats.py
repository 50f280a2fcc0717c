"""Which addition rationale format can SmolLM2-135M start, and which can it learn? Per digit count.

For each format (``column``, ``place_value``, ``direct`` = answer only) it measures, on the same held-out sums
(``--per-digit`` per digit count in ``--digits``, greedy, the task's few-shot prompt as the loop evaluates):

    fewshot   the base model, few-shot: right answers, and right answers whose rationale the verifier accepts
    hint      the same with the gold answer as a hint (what rationalization can rescue)
    sft       the base model fine-tuned on gold rationales of ``--train-size`` 1-5-digit training sums for
              ``--steps`` steps (the trl-sft trainer, ``--trainer-opt`` as for star-kit run), then evaluated

    python benchmarks/formats.py [--formats column,place_value,direct] [--modes fewshot,hint,sft]
        [--per-digit 8] [--digits 1-8] [--train-size 256] [--steps 60] [--trainer-opt K=V ...]
        [--hint-styles answer,groups] [--out FILE]

Prints one row per (format, mode) and, last, one JSON object (also written to --out).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def make_task(registry, fmt: str, digits: str, hint_style: str = "answer"):
    if fmt == "direct":
        return registry.create("tasks", "arithmetic", rationales=False, eval_digits=digits)
    return registry.create("tasks", "arithmetic", format=fmt, eval_digits=digits, hint_style=hint_style)


def score(task, registry, sampler, examples, hint: bool) -> dict:
    from star_kit.records import GenerationParams

    extract = registry.extractor(task.extractor)
    verify = registry.verifier(task.verifier) if task.rationales else None
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    outs = sampler.generate([task.prompt(e, hint=hint) for e in examples], params)
    by_digit: dict[int, list[tuple[bool, bool]]] = {}
    for e, (completion,) in zip(examples, outs):
        right = task.is_correct(extract(completion), e.answer)
        verified = right and (verify is None or verify(e, task.rationale_of(completion)) is None)
        by_digit.setdefault(e.fields["digits"], []).append((right, verified))
    pct = lambda xs: round(100 * sum(xs) / len(xs))  # noqa: E731
    return {"right": {d: pct([r for r, _ in v]) for d, v in sorted(by_digit.items())},
            "verified": {d: pct([ok for _, ok in v]) for d, v in sorted(by_digit.items())},
            "example": outs[-1][0][:160]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--formats", default="column,place_value,direct")
    parser.add_argument("--modes", default="fewshot,hint,sft")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--per-digit", type=int, default=8)
    parser.add_argument("--digits", default="1-8")
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--trainer-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hint-styles", default="answer", help="the arithmetic task's hint_style values, for mode hint")
    parser.add_argument("--out")
    args = parser.parse_args()

    from star_kit.config import parse_scalar
    from star_kit.models import resolve_model
    from star_kit.records import TrainExample
    from star_kit.registry import load_registry

    registry = load_registry()
    base = resolve_model(args.model)
    trainer_options = {k: parse_scalar(v) for k, v in (o.split("=", 1) for o in args.trainer_opt)}
    modes = args.modes.split(",")
    sampler = registry.create("samplers", "hf", base)
    results = []
    try:
        for fmt in args.formats.split(","):
            task = make_task(registry, fmt, args.digits)
            n_digits = len(task.eval_digits)
            examples = task.examples("eval", args.per_digit * n_digits, args.seed)
            runs = [(m, h) for m in modes for h in (args.hint_styles.split(",") if m == "hint" else ["answer"])]
            for mode, hint_style in runs:
                t0 = time.perf_counter()
                row = {"format": fmt, "mode": mode, **({"hint_style": hint_style} if mode == "hint" else {})}
                if mode == "hint" and fmt == "direct":
                    continue
                if mode == "hint":
                    task = make_task(registry, fmt, args.digits, hint_style)
                if mode == "sft":
                    train = task.examples("train", args.train_size, args.seed)
                    pairs = []
                    for e in train:
                        rationale = task.gold_rationale(e.fields["a"], e.fields["b"]) if task.rationales else ""
                        pairs.append(TrainExample(e.id, task.prompt(e, fewshot=False),
                                                  task.target(rationale, e.answer), "sampled"))
                    trainer = registry.create("trainers", "trl-sft", **trainer_options)
                    with tempfile.TemporaryDirectory() as tmp:
                        ckpt = trainer.train(base, pairs, args.steps, os.path.join(tmp, "ckpt"), seed=args.seed)
                        row["train_s"] = round(time.perf_counter() - t0)
                        sampler.load(str(ckpt))
                        row.update(score(task, registry, sampler, examples, hint=False))
                    sampler.load(base)
                    row.update(steps=args.steps, train_size=args.train_size, trainer_options=trainer_options)
                else:
                    row.update(score(task, registry, sampler, examples, hint=(mode == "hint")))
                row["seconds"] = round(time.perf_counter() - t0)
                print(json.dumps(row), flush=True)
                results.append(row)
    finally:
        sampler.close()
    summary = {"per_digit": args.per_digit, "digits": args.digits, "model": args.model, "results": results}
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(summary, fh, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
