"""Rationale verifiers: the fifth plugin kind. Safe arithmetic, the built-in verifiers, and the loop using them."""

import inspect
import json
import random
import types
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import star_kit
from star_kit import arith
from star_kit.cli import main
from star_kit.records import Example
from star_kit.registry import Registry, load_registry
from star_kit.store import read_jsonl
from star_kit_plugins.arithmetic import FORMATS, place_value_rationale, verify_addition, verify_column
from star_kit_plugins.commonsense_qa import verify_explanation
from star_kit_plugins.gsm8k import verify_calculations


# -- safe arithmetic -------------------------------------------------------------------------------------------
def test_arith_values_exactly_and_refuses_what_is_not_arithmetic():
    assert arith.value("(300 + 200) + (40 + 80) + (7 + 5)") == 632
    assert arith.value("$1,080 / 3 x 2") == 720
    assert arith.value("10 / 4") == Fraction(5, 2)
    assert arith.value("2 * -3") == -6
    assert arith.value("0.1 + 0.2") == Fraction(3, 10)  # exact, no float error
    for bad in ("", "1 / 0", "(1 + 2", "1 +", "import os", "__import__('os')", "2 ** 3", "9" * 80,
                "99999999999 * " * 30 + "9", "a + b"):
        assert arith.value(bad) is None, bad


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/×x÷()$.,= abc\u2212", max_size=120))
def test_arith_and_verifiers_never_raise(text):
    arith.value(text)
    arith.chains(text)
    example = Example("x", "12 + 34 = ?", "46", {"a": 12, "b": 34})
    assert verify_addition(example, text) is None or isinstance(verify_addition(example, text), str)
    verify_calculations(example, text)
    verify_explanation(example, text)


def test_chains_find_calculations_in_prose():
    text = ("Mia has 12 - 5 = 7 pencils. At $3 each that is 72 x 3 = $216, so 10 / 3 = 3.33 each, "
            "and 1,080 + 20 = 1,100. The answer is 5.")
    assert arith.chains(text) == [["12 - 5", "7"], ["72 x 3", "$216"], ["10 / 3", "3.33"], ["1,080 + 20", "1,100"]]
    assert arith.matches_written(arith.value("10 / 3"), "3.33")
    assert not arith.matches_written(arith.value("10 / 3"), "3.4")


# -- the built-in verifiers -----------------------------------------------------------------------------------
def _addition(a, b):
    return Example("x", f"{a} + {b} = ?", str(a + b), {"a": a, "b": b})


def test_arithmetic_verifier_accepts_every_place_value_rationale():
    rng = random.Random(0)
    for _ in range(500):
        d = rng.randint(1, 8)
        a, b = rng.randint(0, 10**d - 1), rng.randint(0, 10**d - 1)
        assert verify_addition(_addition(a, b), place_value_rationale(a, b)) is None, (a, b)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_verifies_its_gold_rationale_at_every_digit_count_the_task_allows(fmt):
    """The widest sums (all nines) up to the 30 digits `digits` accepts: the expression bound of the calculator
    (arith.MAX_CHARS) must not reject what the task writes itself (it did from 17 digits at 400 characters)."""
    _, verifier, gold = FORMATS[fmt]
    verify = {"arithmetic": verify_addition, "arithmetic-column": verify_column}[verifier]
    for d in range(1, 31):
        a = b = 10**d - 1
        assert verify(_addition(a, b), gold(a, b)) is None, d


