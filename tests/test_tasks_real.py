"""CommonsenseQA and GSM8K: loading (local files, env var, hub fallback), malformed rows, extractors, hints, prompts.

Unit tests use the hand-written fixtures in tests/fixtures/data; the integration tests at the bottom read the real
files (conftest.REAL_DATA) and are skipped when that folder is absent.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from conftest import REAL_DATA
from star_kit.errors import DataError, StarKitError
from star_kit.loop import build_training_set
from star_kit.records import Sample
from star_kit.registry import load_registry
from star_kit_plugins.commonsense_qa import CommonsenseQATask, extract_choice, letter_of, mark_correct
from star_kit_plugins.gsm8k import GSM8KTask, canonical_answer, extract_number

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    monkeypatch.delenv("STAR_KIT_DATA_DIR", raising=False)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cqa_row(key="B", stem="Where do you hang a wet towel?", labels="ABCDE", **extra) -> dict:
    texts = ["oven", "rack", "fridge", "drawer", "shoe"]
    row = {"answerKey": key, "id": "x1",
           "question": {"stem": stem, "choices": [{"label": lab, "text": t} for lab, t in zip(labels, texts)]}}
    row.update(extra)
    return row


# -- registration ------------------------------------------------------------------------------------------------
def test_tasks_and_extractors_are_registered_through_entry_points():
    registry = load_registry()
    for name in ("commonsense_qa", "gsm8k"):
        assert name in registry.names("tasks") and name in registry.names("extractors")
        assert registry.get("tasks", name).distribution == "star-kit"
    assert registry.create("tasks", "gsm8k", data_dir=str(FIXTURES)).extractor == "gsm8k"
    assert registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES)).extractor == "commonsense_qa_choice"
    assert registry.create("tasks", "commonsense_qa", data_dir=str(FIXTURES),
                           answer_format="letter").extractor == "commonsense_qa"


def test_generation_settings_come_from_the_yaml():
    cqa, gsm = CommonsenseQATask(), GSM8KTask()
    assert cqa.stop == gsm.stop == ("\n\n", "\nQ:")
    assert cqa.max_new_tokens == 96 and gsm.max_new_tokens == 256
    assert cqa.lm_eval_config["task"] == "star_kit_commonsense_qa"
    assert gsm.lm_eval_config["task"] == "star_kit_gsm8k"
    for task in (cqa, gsm):
        assert task.lm_eval_config["doc_to_text"] == "{{prompt}}"
        assert task.lm_eval_config["doc_to_target"] == "{{answer}}"


# -- loading -----------------------------------------------------------------------------------------------------
def test_gsm8k_loads_local_files():
    task = GSM8KTask(data_dir=str(FIXTURES))
    train = {e.id: e for e in task.examples("train", None, 0)}
    assert set(train) == {"train-00000", "train-00001", "train-00002"}
    assert [train[f"train-0000{i}"].answer for i in range(3)] == ["18", "1080", "-5"]  # "#### 1,080" -> 1080
    assert train["train-00000"].question.startswith("Ana buys 3 packs")
    assert "<<3*6=18>>" in train["train-00000"].fields["solution"]
    evals = task.examples("eval", None, 0)
    assert sorted(e.answer for e in evals) == ["2500", "60"]
    assert len(task.examples("eval", 1, 0)) == 1
    assert [e.id for e in task.examples("train", None, 3)] == [e.id for e in task.examples("train", None, 3)]


def test_commonsense_qa_loads_local_files():
    task = CommonsenseQATask(data_dir=str(FIXTURES), answer_format="letter")
    train = {e.id: e for e in task.examples("train", None, 0)}
    assert set(train) == {"fixture-1", "fixture-2", "fixture-3"}
    ex = train["fixture-1"]
    assert ex.answer == "b"
    assert ex.question == ("Where do you hang a wet towel to dry?\nAnswer Choices:\n(a) oven\n(b) rack\n(c) fridge\n"
                           "(d) drawer\n(e) shoe")
    assert ex.fields["stem"] == "Where do you hang a wet towel to dry?"
    assert ex.fields["choices"][1] == ["b", "rack"]
    assert sorted(e.answer for e in task.examples("eval", None, 0)) == ["b", "d"]
    assert len(task.examples("dev", None, 0)) == 2  # alias of eval
    # choice and text (the default): the gold answer names its choice, letter and text
    assert CommonsenseQATask().answer_format == "text"
    choice = CommonsenseQATask(data_dir=str(FIXTURES), answer_format="choice")
    assert {e.id: e.answer for e in choice.examples("train", None, 0)}["fixture-1"] == "(b) rack"
    text = CommonsenseQATask(data_dir=str(FIXTURES))
    assert {e.id: e.answer for e in text.examples("train", None, 0)}["fixture-1"] == "(b) rack"


def test_data_dir_from_environment_variable(monkeypatch):
    monkeypatch.setenv("STAR_KIT_DATA_DIR", str(FIXTURES))
    assert len(GSM8KTask().examples("train", None, 0)) == 3
    assert len(CommonsenseQATask().examples("eval", None, 0)) == 2


def test_missing_data_folder_or_file(tmp_path):
    with pytest.raises(StarKitError, match="no such folder") as err:
        GSM8KTask(data_dir=str(tmp_path / "nowhere")).examples("train", None, 0)
    assert err.value.exit_code == 2
    (tmp_path / "a-file").write_text("")
    with pytest.raises(StarKitError, match="a-file: a file, not a folder") as err:
        GSM8KTask(data_dir=str(tmp_path / "a-file")).examples("train", None, 0)
    assert err.value.exit_code == 2
    with pytest.raises(DataError, match=r"gsm8k/test\.jsonl not found"):
        GSM8KTask(data_dir=str(tmp_path)).examples("eval", None, 0)
    with pytest.raises(DataError, match=r"commonsenseqa/dev_rand_split\.jsonl not found"):
        CommonsenseQATask(data_dir=str(tmp_path)).examples("eval", None, 0)


def test_unknown_split():
    with pytest.raises(StarKitError, match="unknown split 'validation'"):
        GSM8KTask(data_dir=str(FIXTURES)).examples("validation", None, 0)
    with pytest.raises(StarKitError, match="unknown split 'test'"):
        CommonsenseQATask(data_dir=str(FIXTURES)).examples("test", None, 0)


@pytest.mark.parametrize("task_cls", [GSM8KTask, CommonsenseQATask])
def test_offline_without_data_dir_is_one_clear_line(task_cls, monkeypatch):
    import star_kit.data

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(star_kit.data, "hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(StarKitError) as err:
        task_cls().examples("eval", 5, 0)
    message = str(err.value)
    assert "\n" not in message
    assert "--data-dir" in message and "STAR_KIT_DATA_DIR" in message and "offline" in message
    assert err.value.exit_code == 2  # what to pass is the user's to give


def test_offline_mode_and_no_cache_is_one_clear_line(monkeypatch):
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)\nmore detail")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(StarKitError) as err:
        GSM8KTask().examples("train", None, 0)
    assert "\n" not in str(err.value) and "--data-dir" in str(err.value) and "OfflineModeIsEnabled" in str(err.value)


def test_hub_records_are_reshaped(monkeypatch):
    """tau/commonsense_qa and openai/gsm8k records (as load_dataset returns them) parse like the local files."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        if path == "tau/commonsense_qa":
            return [{"id": "h1", "question": "What melts in the sun?", "question_concept": "sun",
                     "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["ice", "rock", "iron", "glass", "sand"]},
                     "answerKey": "A"}]
        return [{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}]

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # skips the network probe
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    [cqa] = CommonsenseQATask().examples("eval", None, 0)
    assert (cqa.id, cqa.answer) == ("h1", "(a) ice") and "(a) ice" in cqa.question
    [gsm] = GSM8KTask().examples("eval", None, 0)
    assert (gsm.id, gsm.answer) == ("test-00000", "4")
    assert calls == [("tau/commonsense_qa", None, "validation"), ("openai/gsm8k", "main", "test")]


