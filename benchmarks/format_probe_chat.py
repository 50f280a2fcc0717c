"""Probe: does SmolLM2-135M-Instruct add multi-digit numbers when asked in its own chat format (its chat template,
no few-shot exemplars), where the task's few-shot "Q: ... A:" prompt gets no verified multi-digit rationale?
Held-out sums (the arithmetic task's eval split), 8 per digit count (1-4), greedy, 96 new tokens, two phrasings.
Counts a completion right when the sum appears in it as a number (lenient: any mention); prints per phrasing and
digit count [right, n] and one example completion, then one JSON line.
Run: python benchmarks/format_probe_chat.py   (docs/results/arithmetic_bootstrap.md, section 4)"""

from __future__ import annotations

import json
import os
import re

PHRASINGS = {"ask": "What is {a} + {b}?", "steps": "Add {a} and {b}. Show your work step by step."}


def main() -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from star_kit.models import resolve_model
    from star_kit.registry import load_registry

    path = resolve_model("smollm2-135m")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    report = {}
    for digits in (1, 2, 3, 4):
        task = load_registry().create("tasks", "arithmetic", digits=digits)
        sums = [tuple(int(x) for x in re.findall(r"\d+", e.question)[:2]) for e in task.examples("eval", 8, 0)]
        for name, phrasing in PHRASINGS.items():
            right, example = 0, None
            for a, b in sums:
                text = tok.apply_chat_template([{"role": "user", "content": phrasing.format(a=a, b=b)}],
                                               add_generation_prompt=True, tokenize=False)
                ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
                with torch.inference_mode():
                    out = model.generate(ids, max_new_tokens=96, do_sample=False)
                completion = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
                right += str(a + b) in re.findall(r"\d+", completion.replace(",", ""))
                example = example or f"{a} + {b}: {completion[:160]!r}"
            report.setdefault(name, {})[digits] = [right, len(sums)]
            print(name, digits, right, "of", len(sums), "|", example, flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
