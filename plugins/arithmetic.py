"""The n-digit addition task and its answer extractor.

Rationale formats (task option ``format``; each has its exemplars and its verifier, which checks every step)::

    place_value  347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 = 632. The answer is 632.
                 (the default: the only format measured that SmolLM2-135M starts few-shot, on 1-digit sums)
    column       347 + 285: 7+5=12, 4+8+1=13, 3+2+1=6. The answer is 632.
                 (right to left, one column per step, the carry written as "+1"; the same steps at every length;
                 SmolLM2-135M cannot start it few-shot, even on 1-digit sums)

docs/results/arithmetic_formats.md has the measurements behind the default.
"""

from __future__ import annotations

import random
import re
from typing import Any

import star_kit
from star_kit import arith
from star_kit.arith import canonical_integer
from star_kit.errors import StarKitError
from star_kit.records import Example
from star_kit.task import FewShotTask, held_out, parse_digits
from star_kit_tasks import TASKS_DIR

# Possessive quantifiers: the same matches as r"answer is\s*:?\s*(-?)\s*(\d[\d,]*)", in linear time (that one
# was cubic in a run of spaces after "answer is").
_ANSWER = re.compile(r"answer is\s*+:?\s*+(-?)\s*+(\d[\d,]*+)", re.IGNORECASE)


MAX_STEPS = 64  # '=' steps verify_addition reads; the place-value rationale writes 3


def extract_integer_answer(text: str) -> str | None:
    """The integer after the last "the answer is", or None.

    Unicode digits count as their ASCII digits ("７２" -> "72", also a fullwidth or Unicode minus sign). An
    integer that is the base of a power ("1e999999", "9^9^9", "10²") or the start of a decimal, a fraction or a
    hexadecimal number ("3.9", "1/2", "0x1F") is None, not its first digits. Never raises; linear time in the
    text.
    """
    if not isinstance(text, str):
        return None
    text = arith.normalize_digits(text)
    last = arith.last_match(_ANSWER, text)
    if last is None or arith.is_fragment(text, last.start(2), last.end(2)):
        return None
    return canonical_integer(last.group(1), last.group(2))