# -- malformed rows: the error names the file and line -----------------------------------------------------------
GOOD_GSM = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})


@pytest.mark.parametrize("bad_line, message", [
    ('{"question": "What is 1 + 1?", "answer": ', "invalid JSON (Expecting value at column 42)"),  # column on line 3
    ('{"question": "What is 1 + 1?', "invalid JSON (Unterminated string starting at column 14)"),  # not 'at at'
    ('["a list"]', "expected a JSON object"),
    (json.dumps({"answer": "#### 3"}), "missing field 'question'"),
    (json.dumps({"question": "Why?"}), "missing field 'answer'"),
    (json.dumps({"question": "   ", "answer": "#### 3"}), "empty 'question'"),
    (json.dumps({"question": "How many?", "answer": "three"}), "no final '#### N' line"),
    (json.dumps({"question": "How many?", "answer": "#### three"}), "not a number"),
])
def test_gsm8k_malformed_row_names_file_and_line(tmp_path, bad_line, message):
    path = write_lines(tmp_path / "gsm8k" / "train.jsonl", [GOOD_GSM, "", bad_line])
    with pytest.raises(DataError, match=re.escape(message)) as err:
        GSM8KTask(data_dir=str(tmp_path)).examples("train", None, 0)
    assert f"{path}:3:" in str(err.value)  # the blank line 2 still counts
    assert err.value.exit_code == 2