@pytest.mark.parametrize("rationale, reason", [
    ("347 + 285 = (347 + 285) = 632", "no place-value step"),  # the collapse seen with a hint
    ("347 + 285 = 632", "no place-value step"),
    ("", "does not write 347 + 285"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 110 + 12 = 632", "step 2: 500 + 110 + 12 is 622"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 = 632 + 0", "not the sum alone"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = five hundred = 632", "cannot read"),
    # the groups (a hint can show them) and then the answer: adding the groups is skipped
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 632", "is not the groups' sums (500 + 120 + 12)"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 132 = 632", "step 2: '500 + 132' is not the groups"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 620 + 12 = 632", "is not the groups' sums"),
    # the answer split by place value (the hint shows the answer), before or after the operands' split
    ("347 + 285 = (600 + 30) + (2 + 0) = 630 + 2 = 632", "step 1: '(600 + 30) + (2 + 0)' does not split 347 and 285"),
    ("347 + 285 = (600 + 30 + 2) = 632", "does not split 347 and 285 by place value"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = (600 + 30) + (2 + 0) = 630 + 2 = 632",
     "step 2: '(600 + 30) + (2 + 0)' is not the groups' sums"),
    # other kinds of numbers in the sums' step: rejected, never raised on
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500.0 + 120 + 12 = 632", "is not the groups' sums"),
    ("347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 + 0.0 = 632", "is not the groups' sums"),
])
def test_arithmetic_verifier_rejects_skipped_or_wrong_steps(rationale, reason):
    got = verify_addition(_addition(347, 285), rationale)
    assert got is not None and reason in got
    assert verify_addition(_addition(347, 285),
                           "347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 = 632") is None
    assert verify_addition(_addition(3, 5), "3 + 5 = 8") is None  # one digit: nothing to split


def test_gsm8k_verifier_checks_the_written_calculations():
    ex = Example("x", "q", "15")
    assert verify_calculations(ex, "She has 12 - 5 = 7, then 7 + 8 = 15 pencils.") is None
    assert verify_calculations(ex, "Each costs 10 / 3 = 3.33 dollars, so 3.33 * 3 = 9.99.") is None
    assert "12 - 5 = 8 is wrong" in verify_calculations(ex, "She has 12 - 5 = 8, then 8 + 7 = 15.")
    assert "wrong" in verify_calculations(ex, "At $3 each that is 72 x 3 = $206 in all, so 15.")
    assert "no reasoning" in verify_calculations(ex, "15")
    assert verify_calculations(ex, "There are fifteen pencils in the box.") is None  # nothing to compute


def test_commonsense_qa_verifier_needs_an_explanation_and_no_hint():
    ex = Example("x", "q", "b")
    assert verify_explanation(ex, "Letters are collected by the mail carrier from a mailbox.") is None
    assert "no explanation" in verify_explanation(ex, "")
    assert "hint" in verify_explanation(ex, "(b) mailbox (CORRECT) is where letters go.")


@pytest.mark.parametrize("task", ["arithmetic", "gsm8k", "commonsense_qa"])
def test_every_task_exemplar_passes_its_own_verifier(task):
    registry = load_registry()
    t = registry.create("tasks", task)
    verify = registry.verifier(t.verifier)
    for ex in t.fewshot():
        example = Example("x", ex.question, ex.answer)
        if task == "arithmetic":
            a, b = (int(p) for p in ex.question.split(" = ")[0].split(" + "))
            example = _addition(a, b)
        assert verify(example, ex.rationale) is None, ex.rationale


def test_commonsense_qa_drops_a_rationale_that_repeats_the_marker_alone():
    from star_kit.loop import build_training_set
    from star_kit.records import Sample

    registry = load_registry()
    task = registry.create("tasks", "commonsense_qa", data_dir=None)
    ex = Example("q1", "Where do you put a letter?\n(a) bank\n(b) mailbox\n(c) oven", "b")
    marker_only = Sample(ex.id, ex.question, " (b) mailbox (CORRECT). The answer is (b).", "b", "b", True, True)
    train, dropped = build_training_set(task, [ex], [], [marker_only])
    assert dropped == 1 and train == []


# -- the plugin kind ------------------------------------------------------------------------------------------
def test_verifiers_are_listed_and_a_raising_one_is_a_rejection(test_plugin, capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = {e["name"]: e["distribution"] for e in data["verifiers"]}
    assert names["arithmetic"] == names["gsm8k"] == names["commonsense_qa"] == "star-kit"
    assert names["even-examples"] == "(--plugin)"
    safe = load_registry().verifier("raising")
    assert safe(Example("x", "q", "1"), "text") == "verifier 'raising' raised ValueError: verifier bug"
    assert safe(Example("y", "q", "1"), "text") == "verifier 'raising' raised ValueError: verifier bug"
    [warning] = capsys.readouterr().err.splitlines()  # said once, naming the plugin and the line that raised
    import plugins_for_tests
    line = inspect.getsourcelines(plugins_for_tests.raising_verifier)[1] + 1
    assert warning.startswith("warning: verifier 'raising' (plugin ") and warning.endswith(
        f"raised ValueError: verifier bug (in raising_verifier() at plugins_for_tests.py:{line}); the rationales it "
        "raises on count as rejected")


def test_a_verifier_returning_a_bool_is_said_once_and_counts_as_a_rejection(capsys):
    registry = Registry()
    plugin = types.ModuleType("boolish")
    plugin.register_verifiers = star_kit.hookimpl(lambda register: register("boolish", lambda example, rationale: True))
    registry.add_plugin(plugin, "boolish", "dist-b")
    registry.collect()
    safe = registry.verifier("boolish")
    reason = "verifier 'boolish' returned True (bool), not None or a reason"  # what the record says, not "True"
    assert safe(Example("x", "q", "1"), "text") == reason == safe(Example("y", "q", "1"), "text")
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: verifier 'boolish' (plugin 'boolish', distribution 'dist-b') returned True "
                              "(bool), not None (accepted) or a string")


def test_a_verifier_returning_an_empty_reason_is_said_once_and_counts_as_a_rejection(capsys):
    registry = Registry()
    plugin = types.ModuleType("emptyish")
    plugin.register_verifiers = star_kit.hookimpl(lambda register: register("emptyish", lambda example, rationale: ""))
    registry.add_plugin(plugin, "emptyish", "dist-e")
    registry.collect()
    safe = registry.verifier("emptyish")
    assert safe(Example("x", "q", "1"), "text") == "rejected" == safe(Example("y", "q", "1"), "text")
    [warning] = capsys.readouterr().err.splitlines()
    assert warning == ("warning: verifier 'emptyish' (plugin 'emptyish', distribution 'dist-e') returned '' (an empty "
                       "reason), not None (accepted) or a reason to reject; such results count as rejected")


def test_an_extractor_that_runs_on_and_on_is_said_while_it_runs(capsys, monkeypatch):
    """A backtracking regular expression hangs a run inside one call: the watch says which plugin, once, while the
    call is still running (the call itself goes on)."""
    import time

    import star_kit.registry as registry_module

    monkeypatch.setattr(registry_module, "WATCH_AFTER_S", 0.2)
    monkeypatch.setattr(registry_module, "WATCH_POLL_S", 0.05)
    registry = Registry()

    def slow(text):
        time.sleep(1.5)
        return "1"

    plugin = types.ModuleType("slowish")
    plugin.register_extractors = star_kit.hookimpl(lambda register: register("slowish", slow))
    registry.add_plugin(plugin, "slowish", "dist-s")
    registry.collect()
    assert registry.extractor("slowish")("The answer is 1111!") == "1"
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: extractor 'slowish' (plugin 'slowish', distribution 'dist-s') has run for "
                              "0.2s on one text of 19 characters (a regular expression that backtracks?)")
    assert registry.problems == [warning[len("warning: "):]]


