"""The arithmetic task and its extractor."""

from hypothesis import given, settings
from hypothesis import strategies as st

from star_kit.registry import load_registry
import pytest

from star_kit.errors import StarKitError
from star_kit.records import Example
from star_kit_plugins.arithmetic import (ArithmeticTask, column_rationale, extract_integer_answer,
                                         place_value_rationale, verify_addition, verify_column)


def test_extractor_reads_the_answer_phrase():
    assert extract_integer_answer(" 47 + 85 = 132. The answer is 132.") == "132"
    assert extract_integer_answer("The answer is 1,080.") == "1080"
    assert extract_integer_answer("the answer is -0042") == "-42"
    assert extract_integer_answer("The answer is 5. Wait, the answer is 7.") == "7"
    assert extract_integer_answer("answer is: 12") == "12"


def test_extractor_does_not_read_the_first_digits_of_another_number():
    """A decimal, a fraction or a hexadecimal answer is no integer answer: not its first digits (a gold 3 must
    not match "3.9"); a sentence's period is not a decimal point."""
    for text in ["The answer is 3.9.", "The answer is 1/2", "The answer is 0x1F", "The answer is 12.5"]:
        assert extract_integer_answer(text) is None, text
    assert extract_integer_answer("The answer is 3.\n\nQ:") == "3"
    assert extract_integer_answer("The answer is 3. Next") == "3"


def test_extractor_on_garbage_returns_none():
    for text in ["", "   ", "no digits here", "The answer is", "The answer is x", "\x00\uffff", "7" * 5000 + " + 1"]:
        assert extract_integer_answer(text) is None
    assert extract_integer_answer("The answer is " + "9" * 10000) == "9" * 10000  # no int() size limit


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_extractor_never_raises(text):
    result = extract_integer_answer(text)
    assert result is None or result.lstrip("-").isdigit()


def test_place_value_rationale():
    assert place_value_rationale(6, 7) == "6 + 7 = 13"
    assert place_value_rationale(47, 85) == "47 + 85 = (40 + 80) + (7 + 5) = 120 + 12 = 132"


def test_examples_are_seeded_balanced_and_correct():
    task = ArithmeticTask(digits="1-3")
    a, b = task.examples("train", 30, seed=1), task.examples("train", 30, seed=1)
    assert a == b
    assert a != task.examples("train", 30, seed=2)
    assert [e.fields["digits"] for e in a[:6]] == [1, 2, 3, 1, 2, 3]
    for e in a:
        assert int(e.answer) == e.fields["a"] + e.fields["b"]
        assert len(str(e.fields["a"])) == e.fields["digits"]
    assert {e.fields["digits"] for e in ArithmeticTask(digits="1-3", eval_digits="6-8").examples("eval", 9, 0)} == {6, 7, 8}


def test_train_and_eval_never_share_a_sum_whatever_the_seeds():
    """The protocol's promise: a held-out sum (or its swap) is never a training sum, for any seeds. Before, the
    default job's 64 held-out sums shared 3 one-digit sums with its 128 training sums."""
    task = ArithmeticTask(digits="1-2")
    pair = lambda e: (min(e.fields["a"], e.fields["b"]), max(e.fields["a"], e.fields["b"]))  # noqa: E731
    train = {pair(e) for seed in range(3) for e in task.examples("train", 400, seed)}
    held = {pair(e) for seed in range(3) for e in task.examples("eval", 400, seed)}
    assert not train & held
    assert len({p for p in held if p[1] < 10}) >= 8  # the one-digit sums are not all on one side
    default = ArithmeticTask()
    assert not {pair(e) for e in default.examples("train", 128, 0)} & {pair(e) for e in default.examples("eval", 64, 0)}


def test_place_value_padded_shows_the_steps_on_one_digit_sums():
    task = ArithmeticTask(format="place_value_padded")
    assert task.gold_rationale(6, 7) == "6 + 7 = (0 + 0) + (6 + 7) = 0 + 13 = 13"
    assert task.gold_rationale(47, 85) == "47 + 85 = (40 + 80) + (7 + 5) = 120 + 12 = 132"
    assert task.fewshot()[0].rationale == "6 + 7 = (0 + 0) + (6 + 7) = 0 + 13 = 13"
    assert verify_addition(Example("x", "6 + 7 = ?", "13", {"a": 6, "b": 7}), task.gold_rationale(6, 7)) is None