def test_a_line_that_is_not_utf8_names_its_line_and_column(tmp_path):
    path = tmp_path / "gsm8k" / "train.jsonl"
    path.parent.mkdir()
    bad = '{"question": "What is 1 + 1?", "answer": "caf\xe9 #### 2"}'.encode("latin-1")
    path.write_bytes(GOOD_GSM.encode() + b"\n" + GOOD_GSM.encode() + b"\n" + bad + b"\n")
    with pytest.raises(DataError) as err:
        GSM8KTask(data_dir=str(tmp_path)).examples("train", None, 0)
    assert str(err.value) == f"{path}:3: not UTF-8 text (byte 0xe9 at column 46)"
    lenient = GSM8KTask(data_dir=str(tmp_path), skip_bad_rows=True)  # skipped and counted like any bad row
    assert len(lenient.examples("train", None, 0)) == 2
    assert lenient.skipped_rows == [str(err.value)]


def test_any_line_ending_and_a_whitespace_only_line_read_as_before(tmp_path):
    path = tmp_path / "gsm8k" / "train.jsonl"
    path.parent.mkdir()
    path.write_bytes(GOOD_GSM.encode() + b"\r" + "\u00a0\r\n".encode() + GOOD_GSM.encode() + b"\r\n")
    assert len(GSM8KTask(data_dir=str(tmp_path)).examples("train", None, 0)) == 2  # CR, CRLF; a no-break space line
    lenient = GSM8KTask(data_dir=str(tmp_path), skip_bad_rows=True)
    assert len(lenient.examples("train", None, 0)) == 2
    assert lenient.skipped_rows == []


@pytest.mark.parametrize("bad_row, message", [
    ('{"answerKey": "A", "question": {"stem": "Why', "invalid JSON"),
    ({"id": "x", "question": cqa_row()["question"]}, "missing field 'answerKey'"),
    (cqa_row(question={"choices": cqa_row()["question"]["choices"]}), "missing field 'question.stem'"),
    (cqa_row(question={"stem": "Why?"}), "missing field 'question.choices'"),
    (cqa_row(key="F"), "answerKey 'F' is not among the choices ['A', 'B', 'C', 'D', 'E']"),
    (cqa_row(key=None), "answerKey None is not among the choices"),
    (cqa_row(stem=""), "empty 'question.stem'"),
    (cqa_row(labels="AACDE"), "duplicate choice labels"),
    (cqa_row(labels=["A", "B", "C", "D", "EE"]), "label 'EE'"),
])
def test_commonsense_qa_malformed_row_names_file_and_line(tmp_path, bad_row, message):
    good = [json.dumps(cqa_row(id=f"g{i}")) for i in range(3)]  # ids are unique: a repeated one is a bad row too
    bad = bad_row if isinstance(bad_row, str) else json.dumps(bad_row)
    path = write_lines(tmp_path / "commonsenseqa" / "dev_rand_split.jsonl", [good[0], good[1], bad, good[2]])
    with pytest.raises(DataError, match=re.escape(message)) as err:
        CommonsenseQATask(data_dir=str(tmp_path)).examples("eval", None, 0)
    assert str(err.value).startswith(f"{path}:3:")


def test_answer_key_is_case_insensitive(tmp_path):
    write_lines(tmp_path / "commonsenseqa" / "train_rand_split.jsonl", [json.dumps(cqa_row(key="c"))])
    [ex] = CommonsenseQATask(data_dir=str(tmp_path), answer_format="letter").examples("train", None, 0)
    assert ex.answer == "c"


