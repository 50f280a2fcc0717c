"""The GSM8K task (grade-school math word problems) and its answer extractor.

Prompt and target::

    Q: Leo saves $15 every week. He wants a bike that costs $120, and he already has $30. How many weeks ...?
    A: Leo still needs 120 - 30 = 90 dollars. Saving 15 dollars a week, he needs 90 / 15 = 6 weeks. The answer is 6.

Rationalization hint (after the question, in the exemplars too)::

    Q: <question> (Hint: the answer is 6.)

Answers are compared as canonical number strings: "1,080" -> "1080", "5.0" -> "5", "$12.50" -> "12.5",
"-3" -> "-3" (string operations only: nothing is evaluated and no unbounded int() is taken). The extractor and the
verifier first make Unicode digits ASCII ("７２" -> "72", ``arith.normalize_digits``); a number written as a power
("1e999999", "9^9^9", "10²") is no answer, never its first digits. Both run in time linear in the text.

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
MAX_CALCULATIONS = 256  # '=' signs in a rationale the verifier reads; one with more is looping, and rejected


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

    Handles thousands commas, '$', negatives, decimals and a trailing period. Unicode digits count as their ASCII
    digits ("７２" -> "72"). A number that is part of a power ("1e999999", "9^9^9", "10²") or of a fraction or a
    malformed number ("1/2", "1,2,3", "1.5.2") is None, not its first digits; so is a text without a marker that
    ends in more than ``MAX_FRAGMENTS`` number fragments with no space or word between them ("1,1,1,..."). Never
    raises; linear time in the text.
    """
    if not isinstance(text, str):
        return None
    text = arith.normalize_digits(text)
    marker = arith.last_match(_MARKER, text)
    if marker:
        m = _first_number(text, marker.end())
        if m:
            return None if arith.is_fragment(text, m.start(), m.end()) else _canonical(m)
    last = _last_number(text)
    return _canonical(last) if last and not arith.is_fragment(text, last.start(), last.end()) else None


# Speed-ups that give exactly _NUMBER.search / the last of _NUMBER.finditer without trying _NUMBER at every
# position of a long text (about a microsecond each):
# * every match holds a digit and starts at most 5 characters before its first one ('-$ -.5'), so the first
#   match after ``pos`` is the first match from 5 characters before the first digit after ``pos``;
# * no match holds or starts at a "break" (a character other than a sign, '$', a digit, ',' or '.', or a space
#   not right after '$'), so after a break the matches are those of a fresh search from there: the last match
#   is the last one after the last break before the last digit, and it ends right after that digit.
# Only one case stays costly, and it is refused: a break-free run of more than MAX_FRAGMENTS separators
# ('1,1,1,...', '-1.-1.-1...') at the end of a text without a marker holds as many matches; that is no answer.
MAX_FRAGMENTS = 1000
_DIGIT = re.compile(r"\d")
_BREAK_REVERSED = re.compile(r"[^-\u2212$\s\d,.]|\s(?!\$)")  # on the reversed text: '\s(?!\$)' is a space not after '$'


def _first_number(text: str, pos: int) -> re.Match | None:
    digit = _DIGIT.search(text, pos)
    return _NUMBER.search(text, max(pos, digit.start() - 5)) if digit else None


def _last_number(text: str) -> re.Match | None:
    n, reverse = len(text), text[::-1]
    digit = _DIGIT.search(reverse)
    if digit is None:
        return None
    brk = _BREAK_REVERSED.search(reverse, digit.end())
    start, end = (0 if brk is None else n - brk.start()), n - digit.start()  # text[end - 1] is the last digit
    run = text[start:end]
    if sum(run.count(c) for c in "-\u2212$,.") > MAX_FRAGMENTS:
        return None
    return arith.last_match(_NUMBER, text, start, min(n, end + 1))  # + 1: the lookahead after ',ddd' sees it


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
    without any words of reasoning is rejected, and so is one with more than ``MAX_CALCULATIONS`` '=' signs
    (a looping model; this also bounds the work). Unicode digits count as ASCII. None = accepted, else the first
    wrong calculation. Linear time in the rationale."""
    words = len(rationale.split())
    if words < 3:
        return f"no reasoning ({words} words)"
    rationale = arith.normalize_digits(rationale)
    if rationale.count("=") > MAX_CALCULATIONS:
        return f"more than {MAX_CALCULATIONS} '=' (a looping rationale)"
    power = arith.power_in_calculation(rationale)
    if power is not None:
        return f"{arith.short(power)} = ... cannot be checked (a power)"
    for segments in arith.iter_chains(rationale):
        for left, right in zip(segments, segments[1:]):
            if len(left) > arith.MAX_CHARS or not arith.has_operator(left):
                continue  # "x = 5 + 3" or "7 = 7": nothing computed on this side
            got, problem = arith.evaluate(left)
            if problem is not None:
                return f"{arith.short(left)} = {arith.short(right)} cannot be checked ({problem})"
            if got is None:
                continue  # not arithmetic we can read (e.g. "2 x" as a word); not counted against it
            if not arith.has_operator(right):  # "= 7", "= $72", "= 3.33": a written result, maybe rounded
                if not arith.matches_written(got, right):
                    shown = arith.short(left)
                    return f"{shown} = {arith.short(right)} is wrong ({shown} is {float(got):g})"
                continue
            shown = arith.value(right)  # "= 6 + 1": another expression
            if shown is not None and shown != got:
                return f"{arith.short(left)} = {arith.short(right)} is wrong"
    return None


@star_kit.hookimpl
def register_verifiers(register):
    register("gsm8k", verify_calculations)
