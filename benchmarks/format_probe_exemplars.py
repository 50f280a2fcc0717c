"""Probe: does a different rationale format, or exemplars matched to the question's digit count, let the base model
start multi-digit addition rationales few-shot or hinted?

Formats (gold rationale generators below): place_value (the task's default), restate (``555 = 500 + 50 + 5 and ...``),
column (right to left, ``5 + 9 = 14; 5 + 2 + 1 = 8; ...``). Exemplar modes: ``mixed`` (the task's five: 1- to 5-digit
sums), ``matched`` (a 1-digit exemplar and four of the question's digit count), ``matched8`` (eight). 16 sums of 2
and 3 digits (seed 5), greedy. Per digit count: % right, % whose rationale is exactly the gold one.

    python benchmarks/format_probe_exemplars.py [MODEL] [MODES]    # defaults: smollm2-135m mixed,matched
"""
import os, sys, json, random, collections
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
from star_kit.models import resolve_model
from star_kit.registry import load_registry
from star_kit.records import GenerationParams
from star_kit_plugins.arithmetic import place_value_rationale
reg = load_registry()
model = sys.argv[1] if len(sys.argv) > 1 else "smollm2-135m"
def places(n, w): return [(n // 10**p % 10) * 10**p for p in range(w - 1, -1, -1)]
pv = place_value_rationale  # the task's own gold rationale
def restate(a, b):
    w = max(len(str(a)), len(str(b)))
    if w == 1: return f"{a} + {b} = {a+b}"
    pa, pb = places(a, w), places(b, w)
    return (f"{a} = " + " + ".join(map(str, pa)) + f" and {b} = " + " + ".join(map(str, pb)) + ". "
            + ", ".join(f"{x} + {y} = {x+y}" for x, y in zip(pa, pb)) + ". " + " + ".join(str(x + y) for x, y in zip(pa, pb)) + f" = {a+b}")
def column(a, b):
    w = max(len(str(a)), len(str(b))); steps = []; c = 0
    for p in range(w):
        x, y = a // 10**p % 10, b // 10**p % 10; t = x + y + c
        steps.append(f"{x} + {y}" + (" + 1" if c else "") + f" = {t}"); c = t // 10
    return "; ".join(steps) + f". So {a} + {b} = {a+b}"
MODES = sys.argv[2].split(",") if len(sys.argv) > 2 else ["mixed", "matched"]
FMT = {"place_value": pv, "restate": restate, "column": column}
rng = random.Random(5)
def rand(d): lo = 0 if d == 1 else 10**(d-1); return rng.randint(lo, 10**d - 1)
def block(a, b, r, hint):
    h = f" (Hint: the answer is {a+b}.)" if hint else ""
    return f"Q: {a} + {b} = ?{h}\nA:" + (f" {r}. The answer is {a+b}.\n\n" if r is not None else "")
sampler = reg.create("samplers", "hf", resolve_model(model))
qs = {d: [(rand(d), rand(d)) for _ in range(16)] for d in (2, 3)}
for fname, f in FMT.items():
    for mode in MODES:
        for hint in (False, True):
            prompts, keys = [], []
            for d, pairs in qs.items():
                for a, b in pairs:
                    if mode == "mixed":
                        ex = [(6, 7), (47, 85), (306, 598), (5028, 3917), (61954, 27389)]
                    else:
                        k = 4 if mode == "matched" else 8
                        ex = [(6, 7)] + [(rand(d), rand(d)) for _ in range(k)]
                    prompts.append("".join(block(x, y, f(x, y), hint) for x, y in ex) + block(a, b, None, hint))
                    keys.append((d, a, b))
            outs = sampler.generate(prompts, GenerationParams(max_new_tokens=160, stop=("\n\n", "\nQ:"), n=1))
            res = collections.defaultdict(lambda: [0, 0, 0]); sample = None
            for (d, a, b), (c,) in zip(keys, outs):
                gold = f(a, b)
                res[d][0] += f"answer is {a+b}." in c; res[d][1] += c.strip().startswith(gold + "."); res[d][2] += 1
                if d == 3 and sample is None: sample = c[:120]
            print(json.dumps({"fmt": fname, "mode": mode, "hint": hint, "right/exact%": {d: (round(100*r[0]/r[2]), round(100*r[1]/r[2])) for d, r in res.items()}, "ex3": sample}), flush=True)