def test_hint_style_groups_gives_the_place_value_groups_with_the_answer():
    """hint_style=groups: the rationalization hint also shows the sum's place-value groups (the exemplars' hints
    too); one-digit sums get the paper's hint; the trained pair never holds the hint (quotes_hint)."""
    task = ArithmeticTask(hint_style="groups")
    ex = Example("x", "47 + 85 = ?", "132", {"a": 47, "b": 85, "digits": 2})
    assert task.hint(ex) == "(Hint: 47 + 85 = (40 + 80) + (7 + 5); the answer is 132.)"
    assert task.hint(Example("y", "6 + 7 = ?", "13", {"a": 6, "b": 7})) == "(Hint: the answer is 13.)"
    prompt = task.prompt(ex, hint=True)
    assert "Q: 306 + 598 = ? (Hint: 306 + 598 = (300 + 500) + (0 + 90) + (6 + 8); the answer is 904.)" in prompt
    assert prompt.endswith("Q: 47 + 85 = ? (Hint: 47 + 85 = (40 + 80) + (7 + 5); the answer is 132.)\nA:")
    assert task.quotes_hint(ex, " 47 + 85 = (40 + 80) + (7 + 5) (Hint: the answer is 132.)")
    assert not task.quotes_hint(ex, " 47 + 85 = (40 + 80) + (7 + 5) = 120 + 12 = 132.")
    assert ArithmeticTask().hint(ex) == "(Hint: the answer is 132.)"  # the default: the paper's
    with pytest.raises(StarKitError, match="hint_style=groups .* not format=column"):
        ArithmeticTask(format="column", hint_style="groups")
    with pytest.raises(StarKitError, match="hint_style='steps': expected one of answer, groups"):
        ArithmeticTask(hint_style="steps")


def test_prompt_hint_and_target():
    task = load_registry().create("tasks", "arithmetic", format="place_value")
    ex = task.examples("train", 1, 0)[0]
    prompt = task.prompt(ex)
    assert prompt.startswith("Q: 6 + 7 = ?\nA: 6 + 7 = 13. The answer is 13.\n\n")
    assert prompt.endswith(f"Q: {ex.question}\nA:")
    assert task.hint(ex) not in prompt
    hinted = task.prompt(ex, hint=True)
    assert hinted.endswith(f"Q: {ex.question} {task.hint(ex)}\nA:")
    assert "(Hint: the answer is 13.)" in hinted  # exemplars show the hint format too
    assert task.prompt(ex, fewshot=False) == f"Q: {ex.question}\nA:"
    assert task.target("1 + 2 = 3", "3") == " 1 + 2 = 3. The answer is 3.\n\n"
    assert task.rationale_of(" 1 + 2 = 3. The answer is 3.") == "1 + 2 = 3."
    assert task.stop[0] == "\n\n" and task.extractor == "arithmetic"
    assert task.is_correct("3", "3") and not task.is_correct(None, "3") and not task.is_correct("4", "3")


def test_column_rationale():
    assert column_rationale(6, 7) == "6 + 7: 6+7=13"
    assert column_rationale(47, 85) == "47 + 85: 7+5=12, 4+8+1=13"
    assert column_rationale(306, 598) == "306 + 598: 6+8=14, 0+9+1=10, 3+5+1=9"
    assert column_rationale(5, 95) == "5 + 95: 5+5=10, 0+9+1=10"


def test_formats_pick_exemplars_and_verifier():
    registry = load_registry()
    assert registry.create("tasks", "arithmetic").format == "place_value"  # the default
    column = registry.create("tasks", "arithmetic", format="column")
    assert (column.format, column.verifier) == ("column", "arithmetic-column")
    assert column.prompt(column.examples("train", 1, 0)[0]).startswith("Q: 6 + 7 = ?\nA: 6 + 7: 6+7=13. The answer is 13.")
    place = registry.create("tasks", "arithmetic", format="place_value")
    assert place.verifier == "arithmetic" and "(40 + 80)" in place.prompt(place.examples("train", 1, 0)[0])
    for task in (column, place):
        verify = registry.verifier(task.verifier)
        for ex in task.fewshot():
            a, b = (int(p) for p in ex.question.split(" = ")[0].split(" + "))
            assert verify(_addition(a, b), ex.rationale) is None
        for e in task.examples("train", 50, 3):
            assert verify(e, task.gold_rationale(e.fields["a"], e.fields["b"])) is None
    with pytest.raises(StarKitError, match="format='nope'"):
        ArithmeticTask(format="nope")


def _addition(a, b):
    return Example("x", f"{a} + {b} = ?", str(a + b), fields={"a": a, "b": b})


@pytest.mark.parametrize("rationale, reason", [
    ("47 + 85 = 132", "does not write 47 + 85:"),
    ("47 + 85: 47+85=132, 0+0=0", "column 1: cannot read"),
    ("47 + 85: 7+5=12", "1 column steps, expected 2"),
    ("47 + 85: 7+5=12, 4+8+1=13, 0+0=0", "more than 2 column steps"),
    ("47 + 85: 5+7=12, 4+8+1=13", "column 1: 5+7, but the digits are 7 and 5"),
    ("47 + 85: 7+5=12, 4+8=12", "column 2: the carry is 1"),
    ("47 + 85: 7+5=2, 4+8=12", "column 1: 7+5=2 is wrong"),
    ("47 + 85: 7+5=12, 4+8+1=14", "column 2: 4+8+1=14 is wrong"),
    ("47 + 85: 7+5=12, 8+4+1=13", "column 2: 8+4"),
])
def test_column_verifier_rejects_every_wrong_or_skipped_step(rationale, reason):
    assert reason in verify_column(_addition(47, 85), rationale)