# -- extractors --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("The answer is 18.", "18"),
    ("So 45 * 24 = 1080.\n#### 1,080", "1080"),
    ("The answer is $1,080.", "1080"),
    ("The answer is -3.", "-3"),
    ("The answer is \u22127.", "-7"),  # Unicode minus sign
    ("The answer is $12.50.", "12.5"),
    ("The answer is 5.0", "5"),
    ("The answer is 0.50 dollars", "0.5"),
    ("The answer is .5", "0.5"),
    ("The answer is 007", "7"),
    ("The answer is -0", "0"),
    ("the answer is: $-5", "-5"),
    ("The answer is 42. Q: next question has 7 apples", "42"),  # the number after the marker, not the last one
    ("She had 10 - 4 = 6 apples left", "6"),  # fallback: the last number
    ("Pages 10-12", "12"),  # a hyphen after a digit is not a sign
    ("She spent 180 - 30", "30"),  # '- 30' with a space is subtraction, not a negative
    ("The answer is 1,2345", None),  # a malformed number: not its first digits
    ("The answer is 3.9.", "3.9"), ("The answer is 1/2.", None), ("so 1/2 of them", None), ("$1,2,3", None),
    ("The answer is 3 and then 4 more", "3"),
    ("#### 7\nThe answer is 9.", "9"),  # the last marker wins
    ("The answer is.", None),
    ("no numbers here", None),
    ("", None),
])
def test_gsm8k_extractor(text, expected):
    assert extract_number(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("1,080", "1080"), ("5.0", "5"), ("-3", "-3"), ("$12.50", "12.5"), ("  72 ", "72"), ("72.", "72"),
    ("0", "0"), ("-0.0", "0"), ("3 apples", None), ("", None), ("abc", None), ("1.2.3", None),
])
def test_gsm8k_canonical_answer(text, expected):
    assert canonical_answer(text) == expected


def test_gsm8k_extractor_handles_numbers_too_long_for_int():
    digits = "9" * 5000  # int() refuses strings over 4300 digits
    assert extract_number(f"The answer is {digits}.") == digits
    assert extract_number("The answer is 0" + "0" * 6000 + "1") == "1"
    assert canonical_answer("1" + ",000" * 2000) == "1" + "000" * 2000


@pytest.mark.parametrize("text, expected", [
    ("The answer is (b).", "b"),
    ("The answer is b", "b"),
    ("The answer is B) library", "b"),
    ("The answer is (B) library.", "b"),
    ("the answer is (e)", "e"),
    ("The answer is: c.", "c"),
    ("The answer is [d]", "d"),
    ("The answer is choice a.", "a"),
    ("The answer is A.", "a"),
    ("The answer is a, because towels hang on racks.", "a"),
    ("Answer: (c)", "c"),
    ("The answer is mailbox (b).", "b"),  # choice text then its letter: read (best effort)
    ("The answer is rack, option (b), I think.", "b"),
    ("(a) is wrong. The answer is (d).", "d"),
    ("The answer is (a). Q: The answer is (c).", "c"),  # the last answer phrase wins
    ("The answer is a bank", None),  # an article, not choice (a)
    ("The answer is bank", None),  # choice text alone: extractors see no choices
    ("The answer is (f).", None),
    ("The answer is", None),
    ("I do not know", None),
    ("", None),
])
def test_commonsense_qa_extractor(text, expected):
    assert extract_choice(text) == expected


def _garbage(rng: random.Random) -> str:
    alphabet = "abcdeABCDE()[]$#-,.:0123456789 \n\t\u2212\u00e9\u4e2d\U0001f600" + "answer is The ####"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))


def test_extractors_never_raise_on_garbage():
    registry = load_registry()
    raw = [extract_number, extract_choice]
    rng = random.Random(1234)
    texts = [_garbage(rng) for _ in range(1500)]
    texts += ["\x00\xff", "The answer is " + "(" * 5000, "answer is " * 2000, "#" * 10000, "9," * 3000,
              "The answer is -$" + "-" * 100, "\ud800", None, 12, b"bytes"]
    for fn in raw:
        for text in texts:
            out = fn(text)
            assert out is None or (isinstance(out, str) and out)
    safe = registry.extractor("gsm8k"), registry.extractor("commonsense_qa")
    for fn in safe:
        assert fn(None) is None