def test_unknown_verifier_exits_2(tiny_model, tmp_path, capsys):
    assert main(["run", "--model", tiny_model, "--out", str(tmp_path / "r"), "--verifier", "nope",
                 "--no-progress"]) == 2
    assert "unknown verifier 'nope'" in capsys.readouterr().err


def test_the_loop_trains_only_on_verified_rationales(tiny_model, tmp_path, test_plugin):
    """Real loop, real tiny model: the test verifier rejects odd-numbered examples; their samples are counted,
    marked in samples.jsonl with the reason, rationalized like failures, and never reach train.jsonl."""
    out = tmp_path / "run"
    assert main(["run", "--model", tiny_model, "--out", str(out), "--task", "lenient-arithmetic",
                 "--verifier", "even-examples", "--iterations", "1", "--train-size", "12", "--eval-size", "2",
                 "--base-steps", "1", "--no-progress", "--no-baseline", "--sampler-opt", "batch_size=4",
                 "--trainer-opt", "per_device_train_batch_size=2"]) == 0
    samples = read_jsonl(out / "iter_01" / "samples.jsonl")
    rationalized = read_jsonl(out / "iter_01" / "rationalized.jsonl")
    odd = {f"train-{i:05d}" for i in range(1, 12, 2)}
    for s in samples + rationalized:  # the lenient task accepts every answer; the verifier decides
        assert s["correct"] is True
        assert s["verified"] is (s["example_id"] not in odd)
        assert s["rejected"] == (f"odd example {s['example_id']}" if s["example_id"] in odd else None)
    assert {s["example_id"] for s in rationalized} == odd  # rejected questions are rationalized like failures
    row = read_jsonl(out / "metrics.jsonl")[-1]
    assert row["kept"] == 6 and row["unverified"] == 12 and row["rationalized"] == 0
    train = read_jsonl(out / "iter_01" / "train.jsonl")
    assert train and {t["example_id"] for t in train} <= {f"train-{i:05d}" for i in range(0, 12, 2)}


