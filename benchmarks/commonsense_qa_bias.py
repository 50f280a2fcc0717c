"""Why does SmolLM2-135M answer "(c)" on CommonsenseQA? Prompt variants, one model load, greedy.

Each variant builds the few-shot prompt by hand from the task's exemplars and dev questions (the first ``--n`` of
the task's seeded shuffle, as ``star-kit bench --limit N`` takes them) and reports accuracy and the distribution of
the letters answered (``-``: no answer):

    base         the task's ``answer_format=letter`` prompt: "... The answer is (b)."
    letter_text  answers written "(b) mailbox": graded by the letter (acc) and by the text named (text_acc)
    text_letter  answers written "mailbox (b)": graded by the letter and by the text
    text         answers written "mailbox" (graded by the text: the longest choice the answer starts with)
    all_a/all_e  every exemplar's choices rotated so that its answer is (a) / (e)
    rev          the exemplars in reverse order
    few3         the first 3 exemplars only
    shuffle      every dev question's choices in a seeded order (gold letter remapped)
    direct       no rationale in the exemplars: "The answer is (b)."

    python benchmarks/commonsense_qa_bias.py --data-dir DATA [--n 200] [--variants base,shuffle,...]

Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import time
from collections import Counter

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

L = "abcde"
VARIANTS = ("base", "letter_text", "text_letter", "text", "all_a", "all_e", "rev", "few3", "shuffle", "direct")


def parse(question: str) -> tuple[str, list[str]]:
    stem, rest = question.split("\nAnswer Choices:\n")
    return stem, [re.match(r"\((.)\) (.*)", line).group(2) for line in rest.split("\n")]


def question_text(stem: str, choices: list[str]) -> str:
    return stem + "\nAnswer Choices:\n" + "\n".join(f"({L[i]}) {c}" for i, c in enumerate(choices))


def answer_text(style: str, choices: list[str], k: int) -> str:
    return {"letter": f"({L[k]})", "letter_text": f"({L[k]}) {choices[k]}", "text_letter": f"{choices[k]} ({L[k]})",
            "text": choices[k]}[style]


def build(shots, test, style="letter", rationale=True) -> str:
    parts = []
    for stem, choices, rat, k in shots:
        body = (rat.strip() + " " if rationale else "") + f"The answer is {answer_text(style, choices, k)}."
        parts.append(f"Q: {question_text(stem, choices)}\nA: {body}\n\n")
    stem, choices, _ = test
    parts.append(f"Q: {question_text(stem, choices)}\nA:")
    return "".join(parts)


def by_text(answer: str, choices: list[str]) -> int | None:
    """The choice whose text the answer starts with (the longest such), or None."""
    rest = answer.strip().lower()
    best = None
    for j, c in enumerate(choices):
        if rest.startswith(c.lower()) and (best is None or len(c) > len(choices[best])):
            best = j
    return best


def rotate(choices: list[str], k: int, target: int) -> list[str]:
    d = (target - k) % len(choices)
    return choices[-d:] + choices[:-d] if d else choices


def shuffled(tests, seed: int):
    out = []
    for i, (stem, choices, k) in enumerate(tests):
        perm = list(range(len(choices)))
        random.Random(f"{seed}:{i}").shuffle(perm)
        out.append((stem, [choices[p] for p in perm], perm.index(k)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--model", default="smollm2-135m")
    args = ap.parse_args()

    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    registry = load_registry()
    sampler = registry.create("samplers", "hf", resolve_model(args.model))
    task = registry.create("tasks", "commonsense_qa", data_dir=args.data_dir, answer_format="letter")
    extract = registry.extractor("commonsense_qa")
    shots = [(*parse(e.question), e.rationale, L.index(e.answer)) for e in task.fewshot()]
    tests = [(*parse(e.question), L.index(e.answer)) for e in task.examples("eval", args.n, 0)]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)

    def run(name, shots_v, tests_v, style="letter", rationale=True):
        t0 = time.perf_counter()
        outs = sampler.generate([build(shots_v, t, style, rationale) for t in tests_v], params)
        preds, text_preds = [], []
        for (stem, choices, k), (out,) in zip(tests_v, outs):
            letter = extract(out)
            preds.append(L.index(letter) if letter else None)
            tail = out[out.rfind("The answer is") + len("The answer is"):] if "The answer is" in out else ""
            if style == "letter_text":
                tail = re.sub(r"^\s*\([a-eA-E]\)", "", tail)
            elif style == "text_letter":
                tail = re.sub(r"\([a-eA-E]\)", "", tail)
            text_preds.append(by_text(tail, choices) if tail else None)
        if style == "text":
            preds = text_preds
        row = {"variant": name, "n": len(tests_v),
               "acc": round(sum(p == t[2] for p, t in zip(preds, tests_v)) / len(tests_v), 3),
               "letters": dict(sorted(Counter(L[p] if p is not None else "-" for p in preds).items()))}
        if style in ("letter_text", "text_letter"):
            row["text_acc"] = round(sum(p == t[2] for p, t in zip(text_preds, tests_v)) / len(tests_v), 3)
            row["text_letters"] = dict(sorted(Counter(L[p] if p is not None else "-" for p in text_preds).items()))
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)

    for v in args.variants.split(","):
        if v == "base":
            run(v, shots, tests)
        elif v in ("letter_text", "text_letter", "text"):
            run(v, shots, tests, style=v)
        elif v in ("all_a", "all_e"):
            target = L.index(v[-1])
            run(v, [(st, rotate(ch, k, target), rat, target) for st, ch, rat, k in shots], tests)
        elif v == "rev":
            run(v, shots[::-1], tests)
        elif v == "few3":
            run(v, shots[:3], tests)
        elif v == "shuffle":
            run(v, shots, shuffled(tests, 0))
        elif v == "direct":
            run(v, shots, tests, rationale=False)
        else:
            raise SystemExit(f"unknown variant {v!r} ({', '.join(VARIANTS)})")


if __name__ == "__main__":
    main()