def place_groups(a: int, b: int, width: int = 1) -> list[tuple[int, int]]:
    """The place-value groups of a + b, highest place first, at least ``width`` of them: 47, 85 -> [(40, 80),
    (7, 5)]; 306, 598 -> [(300, 500), (0, 90), (6, 8)]. The one place-value split of the rationale, its hint and
    its verifier."""
    width = max(width, len(str(a)), len(str(b)))
    return [(a // 10**p % 10 * 10**p, b // 10**p % 10 * 10**p) for p in range(width - 1, -1, -1)]


def place_value_rationale(a: int, b: int, pad: bool = False) -> str:
    """'47 + 85 = (40 + 80) + (7 + 5) = 120 + 12 = 132'; one-digit sums are written directly ('6 + 7 = 13'), or
    with ``pad`` with the same steps as two-digit ones ('6 + 7 = (0 + 0) + (6 + 7) = 0 + 13 = 13')."""
    if max(len(str(a)), len(str(b))) == 1 and not pad:
        return f"{a} + {b} = {a + b}"
    groups = place_groups(a, b, width=2)
    return (f"{a} + {b} = {' + '.join(f'({da} + {db})' for da, db in groups)} = "
            f"{' + '.join(str(da + db) for da, db in groups)} = {a + b}")


def column_rationale(a: int, b: int) -> str:
    """'47 + 85: 7+5=12, 4+8+1=13' -- one step per column, right to left, the carry in as '+1'; a missing digit
    (operands of different lengths) is written as 0."""
    width = max(len(str(a)), len(str(b)))
    steps, carry = [], 0
    for place in range(width):
        da, db = a // 10**place % 10, b // 10**place % 10
        total = da + db + carry
        steps.append(f"{da}+{db}" + ("+1" if carry else "") + f"={total}")
        carry = total // 10
    return f"{a} + {b}: " + ", ".join(steps)


# One column step: 'x+y=z' or 'x+y+1=z' (spaces allowed); possessive, so linear on any run of spaces.
_COLUMN_STEP = re.compile(r"(\d)\s*+\+\s*+(\d)\s*+(?:\+\s*+(1)\s*+)?=\s*+(\d{1,2})")


def verify_column(example: Example, rationale: str) -> str | None:
    """Every step of a column rationale ``a + b: x+y=z, x+y+1=z, ...``: one step per column, right to left;
    x and y are that column's digits of a and b (0 past an operand's length); the carry '+1' is written exactly
    when the previous column reached 10; z = x + y (+ 1). The steps then determine a + b, so a right final
    answer cannot be reached by skipping them. None = accepted, else why not. Linear time."""
    a, b = example.fields.get("a"), example.fields.get("b")
    if not isinstance(a, int) or not isinstance(b, int) or a < 0 or b < 0:
        return "the example has no non-negative operands a, b"
    rationale = arith.normalize_digits(rationale)
    head = f"{a} + {b}:"
    start = rationale.find(head)
    if start < 0:
        return f"the rationale does not write {head}"
    body = rationale[start + len(head):].strip().rstrip(".").strip()
    width = max(len(str(a)), len(str(b)))
    if body.count(",") >= width:
        return f"more than {width} column steps"
    steps = [step.strip() for step in body.split(",")]
    if len(steps) != width:
        return f"{len(steps)} column steps, expected {width}"
    carry = 0
    for place, step in enumerate(steps):
        m = _COLUMN_STEP.fullmatch(step)
        if m is None:
            return f"column {place + 1}: cannot read {step[:40]!r}"
        x, y, z = int(m.group(1)), int(m.group(2)), int(m.group(4))
        c = 1 if m.group(3) else 0
        da, db = a // 10**place % 10, b // 10**place % 10
        if (x, y) != (da, db):
            return f"column {place + 1}: {x}+{y}, but the digits are {da} and {db}"
        if c != carry:
            return f"column {place + 1}: the carry is {carry}, the step writes {c}"
        if z != x + y + c:
            return f"column {place + 1}: {step} is wrong ({x + y + c})"
        carry = z // 10
    return None


def verify_addition(example: Example, rationale: str) -> str | None:
    """Every step of an addition rationale: ``a + b = ... = s`` restates the question, every segment equals
    a + b (computed exactly), the last is the sum alone, and for operands of two or more digits one segment
    splits them by place value (each term a single digit times a power of ten) and the next adds each group
    (``(300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12``); the split's numbers are a's and b's place values,
    not the answer's. Catches "a + b = s", "a + b = (a + b) = s", "a + b = (groups) = s" (the groups copied from a
    hint, the answer too) and "a + b = (100 + 30) + (2 + 0) = 130 + 2 = s" (the answer split), which reach the
    answer without reasoning. More than ``MAX_STEPS`` steps is a looping rationale, rejected (this also bounds
    the work). Unicode digits count as ASCII. None = accepted, else why not. Linear time in the rationale."""
    a, b = example.fields.get("a"), example.fields.get("b")
    if not isinstance(a, int) or not isinstance(b, int):
        return "the example has no operands a, b"
    rationale = arith.normalize_digits(rationale)
    start = rationale.find(f"{a} + {b}")
    if start < 0:
        return f"the rationale does not write {a} + {b}"
    rest = rationale[start:].strip().rstrip(".")
    if rest.count("=") > MAX_STEPS:
        return f"more than {MAX_STEPS} steps (a looping rationale)"
    segments = [seg.strip() for seg in rest.split("=")]
    if len(segments) < 2:
        return "no steps after the question"
    total = a + b
    for i, seg in enumerate(segments[1:], 1):
        got = arith.value(seg)
        if got is None:
            return f"step {i}: cannot read {arith.short(seg)!r}"
        if got != total:
            return f"step {i}: {arith.short(seg)} is {arith.short(str(got))}, not {total}"
    if arith.numbers(segments[-1]) != [str(total)]:
        return f"the last step {arith.short(segments[-1])!r} is not the sum alone"
    if max(len(str(a)), len(str(b))) == 1:
        return None  # one digit: nothing to split
    # The split must be of a and b (each number one of their place values: not the answer's, which a hint shows),
    # and the next step must add each place: 347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12.
    groups = place_groups(a, b)
    places = sorted(n for group in groups for n in group if n)
    sums = [da + db for da, db in groups if da + db]
    splits = [i for i, seg in enumerate(segments[1:-1], 1) if _place_value_split(seg)]
    of_operands = [i for i in splits if _nonzero(arith.numbers(segments[i])) == places]
    if not of_operands:
        if splits:
            return f"step {splits[0]}: {arith.short(segments[splits[0]])!r} does not split {a} and {b} by place value"
        return "no place-value step (the rationale skips the reasoning)"
    for i in of_operands:
        if _nonzero(arith.numbers(segments[i + 1])) == sorted(sums):
            return None
    i = of_operands[0]
    return (f"step {i + 1}: {arith.short(segments[i + 1])!r} is not the groups' sums "
            f"({' + '.join(map(str, sums))}): the rationale skips adding them")


def _place_value_split(segment: str) -> bool:
    """Whether every number in ``segment`` is one digit times a power of ten, and there are several."""
    nums = arith.numbers(segment)
    return bool(nums) and len(nums) > 2 and all(len(n.rstrip("0")) <= 1 and "." not in n for n in nums)


def _nonzero(numbers: list[str] | None) -> list[int] | None:
    """The nonzero whole numbers of a step, sorted; None when it writes another kind of number ('120.0')."""
    if numbers is None or not all(n.isdigit() for n in numbers):
        return None
    return sorted(int(n) for n in numbers if n.strip("0"))


FORMATS = {  # format -> (exemplar file, verifier name, gold rationale)
    "column": ("fewshot_column.jsonl", "arithmetic-column", column_rationale),
    "place_value": ("fewshot.jsonl", "arithmetic", place_value_rationale),
    "place_value_padded": ("fewshot_padded.jsonl", "arithmetic",
                           lambda a, b: place_value_rationale(a, b, pad=True)),
}
DEFAULT_FORMAT = "place_value"
HINT_STYLES = ("answer", "groups")  # the rationalization hint: the paper's (the answer), or also the first step


class ArithmeticTask(FewShotTask):
    """Seeded n-digit addition. Options: ``digits`` (train, default '1-5'; 1 to 30), ``eval_digits`` (default:
    digits), ``format`` (the rationale format and its exemplars and verifier: place_value, the default;
    place_value_padded, whose 1-digit exemplar shows the same steps; column), ``hint_style`` (the rationalization
    hint: answer, the paper's, or groups, also the place-value split), ``rationales`` (False: direct answers, the
    baseline)."""

    name = "arithmetic"
    verifier = "arithmetic"
    lm_eval_yaml = TASKS_DIR / "arithmetic" / "arithmetic.yaml"
    fewshot_file = TASKS_DIR / "arithmetic" / "fewshot.jsonl"

    def __init__(self, data_dir: str | None = None, digits: Any = "1-5", eval_digits: Any = None,
                 rationales: bool = True, format: str = DEFAULT_FORMAT, hint_style: str = "answer") -> None:
        if format not in FORMATS:
            raise StarKitError(f"task option format={format!r}: expected one of {', '.join(FORMATS)}", 2)
        if hint_style not in HINT_STYLES:
            raise StarKitError(f"task option hint_style={hint_style!r}: expected one of {', '.join(HINT_STYLES)}", 2)
        if hint_style == "groups" and format == "column":
            raise StarKitError("task option hint_style=groups shows the place-value groups: it is for the "
                               "place_value formats, not format=column", 2)
        self.format, self.hint_style = format, hint_style
        exemplars, self.verifier, self.gold_rationale = FORMATS[format]
        self.fewshot_file = TASKS_DIR / "arithmetic" / exemplars
        super().__init__(data_dir=data_dir, rationales=rationales)
        self.digits = parse_digits(digits, "digits")
        self.eval_digits = parse_digits(eval_digits, "eval_digits") if eval_digits is not None else self.digits
        needed = self.token_budget()
        if needed > self.max_new_tokens:  # sampling and lm-eval's evaluation read the same budget
            self.max_new_tokens = needed
            self.lm_eval_config["generation_kwargs"]["max_gen_toks"] = needed

    def token_budget(self) -> int:
        """New tokens the longest gold completion of this task's sums needs (the widest operands, all nines:
        every group and partial sum at its widest), counted as its characters, which no byte-level tokenizer
        exceeds on ASCII text, plus a margin. The YAML's ``max_gen_toks`` is the budget of the default digits;
        wider sums raise it, so that a right rationale of the longest sums is never cut before its answer
        (a cut one counts as no answer: STaR could never keep one)."""
        if not self.rationales:
            return 0  # direct answers: the YAML's budget
        widest = max([*self.digits, *self.eval_digits])
        a = b = 10**widest - 1
        return len(self.target(self.gold_rationale(a, b), str(a + b))) + 8

    def hint_text(self, answer: str, fields: dict[str, Any]) -> str:
        """The paper's hint, the answer (``hint_style=answer``); with ``groups`` also the sum's place-value
        groups, the first step of a place-value rationale ('(Hint: 47 + 85 = (40 + 80) + (7 + 5); the answer is
        132.)'), for sums of two digits or more. Measured: SmolLM2-135M does not add the groups it is shown, so no
        multi-digit rationale it writes with this hint passes the verifier (docs/results/arithmetic_bootstrap.md,
        section 3)."""
        a, b = fields.get("a"), fields.get("b")
        if self.hint_style != "groups" or not isinstance(a, int) or not isinstance(b, int) or max(a, b) < 10:
            return super().hint_text(answer, fields)
        groups = " + ".join(f"({da} + {db})" for da, db in place_groups(a, b))
        return f"(Hint: {a} + {b} = {groups}; the answer is {answer}.)"

    def exemplar_fields(self, exemplar) -> dict[str, Any]:
        operands = [int(t) for t in exemplar.question.replace("=", " ").replace("?", " ").split("+")
                    if t.strip().isdigit()]
        return {"a": operands[0], "b": operands[1]} if len(operands) == 2 else {}

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
            for _ in range(10_000):  # a sum and its swap are one problem, in one split only
                a, b = rng.randint(lo, 10**d - 1), rng.randint(lo, 10**d - 1)
                if held_out(f"{min(a, b)} + {max(a, b)}") == (split == "eval"):
                    break
            else:  # not for addition (every digit count has sums on both sides); a guard for edits of the rule
                raise StarKitError(f"task 'arithmetic': no {d}-digit sum falls in the {split} split", 2)
            out.append(Example(id=f"{split}-{i:05d}", question=f"{a} + {b} = ?", answer=str(a + b),
                               fields={"a": a, "b": b, "digits": d}))
        return out


@star_kit.hookimpl
def register_tasks(register):
    register("arithmetic", ArithmeticTask)


@star_kit.hookimpl
def register_extractors(register):
    register("arithmetic", extract_integer_answer)


@star_kit.hookimpl
def register_verifiers(register):
    register("arithmetic", verify_addition)
    register("arithmetic-column", verify_column)