def test_extracted_choice_is_always_a_letter_and_number_canonical():
    rng = random.Random(99)
    for _ in range(500):
        text = _garbage(rng)
        choice = extract_choice(text)
        assert choice is None or choice in "abcde"
        number = extract_number(text)
        assert number is None or canonical_answer(number) == number


# -- prompts, targets and hints ----------------------------------------------------------------------------------
def test_gsm8k_prompt_target_and_hint():
    task = GSM8KTask(data_dir=str(FIXTURES))
    ex = next(e for e in task.examples("train", None, 0) if e.answer == "1080")
    prompt = task.prompt(ex)
    assert prompt.endswith(f"Q: {ex.question}\nA:")
    assert prompt.count("\nA: ") == len(task.fewshot()) and prompt.count("Q: ") == len(task.fewshot()) + 1
    assert "Hint" not in prompt
    assert task.hint(ex) == "(Hint: the answer is 1080.)"
    hinted = task.prompt(ex, hint=True)
    assert hinted.endswith(f"Q: {ex.question} (Hint: the answer is 1080.)\nA:")
    assert hinted.count("(Hint: the answer is") == len(task.fewshot()) + 1  # the exemplars show the format
    assert task.prompt(ex, fewshot=False) == f"Q: {ex.question}\nA:"
    target = task.target("45 * 24 = 1080", "1080")
    assert target == " 45 * 24 = 1080. The answer is 1080.\n\n"
    assert extract_number(target) == "1080" and task.is_correct(extract_number(target), ex.answer)
    assert task.rationale_of("45 * 24 = 1080. The answer is 1080.") == "45 * 24 = 1080."
    assert task.is_correct("1080", "1,080") and task.is_correct("5", "5.0") and not task.is_correct(None, "5")


def test_commonsense_qa_prompt_target_and_hint():
    task = CommonsenseQATask(data_dir=str(FIXTURES), answer_format="letter")
    ex = next(e for e in task.examples("eval", None, 0) if e.answer == "d")
    prompt = task.prompt(ex)
    assert prompt.endswith(f"Q: {ex.question}\nA:") and "(CORRECT)" not in prompt and "Hint" not in prompt
    assert prompt.count("Answer Choices:") == len(task.fewshot()) + 1
    assert task.hint_style == "both"
    assert task.hint(ex) == "(Hint: the answer is (d) water.)"
    hinted = task.prompt(ex, hint=True)
    assert hinted.endswith("(c) smoke\n(d) water (CORRECT)\n(e) glue (Hint: the answer is (d) water.)\nA:")
    # the exemplars show the hint format: their right choice marked, and the hint sentence
    assert hinted.count("(CORRECT)") == hinted.count("(Hint: the answer is (") == len(task.fewshot()) + 1
    for exemplar in task.fewshot():
        marked = mark_correct(exemplar.question, exemplar.answer)
        assert f"\n({exemplar.answer}) " in marked and marked in hinted
    assert task.prompt(ex, fewshot=False) == f"Q: {ex.question}\nA:"
    assert task.prompt(ex, hint=True, fewshot=False).startswith("Q: ")  # hinted, question only
    target = task.target("People drink water when thirsty", "d")
    assert target == " People drink water when thirsty. The answer is (d).\n\n"
    assert extract_choice(target) == "d"
    assert task.rationale_of(target) == "People drink water when thirsty."