def test_k_samples_per_question_need_temperature_and_train_each_rationale_once(tiny_model, tmp_path, test_plugin,
                                                                                capsys):
    base = ["run", "--model", tiny_model, "--task", "lenient-arithmetic", "--iterations", "1", "--train-size", "4",
            "--eval-size", "2", "--base-steps", "1", "--no-progress", "--no-baseline",
            "--sampler-opt", "batch_size=4", "--trainer-opt", "per_device_train_batch_size=2"]
    assert main([*base, "--out", str(tmp_path / "greedy"), "--samples", "3"]) == 2
    assert "--samples 3 needs --temperature > 0" in capsys.readouterr().err
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--samples", "3", "--temperature", "1.0"]) == 0
    samples = read_jsonl(out / "iter_01" / "samples.jsonl")
    assert len(samples) == 12 and {s["example_id"] for s in samples} == {f"train-{i:05d}" for i in range(4)}
    train = read_jsonl(out / "iter_01" / "train.jsonl")
    pairs = [(t["prompt"], t["completion"]) for t in train]
    assert len(pairs) == len(set(pairs)) and len(pairs) > 4  # several distinct rationales per question


def test_gsm8k_verifier_rejects_calculations_it_cannot_compute():
    """A calculation the verifier cannot compute is not taken as right: a power, a division by zero, a number past
    its bounds; ordinary calculations beside a power-like word still pass."""
    from star_kit.records import Example
    from star_kit_plugins.gsm8k import verify_calculations

    example = Example(id="x", question="q", answer="5")
    for text, reason in [("She has 2^10 = 5 apples so", "a power"), ("So 9^9^9 = 3 here", "a power"),
                         ("The area is 5\u00b2 = 25 feet", "a power"), ("Then 1e400 + 1 = 2 in all", "a power"),
                         ("He computes 1/0 = 5 then", "division by zero"),
                         ("He adds " + "9" * 70 + " + 1 = 5 in all", "more than 60 digits")]:
        problem = verify_calculations(example, text)
        assert problem is not None and "cannot be checked" in problem and reason in problem, (text, problem)
    assert verify_calculations(example, "In 2e3 steps he ran 3 + 4 = 7 miles") is None
    assert verify_calculations(example, "So 3 x 4 = 12 and 12 - 2 = 10.") is None


def test_arithmetic_verifier_reads_the_groups_written_several_ways():
    """The step after the split must add each group; a zero group may be written or left out, and a split
    without parentheses groups its numbers by place value."""
    ok = ["347 + 285 = 300 + 200 + 40 + 80 + 7 + 5 = 500 + 120 + 12 = 632",
          "347 + 285 = (300 + 200) + (40 + 80) + (7 + 5) = 500 + 120 + 12 = 632 = 632"]
    for rationale in ok:
        assert verify_addition(_addition(347, 285), rationale) is None, rationale
    assert verify_addition(_addition(306, 598), "306 + 598 = (300 + 500) + (0 + 90) + (6 + 8) = 800 + 90 + 14 = 904") is None
    assert verify_addition(_addition(40, 50), "40 + 50 = (40 + 50) + (0 + 0) = 90 + 0 = 90") is None
    assert verify_addition(_addition(40, 50), "40 + 50 = (40 + 50) + (0 + 0) = 90") is None  # one group: its sum
    assert verify_addition(_addition(5000, 8786),
                           "5000 + 8786 = (5000 + 8000) + (0 + 700) + (0 + 80) + (0 + 6) = 13000 + 700 + 80 + 6 = 13786"
                           ) is None


def test_arithmetic_verifier_reasons_stay_short_on_hostile_steps():
    """A rejection reason quotes the step it rejects; a step of 100,000 characters is cut, not copied into
    samples.jsonl and the report."""
    example = _addition(12, 34)
    for rationale in ["12 + 34 = " + "(" * 100_000 + "10 + 30" + ")" * 100_000 + " = 46",
                      "12 + 34 = " + " + ".join(["1"] * 50_000) + " = 46",
                      "12 + 34 = (10 + 30) + (2 + 4) = " + " + ".join(["0"] * 50_000) + " + 46 = 46 + 0"]:
        reason = verify_addition(example, rationale)
        assert reason is not None and len(reason) < 200, reason[:300]


def test_gsm8k_verifier_reasons_stay_short_on_hostile_calculations():
    ex = Example("x", "q", "15")
    long_number = "1" * 55
    for rationale in [f"So we get 12 - 5 = {long_number}8 apples then done.",
                      f"So {' + '.join(['7'] * 100)} = 3 apples then done."]:
        reason = verify_calculations(ex, rationale)
        assert reason is not None and len(reason) < 300, reason[:400]
