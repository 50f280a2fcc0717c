"""The GSM8K task (grade-school math word problems) and its answer extractor.

Prompt and target::

    Q: Leo saves $15 every week. He wants a bike that costs $120, and he already has $30. How many weeks ...?
    A: Leo still needs 120 - 30 = 90 dollars. Saving 15 dollars a week, he needs 90 / 15 = 6 weeks. The answer is 6.

Rationalization hint (after the question, in the exemplars too)::

    Q: <question> (Hint: the answer is 6.)

Answers are compared as canonical number strings: "1,080" -> "1080", "5.0" -> "5", "$12.50" -> "12.5",
"-3" -> "-3" (string operations only: nothing is evaluated and no unbounded int() is taken).

Data: ``ROOT/gsm8k/{train,test}.jsonl`` (fields ``question``, ``answer`` whose last line is ``#### N``) or the hub's
``openai/gsm8k`` (config ``main``). Split ``eval`` is the test split.
"""

from __future__ import annotations

import re

import star_kit
from star_kit import arith
from star_kit.data import HubSource, Row
from star_kit.errors import DataError
from star_kit.records import Example
from star_kit.task import DatasetTask
from star_kit_tasks import TASKS_DIR

SPLITS = {"train": "train", "eval": "test"}  # star-kit split -> file / hub split
SPLIT_ALIASES = {"test": "eval"}
HUB_PATH, HUB_CONFIG = "openai/gsm8k", "main"

_MINUS = "-\u2212"  # ASCII hyphen-minus and the Unicode minus sign
# A number: an optional sign where it cannot be a subtraction (touching the number, not right after a word or ')'),
# an optional '$' (a sign may follow it: '$-5'), digits with well-formed thousands commas, an optional decimal part.
_NUMBER = re.compile(
    r"(?:(?<![\w)])([" + _MINUS + r"]))?(?:\$\s?([" + _MINUS + r"])?)?"
    r"((?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
)
_MARKER = re.compile(r"answer\s+is\b|answer\s*:|####", re.IGNORECASE)


def canonical_number(digits: str, negative: bool = False) -> str:
    """'1,080' -> '1080', '05.50' -> '5.5', '5.0' -> '5', '-0' -> '0' (string operations only)."""
    whole, _, frac = digits.replace(",", "").partition(".")
    whole = whole.lstrip("0") or "0"
    frac = frac.rstrip("0")
    text = whole + ("." + frac if frac else "")
    return "-" + text if negative and text != "0" else text


def _canonical(match: re.Match) -> str:
    return canonical_number(match.group(3), negative=bool(match.group(1) or match.group(2)))


def canonical_answer(text: str) -> str | None:
    """A whole string that is one number ('$1,080.00', '-3', '12.50') in canonical form, else None."""
    if not isinstance(text, str):
        return None
    stripped = text.strip().rstrip(".").strip()
    m = _NUMBER.fullmatch(stripped)
    return _canonical(m) if m else None


def extract_number(text: str) -> str | None:
    """The number after the last "The answer is" / "####" marker, else the last number in the text, else None.

    Handles thousands commas, '$', negatives, decimals and a trailing period. Never raises.
    """
    if not isinstance(text, str):
        return None
    markers = list(_MARKER.finditer(text))
    if markers:
        m = _NUMBER.search(text, markers[-1].end())
        if m:
            return _canonical(m)
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return _canonical(last) if last else None


def parse_row(row: Row, split: str) -> Example:
    """One GSM8K record -> Example; the gold answer is the canonical number after '####'."""
    question = row.text("question")
    solution = row.text("answer")
    reasoning, sep, final = solution.rpartition("####")
    if not sep:
        raise DataError(f"{row.where}: field 'answer' has no final '#### N' line")
    answer = canonical_answer(final)
    if answer is None:
        raise DataError(f"{row.where}: the final answer {final.strip()!r} is not a number")
    return Example(id=f"{SPLITS[split]}-{row.index:05d}", question=question, answer=answer,
                   fields={"solution": reasoning.strip()})


class GSM8KTask(DatasetTask):
    """GSM8K: split ``train`` (7473) and ``eval`` (the test split, 1319)."""

    name = "gsm8k"
    verifier = "gsm8k"
    lm_eval_yaml = TASKS_DIR / "gsm8k" / "gsm8k.yaml"
    fewshot_file = TASKS_DIR / "gsm8k" / "fewshot.jsonl"

    local_files = {split: f"gsm8k/{name}.jsonl" for split, name in SPLITS.items()}
    hub_splits = {split: HubSource(HUB_PATH, HUB_CONFIG, name) for split, name in SPLITS.items()}
    split_aliases = SPLIT_ALIASES
    parse_row = staticmethod(parse_row)

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        return predicted is not None and canonical_answer(predicted) == canonical_answer(gold)


@star_kit.hookimpl
def register_tasks(register):
    register("gsm8k", GSM8KTask)


@star_kit.hookimpl
def register_extractors(register):
    register("gsm8k", extract_number)


def verify_calculations(example: Example, rationale: str) -> str | None:
    """Every calculation a GSM8K rationale writes ('12 - 5 = 7', '$3 x 24 = $72', '10 / 3 = 3.33') is computed
    exactly (parsed, never evaluated as code) and must hold, up to the rounding its decimals show. A rationale
    without any words of reasoning is rejected. None = accepted, else the first wrong calculation."""
    if len(rationale.split()) < 3:
        return f"no reasoning ({len(rationale.split())} words)"
    for segments in arith.chains(rationale):
        for left, right in zip(segments, segments[1:]):
            if not arith.has_operator(left):
                continue  # "x = 5 + 3" or "7 = 7": nothing computed on this side
            got = arith.value(left)
            if got is None:
                continue  # not arithmetic we can read (e.g. "2 x" as a word); not counted against it
            if not arith.has_operator(right):  # "= 7", "= $72", "= 3.33": a written result, maybe rounded
                if not arith.matches_written(got, right):
                    return f"{left} = {right} is wrong ({left} is {float(got):g})"
                continue
            shown = arith.value(right)  # "= 6 + 1": another expression
            if shown is not None and shown != got:
                return f"{left} = {right} is wrong"
    return None


@star_kit.hookimpl
def register_verifiers(register):
    register("gsm8k", verify_calculations)