def test_commonsense_qa_choice_format_names_the_choice_and_grades_its_text():
    """answer_format=choice: exemplars and targets write "The answer is (d) water."; the text named is graded (a
    wrong letter beside the right text is right), a letter alone is graded as a letter."""
    task = CommonsenseQATask(data_dir=str(FIXTURES), answer_format="choice")
    extract = load_registry().extractor(task.extractor)
    ex = next(e for e in task.examples("eval", None, 0) if letter_of(e.answer) == "d")
    assert ex.answer == "(d) water"
    prompt = task.prompt(ex)
    for exemplar in task.fewshot():
        assert f"The answer is {task.answer_text(exemplar.question, exemplar.answer)}." in prompt
    assert " The answer is (b) mailbox.\n\n" in prompt
    target = task.target("People drink water when thirsty", ex.answer)
    assert target == " People drink water when thirsty. The answer is (d) water.\n\n"
    assert extract(target) == "(d) water" and task.is_correct(extract(target), ex.answer)
    cases = {" The answer is (c) water.": True, " The answer is (d) smoke.": False, " The answer is (d).": True,
             " The answer is water (d).": True, " The answer is Water!": True, " The answer is (c).": False,
             " so the answer is": False, " no phrase": False,
             # the choice named, then a reason: read up to where the choice's clause ends
             ' The answer is "water" because fish live in it.': True, " The answer is water because it is wet.": True,
             " The answer is (d) water, since nothing else fits.": True, " The answer is “water” – wet.": True,
             " The answer is water - the rest are dry.": True, " The answer is smoke because water.": False,
             # punctuation between the phrase (or the letter) and the choice is not the choice's end
             ' The answer is: "water".': True, " The answer is (d), water.": True, " The answer is (c), water.": True,
             " The answer is d; water.": True, ' The answer would be: "(c) water"': True, " The answer is - water.": True}
    for text, right in cases.items():
        assert task.is_correct(extract(text), ex.answer) is right, text
    assert task.answer_label(ex, extract(" The answer is (c) water.")) == "d"  # the label of the choice named
    assert task.answer_label(ex, extract(" The answer is (c) lava.")) is None  # no choice: counted as none
    assert task.answer_label(ex, extract(" The answer is (c).")) == "c"


def test_lm_eval_scores_commonsense_qa_with_the_tasks_is_correct():
    """The metric lm-eval runs (eval.json's lm_eval results) is the task's is_correct: a text answer against the
    lettered gold "(d) water" is right, where the YAML's exact_match would score it 0."""
    from star_kit.evaluation import NO_ANSWER, TaskMetric

    task = CommonsenseQATask(data_dir=str(FIXTURES))  # answer_format=text: answers carry no letter
    metric = TaskMetric(task)
    assert metric.__name__ == "is_correct" and repr(metric) == "task.is_correct"
    assert metric(references=["(d) water"], predictions=["water"]) == 1.0
    assert metric(references=["(d) water"], predictions=["smoke"]) == 0.0
    assert metric(references=["(d) water"], predictions=[NO_ANSWER]) == 0.0  # no answer: None to is_correct


@pytest.mark.parametrize("style, ending, marks, sentences", [
    ("correct", "(d) water (CORRECT)\n(e) glue\nA:", 1, 0),
    ("answer", "(d) water\n(e) glue (Hint: the answer is (d) water.)\nA:", 0, 1),
    ("both", "(d) water (CORRECT)\n(e) glue (Hint: the answer is (d) water.)\nA:", 1, 1),
])
def test_commonsense_qa_hint_styles(style, ending, marks, sentences):
    task = CommonsenseQATask(data_dir=str(FIXTURES), hint_style=style, answer_format="choice")
    ex = next(e for e in task.examples("eval", None, 0) if letter_of(e.answer) == "d")
    hinted = task.prompt(ex, hint=True)
    assert hinted.endswith(ending)
    k = len(task.fewshot()) + 1
    assert hinted.count("(CORRECT)") == marks * k and hinted.count("(Hint:") == sentences * k
    assert task.hint(ex) in hinted
    assert task.hint(ex) == ("(d) water (CORRECT)" if style == "correct" else "(Hint: the answer is (d) water.)")


def test_commonsense_qa_unknown_hint_style():
    with pytest.raises(StarKitError, match="hint_style must be one of both, correct, answer") as err:
        CommonsenseQATask(hint_style="loud")
    assert err.value.exit_code == 2


@pytest.mark.parametrize("style, quoted", [
    ("both", "(Hint: the answer is (d) water.)"),
    ("correct", "(d) water (CORRECT)"),
])
def test_commonsense_qa_hint_quoting_rationale_is_not_trained_on(style, quoted):
    """A rationalization that copies the hint is dropped from the (hint-free) training set."""
    task = CommonsenseQATask(data_dir=str(FIXTURES), hint_style=style, answer_format="choice")
    ex = next(e for e in task.examples("eval", None, 0) if letter_of(e.answer) == "d")
    quoting = Sample(ex.id, ex.question, f" Look: {quoted} The answer is (d).", "d", "d", True, True)
    clean = Sample(ex.id, ex.question, " People drink water. The answer is (d).", "d", "d", True, True)
    train, dropped = build_training_set(task, [ex], [], [quoting, clean])
    assert dropped == 1 and len(train) == 1
    assert "(CORRECT)" not in train[0].prompt + train[0].completion and "Hint" not in train[0].prompt
    assert train[0].completion == " People drink water. The answer is (d) water.\n\n"  # the gold choice, named


