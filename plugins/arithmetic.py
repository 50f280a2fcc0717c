"""The n-digit addition task and its answer extractor.

Rationale format (place value, the one SmolLM2-135M follows best of those measured)::

    347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 = 632. The answer is 632.
"""

from __future__ import annotations

import random
import re
from typing import Any

import star_kit
from star_kit.errors import StarKitError
from star_kit.records import Example
from star_kit.task import FewShotTask
from star_kit_tasks import TASKS_DIR

_ANSWER = re.compile(r"answer is\s*:?\s*(-?)\s*(\d[\d,]*)", re.IGNORECASE)


def canonical_integer(sign: str, digits: str) -> str:
    """'0,1,080' -> '1080'; never calls int() (no size limit, nothing evaluated)."""
    digits = digits.replace(",", "").lstrip("0") or "0"
    return ("-" + digits) if sign == "-" and digits != "0" else digits


def extract_integer_answer(text: str) -> str | None:
    """The integer after the last "the answer is", or None."""
    if not isinstance(text, str):
        return None
    matches = _ANSWER.findall(text)
    if not matches:
        return None
    sign, digits = matches[-1]
    return canonical_integer(sign, digits)


def place_value_rationale(a: int, b: int) -> str:
    """'47 + 85 = (40 + 80) + (7 + 5) = 120 + 12 = 132' (one-digit sums are written directly)."""
    width = max(len(str(a)), len(str(b)))
    if width == 1:
        return f"{a} + {b} = {a + b}"
    groups, partials = [], []
    for place in range(width - 1, -1, -1):
        unit = 10**place
        da, db = (a // unit % 10) * unit, (b // unit % 10) * unit
        groups.append(f"({da} + {db})")
        partials.append(str(da + db))
    return f"{a} + {b} = {' + '.join(groups)} = {' + '.join(partials)} = {a + b}"


def parse_digits(spec: Any, key: str) -> list[int]:
    """'1-5' / '3' / [1, 2] -> sorted digit counts."""
    try:
        if isinstance(spec, int):
            values = [spec]
        elif isinstance(spec, (list, tuple)):
            values = [int(v) for v in spec]
        else:
            text = str(spec).strip()
            if "-" in text:
                lo, hi = (int(p) for p in text.split("-", 1))
                values = list(range(lo, hi + 1))
            else:
                values = [int(p) for p in text.split(",")]
    except ValueError:
        raise StarKitError(f"task option {key}={spec!r}: expected a digit range like '1-5'", 2) from None
    if not values or min(values) < 1 or max(values) > 30:
        raise StarKitError(f"task option {key}={spec!r}: digit counts must be between 1 and 30", 2)
    return sorted(set(values))


class ArithmeticTask(FewShotTask):
    """Seeded n-digit addition. Options: ``digits`` (train, default '1-5'), ``eval_digits`` (default: digits)."""

    name = "arithmetic"
    lm_eval_yaml = TASKS_DIR / "arithmetic" / "arithmetic.yaml"
    fewshot_file = TASKS_DIR / "arithmetic" / "fewshot.jsonl"

    def __init__(self, data_dir: str | None = None, digits: Any = "1-5", eval_digits: Any = None) -> None:
        super().__init__(data_dir=data_dir)
        self.digits = parse_digits(digits, "digits")
        self.eval_digits = parse_digits(eval_digits, "eval_digits") if eval_digits is not None else self.digits

    def examples(self, split: str, n: int | None, seed: int) -> list[Example]:
        if split not in ("train", "eval"):
            raise StarKitError(f"task 'arithmetic': unknown split {split!r} (train, eval)", 2)
        n = 1000 if n is None else n
        digits = self.digits if split == "train" else self.eval_digits
        rng = random.Random(f"arithmetic:{split}:{seed}")
        out = []
        for i in range(n):
            d = digits[i % len(digits)]  # balanced over digit counts
            lo = 0 if d == 1 else 10 ** (d - 1)
            a, b = rng.randint(lo, 10**d - 1), rng.randint(lo, 10**d - 1)
            out.append(Example(id=f"{split}-{i:05d}", question=f"{a} + {b} = ?", answer=str(a + b),
                               fields={"a": a, "b": b, "digits": d}))
        return out


@star_kit.hookimpl
def register_tasks(register):
    register("arithmetic", ArithmeticTask)


@star_kit.hookimpl
def register_extractors(register):
    register("arithmetic", extract_integer_answer)
