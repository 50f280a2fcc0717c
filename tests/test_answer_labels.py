"""CommonsenseQA's choice shuffle keeps the gold answer with its text; the answer-letter distribution is counted
per iteration for tasks with choices (``answer_label``) and not for the others (no model here: units)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from star_kit.labels import eval_label_counts, format_counts, label_counts
from star_kit.registry import load_registry
from star_kit_plugins.commonsense_qa import extract_choice, letter_of, shuffle_choices

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def _choice_text(example, answer):
    """The text of the choice ``answer`` names ('b' or '(b) mailbox')."""
    return dict((label, text) for label, text in example.fields["choices"])[letter_of(answer)]


def test_shuffle_keeps_gold_with_its_text(registry):
    plain = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), answer_format="choice")
    shuffled = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), choice_order="shuffle",
                               answer_format="choice")
    letters = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), choice_order="shuffle",
                              answer_format="letter")
    for split in ("train", "eval"):
        before, after = plain.examples(split, None, 0), shuffled.examples(split, None, 0)
        assert [e.answer for e in after] == [f"({e.answer}) {_choice_text(e, e.answer)}"
                                              for e in letters.examples(split, None, 0)]
        assert [e.id for e in before] == [e.id for e in after]
        moved = 0
        for b, a in zip(before, after):
            assert _choice_text(a, a.answer) == _choice_text(b, b.answer)  # gold follows its text
            assert sorted(t for _, t in a.fields["choices"]) == sorted(t for _, t in b.fields["choices"])
            assert [label for label, _ in a.fields["choices"]] == list("abcde")[: len(a.fields["choices"])]
            # the prompt shows the new order, and its hinted form names the new letter and the same text
            assert a.answer == f"({letter_of(a.answer)}) {_choice_text(a, a.answer)}"  # "(b) mailbox"
            assert f"\n{a.answer}\n" in shuffled.prompt(a) + "\n"
            assert f"(Hint: the answer is {a.answer}.)" in shuffled.prompt(a, hint=True)
            moved += a.fields["choices"] != b.fields["choices"]
        assert moved > 0
    # seeded: the same order again; another seed gives another order somewhere
    again = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), choice_order="shuffle")
    assert [e.question for e in again.examples("eval", None, 0)] == [e.question for e in after]
    other = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), choice_order="shuffle",
                            choice_seed=1)
    assert [e.question for e in other.examples("eval", None, 0)] != [e.question for e in after]


def test_shuffle_spreads_gold_letters_and_is_stable_per_id():
    from star_kit.records import Example

    choices = [["a", "one"], ["b", "two"], ["c", "three"], ["d", "four"], ["e", "five"]]
    golds = Counter()
    for i in range(500):
        ex = Example(f"q{i}", "stem\nAnswer Choices:\n(a) one", "c", {"stem": "stem", "choices": choices})
        out = shuffle_choices(ex, 0)
        assert _choice_text(out, out.answer) == "three"
        assert out == shuffle_choices(ex, 0)
        golds[out.answer] += 1
    assert set(golds) == set("abcde") and min(golds.values()) > 60  # ~100 each, not all "c"


def test_bad_choice_order_is_a_usage_error(registry):
    from star_kit.errors import StarKitError

    with pytest.raises(StarKitError, match="choice_order"):
        registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), choice_order="sorted")


def test_label_counts_for_a_choice_task(registry):
    task = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), answer_format="letter")
    examples = task.examples("eval", None, 0)
    rows = [{"example_id": e.id, "predicted": p} for e, p in zip(examples, ["c", "c", None, "a", "z"])]
    counts = eval_label_counts(task, examples, rows)
    n = min(len(examples), len(rows))
    # "z" names no choice; None is no answer at all (eval.json's no_answer): two counts
    expected = Counter({"z": "no_choice", None: "none"}.get(p, p) for p in ["c", "c", None, "a", "z"][:n])
    assert counts == dict(expected)
    order = {"no_choice": 1, "none": 2}
    assert list(counts) == sorted(counts, key=lambda k: (order.get(k, 0), k))  # letters in order, then the two
    assert sum(counts.values()) == n
    # what extract_choice reads is what is counted: "(c)" -> c
    assert label_counts(task, [(examples[0], extract_choice("so. The answer is (c)."))]) == {"c": 1}
    golds = Counter(e.answer for e in examples)  # the loop counts its training pairs' answers this way
    assert label_counts(task, [(e, e.answer) for e in examples]) == dict(sorted(golds.items()))
    # answer_format=choice: the label is the letter of the choice the text names
    named = registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES), answer_format="choice")
    examples = named.examples("eval", None, 0)
    texts = [f"(a) {_choice_text(e, e.answer)}" for e in examples]  # the right text beside a wrong letter
    counts = eval_label_counts(named, examples, [{"example_id": e.id, "predicted": t} for e, t in zip(examples, texts)])
    assert counts == dict(sorted(Counter(letter_of(e.answer) for e in examples).items()))


def test_no_label_counts_without_answer_label(registry):
    task = registry.create("tasks", "arithmetic")
    examples = task.examples("eval", 3, 0)
    assert eval_label_counts(task, examples, [{"example_id": e.id, "predicted": "1"} for e in examples]) is None
    assert label_counts(task, [(e, e.answer) for e in examples]) is None


def test_format_counts():
    assert format_counts({"a": 3, "c": 173, "none": 2, "b": 2}) == "c 173 · a 3 · b 2 · none 2"
    assert format_counts({"a": 1, "b": 2, "c": 3, "d": 4}, top=2) == "d 4 · c 3 · other 3"
    assert format_counts({"a": 1, "b": 2, "c": 3, "d": 4}, top=2, compact=True) == "d4 c3 +3"
    assert format_counts({"e": 167, "none": 1}, top=3, compact=True) == "e167 none1"
    assert format_counts(None) == "" and format_counts({}) == ""
