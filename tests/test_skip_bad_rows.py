"""Malformed data rows: a clear error with file and line, or with --skip-bad-rows a counted skip."""

import json
import shutil
from pathlib import Path

import pytest

from star_kit.cli import main
from star_kit.errors import DataError
from star_kit.registry import load_registry

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture()
def bad_data(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    train = root / "gsm8k" / "train.jsonl"
    good = train.read_text()
    train.write_text(good + "{not json\n" + json.dumps({"question": "", "answer": "#### 3"}) + "\n"
                     + json.dumps({"question": "How many?"}) + "\n")
    return root, good.count("\n")


def test_bad_rows_stop_with_file_and_line(bad_data):
    root, n_good = bad_data
    task = load_registry().create("tasks", "gsm8k", data_dir=str(root))
    with pytest.raises(DataError, match=rf"gsm8k/train.jsonl:{n_good + 1}: invalid JSON"):
        task.examples("train", None, 0)


def test_skip_bad_rows_counts_them(bad_data):
    root, n_good = bad_data
    task = load_registry().create("tasks", "gsm8k", data_dir=str(root), skip_bad_rows=True)
    assert len(task.examples("train", None, 0)) == n_good
    assert len(task.skipped_rows) == 3
    assert f"train.jsonl:{n_good + 2}: empty 'question'" in task.skipped_rows[1]
    assert f"train.jsonl:{n_good + 3}: missing field 'answer'" in task.skipped_rows[2]


def test_a_repeated_id_names_both_rows_and_can_be_skipped(tmp_path):
    """CommonsenseQA's ids come from the data: a row that repeats one is named with its file and line (and the
    first row's), before any work; --skip-bad-rows drops it."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    train = root / "commonsenseqa" / "train_rand_split.jsonl"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join(lines) + lines[0])
    task = load_registry().create("tasks", "commonsense_qa", data_dir=str(root))
    ident = json.loads(lines[0])["id"]
    with pytest.raises(DataError, match=rf"train_rand_split.jsonl:{len(lines) + 1}: id '{ident}' repeats that of "
                                        rf".*train_rand_split.jsonl:1"):
        task.examples("train", None, 0)
    skipping = load_registry().create("tasks", "commonsense_qa", data_dir=str(root), skip_bad_rows=True)
    assert len(skipping.examples("train", None, 0)) == len(lines) and len(skipping.skipped_rows) == 1


@pytest.mark.parametrize("text, skip, message", [
    ("", False, "has no rows (an empty file)"),
    ("\n  \n", False, "has no rows (an empty file)"),
    ("{not json\n[1]\n", True, "has no rows (2 malformed, skipped)"),
])
def test_a_data_file_without_rows_is_one_line_naming_it(tmp_path, capsys, text, skip, message):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    (root / "gsm8k" / "train.jsonl").write_text(text)
    task = load_registry().create("tasks", "gsm8k", data_dir=str(root), skip_bad_rows=skip)
    with pytest.raises(DataError, match=rf"gsm8k/train.jsonl {message.replace('(', '[(]').replace(')', '[)]')}"):
        task.examples("train", 4, 0)
    assert main(["run", "--task", "gsm8k", "--data-dir", str(root), "--out", str(tmp_path / "run"), "--train-size",
                 "4", "--eval-size", "2", "--no-progress", *(["--skip-bad-rows"] if skip else [])]) == 2
    assert f"gsm8k/train.jsonl {message}" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_run_with_skip_bad_rows_reports_at_the_end(bad_data, tiny_model, tmp_path, capsys):
    root, _ = bad_data
    out = tmp_path / "run"
    code = main(["run", "--task", "gsm8k", "--data-dir", str(root), "--model", tiny_model, "--out", str(out),
                 "--iterations", "0", "--eval-size", "1", "--skip-bad-rows", "--no-progress"])
    assert code == 0
    assert "skipped 3 malformed data rows" in capsys.readouterr().err
    assert len(json.loads((out / "skipped_rows.json").read_text())) == 3
    assert main(["run", "--task", "gsm8k", "--data-dir", str(root), "--model", tiny_model,
                 "--out", str(tmp_path / "run2"), "--iterations", "0", "--no-progress"]) == 2
