"""Extractors and verifiers on hostile model output: time linear in the text (no regex that backtracks), never a
raise, and what they read in Unicode digits and powers.

Every extractor and verifier a built-in plugin registers is found through the registry, so a new one is covered
without touching this file. Each call on 100 kB of adversarial text must take under 50 ms (perf_counter; the
fastest of up to three tries, so that a busy machine does not fail it: a backtracking regex is slow every time),
under a 5 s SIGALRM stop so that a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from star_kit import arith
from star_kit.records import Example
from star_kit.registry import load_registry
from star_kit_plugins import arithmetic, commonsense_qa, gsm8k
from star_kit_plugins.arithmetic import extract_integer_answer, place_value_rationale, verify_addition
from star_kit_plugins.commonsense_qa import extract_choice, verify_explanation
from star_kit_plugins.gsm8k import extract_number, verify_calculations

ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 0.050
SIZE = 100_000
EXAMPLE = Example("redos", "12 + 34 = ?", "46", {"a": 12, "b": 34, "digits": 2})


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("redos_benchmark", ROOT / "benchmarks" / "redos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REDOS = _load_benchmark()
FAMILIES = REDOS.families(SIZE)


def _builtins() -> dict[str, object]:
    """'extractor NAME' / 'verifier NAME' -> a function of the text, for everything star-kit itself registers."""
    registry = load_registry()
    out: dict[str, object] = {}
    for kind in ("extractors", "verifiers"):
        for name in registry.names(kind):
            entry = registry.get(kind, name)
            if entry.distribution != "star-kit":
                continue
            fn = entry.obj
            out[f"{kind[:-1]} {name}"] = fn if kind == "extractors" else (lambda text, fn=fn: fn(EXAMPLE, text))
    return out


CALLS = _builtins()


class _Stopped(Exception):
    pass


@contextmanager
def _hard_stop(seconds: float):
    def stop(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _seconds(key: str, fn, text: str) -> tuple[float, object]:
    """The fastest of up to 3 calls (stopping at the first under the limit), and what the call returned."""
    best, out = float("inf"), None
    for _ in range(3):
        try:
            with _hard_stop(5.0):
                t0 = time.perf_counter()
                out = fn(text)
                elapsed = time.perf_counter() - t0
        except _Stopped:
            pytest.fail(f"{key} ran past 5 s on {text[:60]!r}... ({len(text)} characters)")
        best = min(best, elapsed)
        if best < LIMIT_S:
            break
    return best, out


def _check_all(text: str) -> None:
    for key, fn in CALLS.items():
        took, out = _seconds(key, fn, text)
        assert out is None or (isinstance(out, str) and out), (key, out)  # answers and reasons are non-empty
        assert took < LIMIT_S, f"{key}: {took * 1000:.0f} ms on {text[:60]!r}... ({len(text)} characters)"
    assert len(text) >= SIZE * 0.9


def test_the_registry_yields_every_builtin_extractor_and_verifier():
    for name in ("arithmetic", "gsm8k", "commonsense_qa"):
        assert f"extractor {name}" in CALLS and f"verifier {name}" in CALLS
    assert "extractor commonsense_qa_choice" in CALLS  # CommonsenseQA's answer_format=choice


@pytest.mark.parametrize("family", REDOS.FAMILIES)
def test_builtins_take_under_50ms_on_100kb_of_each_benchmark_family(family):
    _check_all(FAMILIES[family])


MOTIFS = ["1 = ", "24 = ", "1 ", " ", "\n", "7", "1,", "-1.", "(", ")", "(.", "( . ", "9^", "1e9", "=", "$", "x",
          "+", "answer:", "answer is ", "The answer is (", "#### ", "12 + 34 = ", "46 = ", "option ", "b)",
          "\uff17\uff12", "\u0667", "\u2212", "\u00b2", "\u00e9", "\u4e2d", "\U0001f600", "\u0301", "\t"]
PREFIXES = ["", "answer:", "The answer is ", "She sold 48 / 2 = 24 = ", "12 + 34 = ", "answer is: ", "$"]
SUFFIXES = ["", "x", "The answer is 72.", "= x", "1", ")", "\n", "(b)"]


def _build(prefix: str, a: str, b: str, suffix: str) -> str:
    """prefix + a*k + b*k + suffix, about 100 kB."""
    k = max(1, (SIZE - len(prefix) - len(suffix)) // (len(a) + len(b)))
    return prefix + a * k + b * k + suffix


_UNIT = st.one_of(st.lists(st.sampled_from(MOTIFS), min_size=1, max_size=4).map("".join),
                  st.text(min_size=1, max_size=6))
# The recipe, not the 100 kB text, is what hypothesis draws (and prints when it fails): looping output
# ("1 = 1 = ..."), long runs of spaces or digits, nesting ("((((...))))"), mixed Unicode.
RECIPES = st.tuples(st.sampled_from(PREFIXES), _UNIT, st.one_of(st.just(""), _UNIT), st.sampled_from(SUFFIXES))


@settings(max_examples=40, deadline=timedelta(seconds=3), suppress_health_check=[HealthCheck.too_slow])
@given(RECIPES)
def test_builtins_take_under_50ms_and_never_raise_on_100kb_of_hostile_text(recipe):
    _check_all(_build(*recipe))


def test_the_chain_finder_is_linear_on_every_family():
    for family, text in FAMILIES.items():
        took, _ = _seconds("arith.chains", arith.chains, text)
        assert took < 0.25, f"arith.chains: {took * 1000:.0f} ms on {family!r}"  # the regex it replaced: minutes


# -- the linear versions read exactly what the former regexes read ------------------------------------------------
_EXPR = r"[-\u2212(\$]?\s?[\d.(][\d\s.,$+\-*/×x÷()\u2212]*?"
FORMER_CHAIN = re.compile(
    rf"(?<![\w.,]){_EXPR}(?:\s*=\s*{_EXPR})+(?=\s*(?:$|[^\d\s.,$+\-*/×x÷()=\u2212]|[.,](?:\s|$)))")
FORMER_ANSWER = re.compile(r"answer is\s*:?\s*(-?)\s*(\d[\d,]*)", re.IGNORECASE)
FORMER_LETTER = re.compile(
    r"\s*[:\-]?\s*(?:(?:choice|option|letter)\s+)?"
    r"(?:\(\s*([a-e])\s*\)|\[\s*([a-e])\s*\]|([a-e])\s*\)|([a-e])(?=\s*(?:[.,;:!?]|\n|$)))",
    re.IGNORECASE,
)


def _former_has_operator(text: str) -> bool:
    try:
        return any(t in ("+", "-", "*", "/") for t in arith._tokens(text))
    except arith._Unreadable:
        return False


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789 =+-*/×x÷()$.,\u2212\na.(", max_size=28))
def test_the_chain_finder_finds_exactly_what_the_former_regex_found(text):
    with _hard_stop(5.0):
        former = [[seg.strip() for seg in m.group(0).split("=")] for m in FORMER_CHAIN.finditer(text)]
    assert arith.chains(text) == former
    assert arith.has_operator(text) == _former_has_operator(text)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet=" \n\t:-()[]abcdeBxchoicpntl.,;!?1", max_size=16), st.text(alphabet=" :-12,\n", max_size=8))
def test_the_possessive_extractor_regexes_match_what_the_former_ones_matched(after, digits):
    for text in (after, "answer is" + after):
        former, now = FORMER_LETTER.match(text), commonsense_qa._LETTER.match(text)
        assert (former and (former.span(), former.groups())) == (now and (now.span(), now.groups()))
    text = "The answer is" + digits
    assert FORMER_ANSWER.findall(text) == arithmetic._ANSWER.findall(text)


def _reference_extract_number(text: str) -> str | None:
    """extract_number without its speed-ups: every marker, every number."""
    text = arith.normalize_digits(text)
    markers = list(gsm8k._MARKER.finditer(text))
    if markers:
        m = gsm8k._NUMBER.search(text, markers[-1].end())
        if m:
            return None if arith.is_fragment(text, m.start(), m.end()) else gsm8k._canonical(m)
    numbers = list(gsm8k._NUMBER.finditer(text))
    last = numbers[-1] if numbers else None
    return gsm8k._canonical(last) if last and not arith.is_fragment(text, last.start(), last.end()) else None


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789 -\u2212$,.\n)a#:answer is", max_size=40))
def test_the_gsm8k_extractor_speed_ups_change_nothing(text):
    assert extract_number(text) == _reference_extract_number(text)


# -- looping rationales are rejected (this also bounds the verifiers' work) ----------------------------------------
def test_verifiers_reject_looping_rationales_and_keep_normal_ones():
    assert verify_calculations(EXAMPLE, "She has 12 - 5 = 7 pens and 7 x 3 = 21 pens. The answer is 21.") is None
    looping = "So 1 + 1 = 2. " * (gsm8k.MAX_CALCULATIONS + 1)
    assert "more than" in verify_calculations(EXAMPLE, looping)
    assert "more than" in verify_calculations(EXAMPLE, "She sold 48 / 2 = 24 = " + "24 = " * 300 + "The answer is 72.")
    assert verify_addition(EXAMPLE, place_value_rationale(12, 34)) is None
    assert "more than" in verify_addition(EXAMPLE, "12 + 34 = " + "46 = " * (arithmetic.MAX_STEPS + 1) + "46")


# -- Unicode digits and powers (README: "Extractors and verifiers") ------------------------------------------------
@pytest.mark.parametrize("text, number", [
    ("The answer is \uff17\uff12.", "72"),  # fullwidth
    ("The answer is \u0667\u0662.", "72"),  # Arabic-Indic
    ("The answer is \u096d\u0968", "72"),  # Devanagari
    ("The answer is \uff11\uff0c\uff10\uff18\uff10.", "1080"),  # fullwidth digits and comma
    ("The answer is \uff0d\uff13", "-3"),  # fullwidth minus
    ("\uff21\uff4e\uff53\uff57\uff45\uff52 \uff49\uff53 \uff15", "5"),  # a fullwidth marker
])
def test_unicode_digits_read_as_ascii(text, number):
    assert extract_number(text) == number
    assert extract_integer_answer(text) == number


@pytest.mark.parametrize("text", [
    "The answer is 1e999999", "The answer is 1E-5.", "The answer is 2.5e3", "The answer is 9^9^9",
    "The answer is 5 ^ 2", "The answer is 10\u00b2.", "#### 2^10", "The answer is \uff19^\uff19",
])
def test_a_number_written_as_a_power_is_no_answer(text):
    assert extract_number(text) is None
    assert extract_integer_answer(text) is None


def test_powers_without_a_marker_and_what_is_not_a_power():
    assert extract_number("so it is about 3e5") is None  # the last number is an exponent
    assert extract_number("x^2 then 9^9") is None
    assert extract_number("It costs 3 apples, so 2^3 = 8 in all") == "8"
    assert extract_number("The answer is **72**.") == "72"  # Markdown bold is not a power
    assert extract_number("The answer is 72 eggs") == "72" and extract_number("The answer is 72eggs") == "72"
    assert extract_number("3\u00b2 is nine") is None  # superscripts are not digits: '3²' is not 32
    assert extract_number("Pages 10-12") == "12"


def test_every_unicode_digit_becomes_its_ascii_digit():
    digits = re.findall(r"\d", "".join(map(chr, range(0x80, 0x30000))))  # every decimal digit outside ASCII
    assert len(digits) > 600
    assert arith.normalize_digits("".join(digits)) == "".join(str(int(d)) for d in digits)


def test_choices_and_verifiers_read_fullwidth_forms():
    assert extract_choice("The answer is \uff08\uff42\uff09.") == "b"
    assert extract_choice("\uff21\uff4e\uff53\uff57\uff45\uff52: \uff43") == "c"
    assert verify_calculations(EXAMPLE, "She has \uff17 + \uff15 = \uff11\uff12 apples in all.") is None
    assert "wrong" in verify_calculations(EXAMPLE, "She has \uff17 + \uff15 = \uff11\uff13 apples in all.")
    fullwidth = place_value_rationale(12, 34).translate({ord(str(d)): 0xFF10 + d for d in range(10)})
    assert verify_addition(EXAMPLE, fullwidth) is None
    assert verify_explanation(EXAMPLE, "Towels hang on racks so it is the rack \uff08\uff23\uff2f\uff32\uff32\uff25"
                                       "\uff23\uff34\uff09") == "the rationale mentions the hint"
    assert arith.normalize_digits("3\u00b2 \u0661\u0662 \u2212") == "3\u00b2 12 -"
    assert len(arith.normalize_digits("\uff11" * 10)) == 10


def test_the_benchmark_prints_a_row_per_builtin_and_a_json_line():
    proc = subprocess.run([sys.executable, "benchmarks/redos.py", "--size", "3000", "--timeout", "20"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(CALLS) <= set(data["ms"]) and data["raised"] == [] and data["slowest_ms"] is not None
