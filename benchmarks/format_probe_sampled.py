"""Probe: can the base model START a multi-digit addition rationale, greedy or with K samples, few-shot or hinted?

The task's own few-shot prompt and verifier (``--format``), on ``--per-digit`` training sums per digit count 1-5
(the train split, seed 1: the questions STaR's first iteration samples from). For greedy and for ``--samples K`` at
``--temperature T``, with and without the hint, per digit count: % of samples right, % right and accepted by the
verifier, % of questions with at least one verified sample (what STaR could keep), and the verifier's most common
reasons for rejecting right answers. Prints three greedy completions of 2-digit sums first.

    python benchmarks/format_probe_sampled.py [--format place_value] [--samples 8] [--temperature 0.7]
        [--per-digit 16] [--model smollm2-135m] [--hint-style answer|groups] [--hinted-only]
"""
import argparse
import collections
import json
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")

from star_kit.models import resolve_model  # noqa: E402
from star_kit.records import GenerationParams  # noqa: E402
from star_kit.registry import load_registry  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--format", default="place_value")
p.add_argument("--samples", type=int, default=8)
p.add_argument("--temperature", type=float, default=0.7)
p.add_argument("--per-digit", type=int, default=16)
p.add_argument("--model", default="smollm2-135m")
p.add_argument("--hint-style", default="answer", help="the arithmetic task's hint_style (what the hint shows)")
p.add_argument("--hinted-only", action="store_true", help="only the hinted prompts (what rationalization sees)")
args = p.parse_args()
K, T, per, fmt = args.samples, args.temperature, args.per_digit, args.format
reg = load_registry()
task = reg.create("tasks", "arithmetic", format=fmt, eval_digits="1-5", hint_style=args.hint_style)
ex = task.examples("train", per * 5, 1)
sampler = reg.create("samplers", "hf", resolve_model(args.model))
extract = reg.extractor(task.extractor); verify = reg.verifier(task.verifier)
for hint in (True,) if args.hinted_only else (False, True):
    for temp, n in ((0.0, 1), (T, K)):
        t0 = time.time()
        outs = sampler.generate([task.prompt(e, hint=hint) for e in ex], GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop, temperature=temp, n=n, seed=0))
        stats = collections.defaultdict(lambda: [0, 0, 0, 0])  # samples right, samples verified, questions any verified, questions
        bad = collections.Counter(); shown = 0
        for e, comps in zip(ex, outs):
            d = e.fields["digits"]; s = stats[d]; s[3] += 1; anyv = False
            for c in comps:
                r = task.is_correct(extract(c), e.answer)
                why = verify(e, task.rationale_of(c)) if r else "wrong"
                s[0] += r; s[1] += why is None; anyv |= why is None
                if r and why: bad[why.split(":")[0][:40]] += 1
                if d == 2 and shown < 3 and temp == 0: print("   ", repr(c[:150])); shown += 1
            s[2] += anyv
        print(json.dumps({"hint": hint, "T": temp, "n": n, "s": round(time.time()-t0),
              "per_digit(right%,verified%,q_any_verified%)": {d: (round(100*s[0]/(s[3]*n)), round(100*s[1]/(s[3]*n)), round(100*s[2]/s[3])) for d, s in sorted(stats.items())},
              "rejections": bad.most_common(4)}), flush=True)