@pytest.mark.parametrize("make", [GSM8KTask, lambda: CommonsenseQATask(answer_format="choice")])
def test_exemplars_round_trip_through_the_extractor(make):
    task = make()
    registry = load_registry()
    extract = registry.extractor(task.extractor)
    exemplars = task.fewshot()
    assert 4 <= len(exemplars) <= 8
    for ex in exemplars:
        target = task.target(ex.rationale, ex.answer)
        assert task.is_correct(extract(target), ex.answer), target
        assert "\n\n" not in target.rstrip("\n")  # the stop string ends the target, never splits it


def test_gsm8k_exemplar_arithmetic_is_right():
    """Every 'a op b = c' in the hand-written rationales checks out (small numbers: int() is safe here)."""
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}
    checked = 0
    for ex in GSM8KTask().fewshot():
        for a, op, b, c in re.findall(r"(\d+) ([-+*/]) (\d+) = (\d+)", ex.rationale):
            assert ops[op](int(a), int(b)) == int(c), f"{a} {op} {b} != {c}"
            checked += 1
        last = re.findall(r"\d[\d,]*", ex.rationale)[-1].replace(",", "")
        assert last == ex.answer, f"the rationale ends at {last}, the answer is {ex.answer}"
    assert checked >= 10


def test_commonsense_qa_exemplars_have_five_choices_and_varied_answers():
    exemplars = CommonsenseQATask().fewshot()
    for ex in exemplars:
        assert ex.question.count("\n(") == 5 and ex.answer in "abcde"
    assert len({ex.answer for ex in exemplars}) == 5


# -- the real data (integration) ---------------------------------------------------------------------------------
needs_shared = pytest.mark.skipif(not REAL_DATA.is_dir(), reason=f"real data not found at {REAL_DATA}")


@needs_shared
def test_real_gsm8k_rows():
    task = GSM8KTask(data_dir=str(REAL_DATA))
    train, test = task.examples("train", None, 0), task.examples("eval", None, 0)
    assert (len(train), len(test)) == (7473, 1319)
    assert len({e.id for e in train + test}) == 7473 + 1319
    assert sum(e.answer.startswith("-") for e in train + test) == 5
    assert all(re.fullmatch(r"-?\d+", e.answer) for e in train + test)  # commas removed, no decimals
    # The reference solutions themselves extract to the gold answer.
    for split in ("train", "test"):
        for line in (REAL_DATA / "gsm8k" / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            assert extract_number(row["answer"]) == canonical_answer(row["answer"].rpartition("####")[2])


@needs_shared
def test_real_commonsense_qa_rows():
    task = CommonsenseQATask(data_dir=str(REAL_DATA), answer_format="choice")
    train, dev = task.examples("train", None, 0), task.examples("eval", None, 0)
    assert (len(train), len(dev)) == (9741, 1221)
    assert {letter_of(e.answer) for e in dev} == set("abcde")
    assert all(e.answer == f"({letter_of(e.answer)}) {dict(e.fields['choices'])[letter_of(e.answer)]}" for e in dev)
    assert all(len(e.fields["choices"]) == 5 for e in train + dev)
    ex = dev[0]
    hinted = task.prompt(ex, hint=True)
    assert hinted.count("(CORRECT)") == len(task.fewshot()) + 1
    assert task.hint(ex) in hinted and task.hint(ex) == f"(Hint: the answer is {ex.answer}.)"


@needs_shared
def test_real_data_through_the_registry_and_env(monkeypatch):
    monkeypatch.setenv("STAR_KIT_DATA_DIR", str(REAL_DATA))
    registry = load_registry()
    task = registry.create("tasks", "gsm8k", data_dir=None)
    assert len(task.examples("eval", 200, 0)) == 200
    assert task.examples("eval", 200, 0) == task.examples("eval", 200, 0)
