"""The arithmetic task and its extractor."""

from hypothesis import given, settings
from hypothesis import strategies as st

from star_kit.registry import load_registry
from star_kit_plugins.arithmetic import ArithmeticTask, extract_integer_answer, place_value_rationale


def test_extractor_reads_the_answer_phrase():
    assert extract_integer_answer(" 47 + 85 = 132. The answer is 132.") == "132"
    assert extract_integer_answer("The answer is 1,080.") == "1080"
    assert extract_integer_answer("the answer is -0042") == "-42"
    assert extract_integer_answer("The answer is 5. Wait, the answer is 7.") == "7"
    assert extract_integer_answer("answer is: 12") == "12"


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


def test_prompt_hint_and_target():
    task = load_registry().create("tasks", "arithmetic")
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
