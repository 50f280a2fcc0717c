"""The ``multiply`` task and its ``multiply`` answer extractor, registered through the ``star_kit`` entry point.

Rationale format (the second factor split by place value, zero digits skipped)::

    23 * 47 = 23 * 40 + 23 * 7 = 920 + 161 = 1081. The answer is 1081.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import star_kit
from star_kit.arith import canonical_integer
from star_kit.errors import StarKitError
from star_kit.records import Example
from star_kit.task import FewShotTask, held_out, parse_digits

HERE = Path(__file__).resolve().parent
_ANSWER = re.compile(r"answer is\s*+:?\s*+(-?)\s*+([0-9][0-9,]*+)", re.IGNORECASE)  # possessive: linear time


def extract_product(text: str) -> str | None:
    """The ASCII integer after the last "the answer is" ('1,081' -> '1081'), or None; never raises, no int()."""
    if not isinstance(text, str):
        return None
    matches = _ANSWER.findall(text)
    if not matches:
        return None
    sign, digits = matches[-1]
    return canonical_integer(sign, digits)


def multiply_rationale(a: int, b: int) -> str:
    """'23 * 47 = 23 * 40 + 23 * 7 = 920 + 161 = 1081'; a single non-zero digit in b is written directly."""
    parts = [int(d) * 10**place for place, d in enumerate(reversed(str(b))) if d != "0"][::-1]
    if len(parts) <= 1:
        return f"{a} * {b} = {a * b}"
    terms = " + ".join(f"{a} * {p}" for p in parts)
    partials = " + ".join(str(a * p) for p in parts)
    return f"{a} * {b} = {terms} = {partials} = {a * b}"


class MultiplyTask(FewShotTask):
    """Seeded multiplication of two d-digit numbers. Options: ``digits`` (train, default '1-3'),
    ``eval_digits`` (default: digits), ``rationales`` (False: direct answers, the baseline); one-digit factors
    are 2-9."""

    name = "multiply"
    lm_eval_yaml = HERE / "multiply.yaml"
    fewshot_file = HERE / "fewshot.jsonl"

    def __init__(self, data_dir: str | None = None, digits: Any = "1-3", eval_digits: Any = None,
                 rationales: bool = True) -> None:
        super().__init__(data_dir=data_dir, rationales=rationales)  # rationales=False: the direct-answer baseline
        self.digits = parse_digits(digits, "digits")
        self.eval_digits = parse_digits(eval_digits, "eval_digits") if eval_digits is not None else self.digits

    def examples(self, split: str, n: int | None, seed: int) -> list[Example]:
        if split not in ("train", "eval"):
            raise StarKitError(f"task 'multiply': unknown split {split!r} (train, eval)", 2)
        n = 1000 if n is None else n
        digits = self.digits if split == "train" else self.eval_digits
        rng = random.Random(f"multiply:{split}:{seed}")
        out = []
        for i in range(n):
            d = digits[i % len(digits)]  # balanced over digit counts
            lo = 2 if d == 1 else 10 ** (d - 1)
            for _ in range(10_000):  # the two splits never share a problem (a product and its swap are one)
                a, b = rng.randint(lo, 10**d - 1), rng.randint(lo, 10**d - 1)
                if held_out(f"{min(a, b)} * {max(a, b)}") == (split == "eval"):
                    break
            else:
                raise StarKitError(f"task 'multiply': no {d}-digit product falls in the {split} split", 2)
            out.append(Example(id=f"{split}-{i:05d}", question=f"{a} * {b} = ?", answer=str(a * b),
                               fields={"a": a, "b": b, "digits": d}))
        return out


@star_kit.hookimpl
def register_tasks(register):
    register("multiply", MultiplyTask)


@star_kit.hookimpl
def register_extractors(register):
    register("multiply", extract_product)
