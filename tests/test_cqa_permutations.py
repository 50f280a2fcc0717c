"""CommonsenseQA's ``train_permutations=K``: choice-permuted training copies of each kept pair, through the
optional Task hook ``augment`` (no model: units, and the loop with a scripted sampler)."""

import time
from collections import Counter
from pathlib import Path

import pytest

from star_kit.cli import main
from star_kit.errors import StarKitError
from star_kit.loop import build_training_set, training_pairs
from star_kit.records import Example, Sample
from star_kit.registry import load_registry
from star_kit_plugins.commonsense_qa import (
    CommonsenseQATask,
    permutation_orders,
    remap_letters,
    reorder_choices,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
CHOICES = [("a", "oven"), ("b", "rack"), ("c", "fridge"), ("d", "drawer"), ("e", "shoe")]


def _example(answer="(b) rack", ident="q1"):
    question = "Where do you hang a wet towel to dry?\nAnswer Choices:\n" + "\n".join(
        f"({label}) {text}" for label, text in CHOICES)
    return Example(ident, question, answer, {"stem": "Where do you hang a wet towel to dry?",
                                             "choices": [list(c) for c in CHOICES], "concept": "towel"})


def _choice_of(example, letter):
    return dict((label, text) for label, text in example.fields["choices"])[letter]


# -- the permutations --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2, 4, 9, 24])
def test_orders_are_distinct_bijections_and_never_the_identity(k):
    orders = permutation_orders(5, 1, k, "key")
    assert len(orders) == k
    assert all(sorted(order) == [0, 1, 2, 3, 4] for order in orders)  # a bijection of the five positions
    assert (0, 1, 2, 3, 4) not in {tuple(o) for o in orders}
    assert len({tuple(o) for o in orders}) == k
    assert orders == permutation_orders(5, 1, k, "key")  # deterministic in the key
    assert orders != permutation_orders(5, 1, k, "other key")


def test_four_copies_put_the_gold_under_every_other_letter_once():
    for gold in range(5):
        positions = [order.index(gold) for order in permutation_orders(5, gold, 4, f"q{gold}")]
        assert sorted(positions + [gold]) == [0, 1, 2, 3, 4]


def test_two_choices_have_one_other_order():
    assert permutation_orders(2, 0, 4, "k") == [[1, 0]]


def test_reorder_keeps_the_answer_text_and_every_choice():
    ex = _example()
    out = reorder_choices(ex, [4, 3, 2, 1, 0])
    assert out.answer == "(d) rack" and out.id == ex.id
    assert out.question.endswith("(a) shoe\n(b) drawer\n(c) fridge\n(d) rack\n(e) oven")
    assert sorted(t for _, t in out.fields["choices"]) == sorted(t for _, t in CHOICES)
    assert reorder_choices(_example("b"), [4, 3, 2, 1, 0]).answer == "d"  # answer_format=letter
    assert reorder_choices(_example("(b)"), [1, 0, 2, 3, 4]).answer == "(a)"
    with pytest.raises(ValueError):
        reorder_choices(ex, [0, 0, 1, 2, 3])


# -- the rationale's letters ---------------------------------------------------------------------------------------
MAPPING = {"a": "e", "b": "d", "c": "c", "d": "b", "e": "a"}  # the reversal [4, 3, 2, 1, 0]


def test_letters_are_remapped_consistently():
    text = "Not (a) oven, it is hot. (B) rack is where towels go; (b) is right, not (e)."
    assert remap_letters(text, MAPPING, CHOICES) == "Not (e) oven, it is hot. (D) rack is where towels go; (d) is " \
                                                   "right, not (a)."
    assert remap_letters("A rack lets air reach the towel.", MAPPING, CHOICES) == "A rack lets air reach the towel."


@pytest.mark.parametrize("text", [
    "It is (f), none of them.",  # a letter the mapping does not hold
    "(c) rack is where towels go.",  # a letter beside another choice's text: which one is meant?
    "Choice b is where towels go.",
    "The answer is b because towels hang there.",
    "b) rack is where towels go.",
    "[b] rack is where towels go.",
    "（ｂ） rack is where towels go.",
])
def test_letters_that_cannot_be_remapped_safely_give_none(text):
    assert remap_letters(text, MAPPING, CHOICES) is None


def test_a_choice_text_that_only_starts_like_another_is_not_a_mismatch():
    choices = [("a", "shoe"), ("b", "shoes rack"), ("c", "c"), ("d", "d"), ("e", "e")]
    assert remap_letters("(b) shoes rack it is.", {"a": "b", "b": "a", "c": "c", "d": "d", "e": "e"},
                         choices) == "(a) shoes rack it is."


@pytest.mark.parametrize("text, remapped", [
    ("The answer" + " " * 100_000 + "!", True),  # a run of spaces after "answer" / "choice": was quadratic
    ("choice" + " " * 100_000 + "!", True),
    ("[" + " " * 100_000 + "!", True),
    ("(a) " * 100_000, True),  # many references: each used to copy all the text after it
    ("(a)" + " " * 100_000 + "oven", True),
    ("The answer is" + " " * 100_000 + "b", False),
])
def test_remapping_is_linear_on_hostile_text(text, remapped):
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        out = remap_letters(text, MAPPING, CHOICES)
        best = min(best, time.perf_counter() - t0)
        if best < 1.5:
            break
    assert best < 1.5, (text[:40], best)  # the quadratic forms took tens of seconds here
    assert (out is not None) == remapped


# -- the task option and its hook ---------------------------------------------------------------------------------
def test_augment_gives_k_copies_with_the_same_answer_text():
    task = CommonsenseQATask(data_dir=str(FIXTURES), train_permutations=4)
    ex = task.examples("train", None, 0)[0]
    gold_text = _choice_of(ex, ex.answer[1])
    rationale = f"A towel dries on ({ex.answer[1]}) {gold_text}, not elsewhere."
    copies = task.augment(ex, rationale)
    assert len(copies) == 4
    letters = {ex.answer[1]}
    for copy, text in copies:
        letter = copy.answer[1]
        letters.add(letter)
        assert copy.answer == f"({letter}) {gold_text}" and _choice_of(copy, letter) == gold_text
        assert text == f"A towel dries on ({letter}) {gold_text}, not elsewhere."  # the reference follows
        assert copy.fields["stem"] == ex.fields["stem"] and copy.id == ex.id
        assert task.is_correct(copy.answer, copy.answer) and task.answer_label(copy, copy.answer) == letter
    assert letters == set("abcde")  # the original and four copies: the gold under every letter once
    assert copies == task.augment(ex, rationale)  # deterministic
    other_seed = CommonsenseQATask(data_dir=str(FIXTURES), train_permutations=4, choice_seed=1)
    assert [c.question for c, _ in other_seed.augment(ex, rationale)] != [c.question for c, _ in copies]


def test_augment_is_off_by_default_and_skips_unsafe_rationales():
    ex = CommonsenseQATask(data_dir=str(FIXTURES)).examples("train", None, 0)[0]
    assert CommonsenseQATask(data_dir=str(FIXTURES)).augment(ex, "Anything.") == []
    task = CommonsenseQATask(data_dir=str(FIXTURES), train_permutations=2)
    assert task.augment(ex, "Option a is wrong, so it is the other one.") == []


def test_letter_format_copies_answer_a_letter():
    task = CommonsenseQATask(data_dir=str(FIXTURES), train_permutations=2, answer_format="letter")
    ex = task.examples("train", None, 0)[0]
    for copy, _ in task.augment(ex, "Because."):
        assert len(copy.answer) == 1 and copy.answer != ex.answer
        assert _choice_of(copy, copy.answer) == _choice_of(ex, ex.answer)


def test_training_set_holds_k_plus_1_copies_per_pair():
    task = CommonsenseQATask(data_dir=str(FIXTURES), train_permutations=2, answer_format="choice")
    examples = task.examples("train", None, 0)
    kept = [Sample(e.id, e.question, f" Because it fits. The answer is {e.answer}.", e.answer, e.answer, True)
            for e in examples[:2]]
    pairs, dropped = training_pairs(task, examples, kept, [])
    assert dropped == 0 and len(pairs) == 3 * len(kept)
    for (copy, pair), (ex, first) in zip(pairs, [p for p in pairs[::3] for _ in range(3)]):
        assert pair.example_id == first.example_id and pair.source == "sampled"
        assert pair.prompt == task.prompt(copy, hint=False, fewshot=False)
        assert pair.completion == f" Because it fits. The answer is {copy.answer}.\n\n"
        assert _choice_of(copy, copy.answer[1]) == _choice_of(ex, ex.answer[1])
    assert len({p.prompt for _, p in pairs}) == len(pairs)
    assert build_training_set(task, examples, kept, []) == ([p for _, p in pairs], 0)
    plain = CommonsenseQATask(data_dir=str(FIXTURES))
    assert len(build_training_set(plain, examples, kept, [])[0]) == len(kept)  # the default: unchanged


def test_a_bad_augment_return_is_one_line_naming_the_task():
    class Bad(CommonsenseQATask):
        def augment(self, example, rationale):
            return ["not a pair"]

    task = Bad(data_dir=str(FIXTURES))
    ex = task.examples("train", None, 0)[0]
    kept = [Sample(ex.id, ex.question, " Because. The answer is (a).", "(a)", ex.answer, True)]
    with pytest.raises(StarKitError, match=r"^task 'commonsense_qa': augment\(\) must return a list"):
        training_pairs(task, [ex], kept, [])

    class Text(CommonsenseQATask):
        def augment(self, example, rationale):
            return "two\nlines"

    with pytest.raises(StarKitError) as info:
        training_pairs(Text(data_dir=str(FIXTURES)), [ex], kept, [])
    assert "\n" not in str(info.value) and "got str: 'two" in str(info.value)


@pytest.mark.parametrize("value,message", [
    (-1, "train_permutations must be a whole number from 0 to 24, got -1"),
    (25, "train_permutations must be a whole number from 0 to 24, got 25"),
    (True, r"\(plugin 'commonsense_qa', distribution 'star-kit'\): option train_permutations=True is not an "
           r"integer"),
])
def test_bad_values_are_refused(value, message):
    with pytest.raises(StarKitError, match=f"^task 'commonsense_qa':? {message}$"):
        load_registry().create("tasks", "commonsense_qa", data_dir=str(FIXTURES), train_permutations=value)


@pytest.mark.parametrize("value,expected", [
    ("-1", "task 'commonsense_qa': train_permutations must be a whole number from 0 to 24, got -1"),
    ("two", "train_permutations='two'"),
    ("1.5", "train_permutations=1.5"),
])
def test_bad_values_on_the_command_line_are_one_line(tmp_path, capsys, value, expected):
    code = main(["run", "--task", "commonsense_qa", "--data-dir", str(FIXTURES), "--task-opt",
                 f"train_permutations={value}", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert expected in err and "commonsense_qa" in err
    assert not (tmp_path / "run" / "config.yaml").exists()


# -- the loop ---------------------------------------------------------------------------------------------------
def test_the_loop_writes_k_plus_1_copies_and_counts_their_letters(test_plugin, tmp_path):
    from star_kit.config import RunConfig
    from star_kit.loop import StarRun
    from star_kit.progress import Phases
    from star_kit.store import read_jsonl

    model = tmp_path / "m0"
    model.mkdir()
    (model / "config.json").write_text("{}")
    config = RunConfig(task="commonsense_qa", model=str(model), sampler="scripted", trainer="recording",
                       out=str(tmp_path / "run"), iterations=1, patience=0, train_size=3, eval_size=2,
                       verifier="none", data_dir=str(FIXTURES),
                       task_options={"train_permutations": 2, "answer_format": "choice"})
    star = StarRun(config, load_registry(), Phases(enabled=False), log=lambda line: None)
    history = star.run()
    train = read_jsonl(star.store.artifact(1, "train.jsonl"))
    result = history[-1]
    kept = result.kept + result.rationalized
    assert kept > 0 and len(train) == 3 * kept == result.train_examples
    per_question = Counter(t["example_id"] for t in train)
    assert set(per_question.values()) == {3}
    for ident in per_question:
        rows = [t for t in train if t["example_id"] == ident]
        assert len({t["prompt"] for t in rows}) == 3  # three orders of the same question
        assert len({t["completion"].rsplit("The answer is", 1)[1][:4] for t in rows}) == 3  # each its own letter
        assert "Hint" not in "".join(t["prompt"] + t["completion"] for t in rows)
    assert sum(result.train_labels.values()) == len(train)  # the copies' letters, not the original's thrice
    assert max(result.train_labels.values()) < len(train)
