"""Probe: right-to-left formats whose every step is a one-digit sum (with the carry), with each column's digit pair
shown in the question or not, few-shot and hinted, 8 held-out sums per digit count (1-4), SmolLM2-135M, greedy.
Prints one JSON line per (variant, hint): per digit count [right, right with every step right, n].
Run: python benchmarks/format_probe_prepend.py [VARIANT ...]   (docs/results/arithmetic_formats.md, section 5)"""
import os, re, sys, json, time
os.environ["TQDM_DISABLE"] = "1"
from star_kit.registry import load_registry
from star_kit.models import resolve_model
from star_kit.records import GenerationParams, Exemplar

r = load_registry(); base = resolve_model("smollm2-135m")
s = r.create("samplers", "hf", base)

def cols(a, b):
    w = max(len(str(a)), len(str(b)))
    return [(a // 10**p % 10, b // 10**p % 10) for p in range(w)]

def q_plain(a, b): return f"{a} + {b} = ?"
def q_cols(a, b): return f"{a} + {b} = ? (columns: " + ", ".join(f"{x}+{y}" for x, y in cols(a, b)) + ")"

def r_prepend(a, b):
    c, part, st = 0, "", []
    cs = cols(a, b)
    for i, (x, y) in enumerate(cs):
        z = x + y + c
        last = i == len(cs) - 1
        part = (str(z) if last else str(z % 10)) + part
        st.append(f"{x}+{y}" + (f"+{c}" if c else "") + f"={z}: {part}" + ("" if last else f", carry {z // 10}"))
        c = z // 10
    return ". ".join(st)

def r_list(a, b):
    c, st = 0, []
    for x, y in cols(a, b):
        z = x + y + c
        st.append(f"{x}+{y}" + (f"+{c}" if c else "") + f"={z}")
        c = z // 10
    return ", ".join(st) + f", so {a + b}"

def check(a, b, text):
    """Every step's column digits and sum right, in order (the carry too)."""
    steps = re.findall(r"(\d)\+(\d)(?:\+(\d))?=(\d+)", text)
    c = 0
    cs = cols(a, b)
    if len(steps) != len(cs):
        return False
    for (x, y), (sx, sy, sc, sz) in zip(cs, steps):
        if (int(sx), int(sy), int(sc or 0), int(sz)) != (x, y, c, x + y + c):
            return False
        c = (x + y + c) // 10
    return True

Q = [(6, 7), (3, 2), (47, 85), (21, 34), (306, 598), (5028, 3917), (61954, 27389)]
variants = {"prepend+cols": (q_cols, r_prepend), "prepend": (q_plain, r_prepend),
            "list+cols": (q_cols, r_list)}
only = sys.argv[1:] or list(variants)
t = r.create("tasks", "arithmetic", eval_digits="1-4")
ex = t.examples("eval", 32, 0)
x = r.extractor("arithmetic")
for name in only:
    qf, rf = variants[name]
    t._fewshot = [Exemplar(qf(a, b), rf(a, b), str(a + b)) for a, b in Q]
    for hint in (False, True):
        prompts = []
        for e in ex:
            a, b = map(int, re.findall(r"\d+", e.question)[:2])
            p = t.prompt(e, hint=hint)
            prompts.append(p.replace(f"Q: {e.question}", f"Q: {qf(a, b)}") if qf is q_cols else p)
        t0 = time.time()
        outs = s.generate(prompts, GenerationParams(max_new_tokens=80, stop=t.stop))
        res = {}
        for e, (o,) in zip(ex, outs):
            a, b = map(int, re.findall(r"\d+", e.question)[:2])
            ok = x(o) == e.answer
            res.setdefault(e.fields["digits"], []).append((ok, ok and check(a, b, o)))
        print(json.dumps({"variant": name, "hint": hint, "seconds": round(time.time() - t0, 1),
                          "per_digits": {d: [sum(u for u, _ in l), sum(v for _, v in l), len(l)] for d, l in sorted(res.items())},
                          "sample": [outs[i][0][:100] for i in (0, 9, 17, 25)]}), flush=True)
print(repr(prompts[-1][-700:]))