def test_column_verifier_accepts_spaces_and_is_linear_on_hostile_text():
    assert verify_column(_addition(47, 85), "So 47 + 85: 7 + 5 = 12, 4 + 8 + 1 = 13.") is None
    assert verify_column(_addition(5, 95), "5 + 95: 5+5=10, 0+9+1=10") is None
    hostile = "47 + 85: 7" + " " * 200_000 + "+" + " " * 200_000 + "x, 1"
    assert "cannot read" in verify_column(_addition(47, 85), hostile)
    assert "more than" in verify_column(_addition(47, 85), "47 + 85: " + "7+5=12, " * 100_000)


def test_exemplar_file_errors_name_file_and_line(tmp_path):
    """A few-shot file (a plugin's, or one a user gives) is read as data: its bad line is one error naming it."""
    from star_kit.errors import DataError
    from star_kit.task import load_exemplars

    path = tmp_path / "fewshot.jsonl"
    path.write_text('{"question": "1 + 2", "rationale": "1 + 2 = 3.", "answer": "3"}\n\n{"question": "2 + 2"}\n')
    with pytest.raises(DataError, match=r"fewshot\.jsonl:3: bad exemplar \(no 'rationale' field"):
        load_exemplars(path)
    path.write_text('{"question": "1 + 2", "rationale": "1 + 2 = 3.", "answer": 3}\n[1]\n')
    with pytest.raises(DataError, match=r"fewshot\.jsonl:2: expected a JSON object"):
        load_exemplars(path)
    path.write_text('\ufeff{"question": "1 + 2", "rationale": "1 + 2 = 3.", "answer": 3}\n')
    assert [(e.question, e.answer) for e in load_exemplars(path)] == [("1 + 2", "3")]
    for empty in ("", "\n\n"):  # a few-shot prompt without shots is refused, not prompted silently
        path.write_text(empty)
        with pytest.raises(DataError, match=r"fewshot\.jsonl: no exemplars \(the file has no rows"):
            load_exemplars(path)


@pytest.mark.parametrize("fmt", ["place_value", "column"])
def test_the_token_budget_holds_the_longest_gold_completion(fmt):
    """A right rationale of the widest sums is never cut before its answer: with SmolLM2's tokenizer (one token
    per digit, the most tokens a common tokenizer spends on these texts) the widest gold completion of every digit
    range, stop string included, fits the budget that sampling and lm-eval's evaluation both read. (The budget was
    96 tokens, while a 5-digit place-value rationale takes 118: STaR could never keep one.)"""
    from transformers import AutoTokenizer

    from star_kit.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    assert ArithmeticTask().max_new_tokens == ArithmeticTask().lm_eval_config["generation_kwargs"]["max_gen_toks"]
    for widest in range(1, 9):
        task = ArithmeticTask(format=fmt, digits="1-3", eval_digits=f"1-{widest}")
        a = b = 10**widest - 1
        gold = task.target(task.gold_rationale(a, b), str(a + b))
        assert len(tokenizer(gold).input_ids) <= task.max_new_tokens, (fmt, widest)
        assert task.lm_eval_config["generation_kwargs"]["max_gen_toks"] == task.max_new_tokens
    default = ArithmeticTask()  # the YAML's budget is the default digits' (1-5), for lm-eval run on its own
    assert default.max_new_tokens == default.token_budget() == 161


@pytest.mark.parametrize("fmt", ["place_value", "place_value_padded", "column"])
def test_no_exemplar_is_a_held_out_sum(fmt):
    """The few-shot exemplars are training-side sums: an exemplar that is also a held-out question would show its
    answer in every evaluation prompt (the exemplar-leak pitfall of few-shot evaluation)."""
    from star_kit.task import held_out

    task = ArithmeticTask(format=fmt)
    for exemplar in task.fewshot():
        a, b = sorted(task.exemplar_fields(exemplar).values()) or [None, None]
        assert a is not None and not held_out(f"{a} + {b}"), exemplar.question


@pytest.mark.parametrize("spec, said", [("9-1", "a range runs from the smaller count to the larger ('1-9')"),
                                        ("0-3", "digit counts must be between 1 and 30"),
                                        ("a-b", "expected a digit range like '1-5'")])
def test_a_bad_digit_range_says_what_is_wrong(spec, said):
    from star_kit.errors import StarKitError
    from star_kit.registry import load_registry

    with pytest.raises(StarKitError, match=f"task option digits='{spec}': " + said.replace("(", r"\(").replace(
            ")", r"\)")):
        load_registry().create("tasks", "arithmetic", digits=spec)
