"""CommonsenseQA's ``answer_format=text``: choices listed without letters, answers written "The answer is mailbox.",
graded by the choice text named with the same extractor and text match as ``answer_format=choice`` (no model)."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

from star_kit.cli import main
from star_kit.errors import StarKitError
from star_kit.records import Example
from star_kit.registry import load_registry
from star_kit_plugins.commonsense_qa import CommonsenseQATask, letter_of, unletter_choices

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "data"
LETTERED = re.compile(r"\([a-eA-E]\)")


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("STAR_KIT_DATA_DIR", raising=False)


def _task(**options) -> CommonsenseQATask:
    return load_registry().create("tasks", "commonsense_qa", data_dir=str(FIXTURES), answer_format="text",
                                  **options)


def _gold_d(task: CommonsenseQATask) -> Example:
    return next(e for e in task.examples("eval", None, 0) if letter_of(e.answer) == "d")


def test_the_prompt_lists_the_choices_without_letters_and_answers_with_the_text():
    task = _task()
    ex = _gold_d(task)
    assert ex.answer == "(d) water"  # the gold keeps its letter (bookkeeping), graded by its text
    prompt = task.prompt(ex)
    assert not LETTERED.search(prompt), LETTERED.search(prompt)
    assert "\nAnswer Choices:\n- drawer\n- mailbox\n- bookshelf\n" in prompt
    assert " The answer is mailbox.\n\n" in prompt
    assert prompt.count(" The answer is ") == len(task.fewshot())
    for exemplar in task.fewshot():  # every exemplar answers with its choice's text, no letter
        text = task.answer_text(exemplar.question, exemplar.answer)
        assert f"The answer is {text}." in prompt and not LETTERED.search(text)
    assert prompt.endswith("\n- water\n- glue\nA:")
    assert task.target("People drink water when thirsty", ex.answer) == \
        " People drink water when thirsty. The answer is water.\n\n"
    assert task.target("People drink water when thirsty", "water").endswith("The answer is water.\n\n")


def test_unletter_choices_only_touches_choice_lines():
    question = "Pick (a) word:\n(a) stays in the stem\nAnswer Choices:\n(a) one\n(b) two (CORRECT)"
    assert unletter_choices(question) == "Pick (a) word:\n(a) stays in the stem\nAnswer Choices:\n- one\n- two (CORRECT)"
    assert unletter_choices("no choices here") == "no choices here"


@pytest.mark.parametrize("text, right, label", [
    (" People drink water. The answer is water.", True, "d"),
    (" The answer is Water!", True, "d"),
    (" The answer is (b) water.", True, "d"),  # a stray letter does not decide: the text does
    (" The answer is smoke.", False, "c"),  # another choice: wrong, labelled with that choice's letter
    (" The answer is lava.", False, None),  # no choice
    (" The answer is (d).", False, None),  # a letter alone: the prompt shows no letters
    (" The answer is wat", False, None),
    (" so the answer is", False, None),
    ("no phrase at all", False, None),
    ("\x00\ufffd)))((( answer: ((((", False, None),
])
def test_extraction_grading_and_label_of_text_answers(text, right, label):
    task = _task()
    ex = _gold_d(task)
    assert task.extractor == "commonsense_qa_choice"  # the extractor of answer_format=choice, not a copy
    predicted = load_registry().extractor(task.extractor)(text)
    assert task.is_correct(predicted, ex.answer) is right
    assert task.answer_label(ex, predicted) == label


def test_the_label_is_the_letter_in_the_original_order():
    task = _task()
    for ex in task.examples("eval", None, 0):
        text = task.answer_text(ex.question, ex.answer)
        assert task.answer_label(ex, text) == letter_of(ex.answer)
        assert task.is_correct(text, ex.answer)


@pytest.mark.parametrize("style, ending, hint", [
    ("both", "- water (CORRECT)\n- glue (Hint: the answer is water.)\nA:", "(Hint: the answer is water.)"),
    ("answer", "- water\n- glue (Hint: the answer is water.)\nA:", "(Hint: the answer is water.)"),
    ("correct", "- water (CORRECT)\n- glue\nA:", "- water (CORRECT)"),
])
def test_the_rationalization_hint_names_the_text(style, ending, hint):
    task = _task(hint_style=style)
    ex = _gold_d(task)
    hinted = task.prompt(ex, hint=True)
    assert hinted.endswith(ending)
    assert not LETTERED.search(hinted)
    assert task.hint(ex) == hint and hint in hinted
    assert task.quotes_hint(ex, f" Look: {hint} The answer is water.")


def test_permuted_training_copies_stay_letterless():
    task = _task(train_permutations=4)
    ex = _gold_d(task)
    copies = task.augment(ex, "People drink water when thirsty.")
    assert len(copies) == 4
    for copy, rationale in copies:
        assert task.is_correct("water", copy.answer)
        assert not LETTERED.search(task.prompt(copy)) and task.target(rationale, copy.answer).endswith(
            "The answer is water.\n\n")


def test_a_bad_answer_format_is_one_line(tmp_path, capsys):
    with pytest.raises(StarKitError, match="answer_format must be one of choice, letter, text, got 'words'") as err:
        CommonsenseQATask(answer_format="words")
    assert err.value.exit_code == 2
    code = main(["run", "--task", "commonsense_qa", "--data-dir", str(FIXTURES), "--task-opt",
                 "answer_format=words", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "answer_format must be one of choice, letter, text" in err and "commonsense_qa" in err


def _redos_families() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("redos_benchmark", ROOT / "benchmarks" / "redos.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.families(100_000)


def test_text_grading_is_linear_on_hostile_text():
    """Extraction, grading and labelling of answer_format=text on 100 kB of each ReDoS benchmark family, plus a
    long answer that almost matches a choice: under 50 ms each (fastest of 3)."""
    task = _task()
    ex = _gold_d(task)
    extract = load_registry().extractor(task.extractor)
    texts = list(_redos_families().values()) + ["The answer is " + "water " * 20_000,
                                                "The answer is" + " " * 100_000 + "water"]
    for text in texts:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            predicted = extract(text)
            task.is_correct(predicted, ex.answer)
            task.answer_label(ex, predicted)
            best = min(best, time.perf_counter() - t0)
            if best < 0.05:
                break
        assert best < 0.05, (text[:60], best)
