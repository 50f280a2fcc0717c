"""Malformed data rows: a clear error with file and line, or with --skip-bad-rows a counted skip."""

import json
import re
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


def test_a_byte_order_mark_is_not_a_bad_row(tmp_path):
    """A JSONL file saved with a UTF-8 byte-order mark (as Windows tools write it) reads as without one."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    train = root / "gsm8k" / "train.jsonl"
    plain = load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0)
    train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    assert load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0) == plain


def test_commonsense_qa_saved_from_the_hub_reads_as_the_v1_11_files(tmp_path):
    """tau/commonsense_qa written to JSONL by datasets (``ds.to_json``: question, choices.label/text) is read as the
    v1.11 layout it was converted from."""
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    dev = root / "commonsenseqa" / "dev_rand_split.jsonl"
    v111 = load_registry().create("tasks", "commonsense_qa", data_dir=str(root)).examples("eval", None, 0)
    hub = []
    for line in dev.read_text().splitlines():
        r = json.loads(line)
        hub.append({"id": r["id"], "question": r["question"]["stem"], "question_concept": r["question"].get(
            "question_concept"), "choices": {"label": [c["label"] for c in r["question"]["choices"]],
                                             "text": [c["text"] for c in r["question"]["choices"]]},
                    "answerKey": r["answerKey"]})
    dev.write_text("".join(json.dumps(r) + "\n" for r in hub))
    assert load_registry().create("tasks", "commonsense_qa", data_dir=str(root)).examples("eval", None, 0) == v111
    dev.write_text(json.dumps({**hub[0], "choices": {"label": ["A"]}}) + "\n")
    with pytest.raises(DataError, match=r"dev_rand_split.jsonl:1: a record in the hub's layout .* without 'text'"):
        load_registry().create("tasks", "commonsense_qa", data_dir=str(root)).examples("eval", None, 0)


@pytest.mark.parametrize("fmt", ["parquet", "csv", "json", "save_to_disk"])
def test_a_split_as_parquet_csv_json_or_a_saved_dataset_reads_as_its_jsonl(tmp_path, fmt):
    """The formats a Hugging Face user has a split in: the same name as .parquet/.csv/.json (an array), or a
    save_to_disk folder; read as the .jsonl file is, errors naming 'FILE, row N'."""
    import datasets

    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    train = root / "gsm8k" / "train.jsonl"
    jsonl = load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0)
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    train.unlink()
    ds = datasets.Dataset.from_list(rows)
    if fmt == "save_to_disk":
        ds.save_to_disk(str(root / "gsm8k" / "train"))
    elif fmt == "json":
        (root / "gsm8k" / "train.json").write_text(json.dumps(rows))  # an array, not JSON lines
    else:
        getattr(ds, f"to_{fmt}")(str(root / "gsm8k" / f"train.{fmt}"))
    assert load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0) == jsonl
    if fmt == "csv":
        (root / "gsm8k" / "train.csv").write_text("question,answer\nHow many?,no hashes here\n")
        with pytest.raises(DataError, match=r"train.csv, row 1: "):
            load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0)


def test_a_missing_split_names_the_formats_read(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(FIXTURES, root)
    (root / "gsm8k" / "train.jsonl").unlink()
    with pytest.raises(DataError, match=r"train.jsonl not found \(the data folder should hold gsm8k/train.jsonl, or "
                                        r"the same name as .parquet, .csv or .json, or a datasets save_to_disk"):
        load_registry().create("tasks", "gsm8k", data_dir=str(root)).examples("train", None, 0)
    # --data-dir DATA/gsm8k, one level too deep: the message names the folder to give
    with pytest.raises(DataError, match=rf"gsm8k/gsm8k/test.jsonl not found .*; --data-dir is the folder that holds "
                                        rf"gsm8k/: {re.escape(str(root))}\)$"):
        load_registry().create("tasks", "gsm8k", data_dir=str(root / "gsm8k")).examples("eval", None, 0)


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
    test = root / "gsm8k" / "test.jsonl"
    test.write_text(test.read_text() + "{not json\n")  # a bad row in the held-out split too
    out = tmp_path / "run"
    code = main(["run", "--task", "gsm8k", "--data-dir", str(root), "--model", tiny_model, "--out", str(out),
                 "--iterations", "0", "--eval-size", "1", "--skip-bad-rows", "--no-progress"])
    assert code == 0
    assert "skipped 4 malformed data rows" in capsys.readouterr().err
    assert len(json.loads((out / "skipped_rows.json").read_text())) == 4
    # bench --run draws the held-out questions as the run did: without the bad rows
    assert main(["bench", "--run", str(out), "--no-progress"]) == 0
    assert main(["run", "--task", "gsm8k", "--data-dir", str(root), "--model", tiny_model,
                 "--out", str(tmp_path / "run2"), "--iterations", "0", "--no-progress"]) == 2


def test_bench_skips_bad_rows_when_asked(bad_data, tiny_model, tmp_path, capsys):
    """bench stops at a bad row, naming it, before a model loads; --skip-bad-rows counts and drops it. --out that
    cannot be a folder is refused before a model loads too."""
    root, _ = bad_data
    test = root / "gsm8k" / "test.jsonl"
    test.write_text(test.read_text() + "{not json\n")
    bench = ["bench", "--model", tiny_model, "--tasks", "gsm8k", "--data-dir", str(root), "--no-progress"]
    assert main(bench) == 2
    assert "gsm8k/test.jsonl:" in capsys.readouterr().err
    assert main([*bench, "--skip-bad-rows"]) == 0
    assert "task 'gsm8k': 1 malformed data row skipped (--skip-bad-rows); first: " in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main([*bench, "--skip-bad-rows", "--out", str(tmp_path / "a-file")]) == 2
    assert f"--out {tmp_path / 'a-file'}: a file, not a folder" in capsys.readouterr().err
    assert main([*bench, "--skip-bad-rows", "--out", str(tmp_path / "a-file" / "sub")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    import star_kit

    rows = star_kit.bench(tiny_model, "gsm8k", data_dir=str(root), skip_bad_rows=True, progress=False)  # the API
    assert [r["task"] for r in rows] == ["gsm8k"]
    with pytest.raises(star_kit.errors.StarKitError, match="skip_bad_rows must be a bool, got 'yes'"):
        star_kit.bench(tiny_model, "gsm8k", data_dir=str(root), skip_bad_rows="yes")


def test_print_config_refuses_what_the_run_refuses_before_a_model_loads(bad_data, tmp_path, capsys):
    """--print-config reads the data's rows and looks at --out as the run would, writing nothing."""
    root, n_good = bad_data
    out = tmp_path / "out"
    run = ["run", "--task", "gsm8k", "--data-dir", str(root), "--out", str(out), "--print-config"]
    assert main(run) == 2
    assert f"gsm8k/train.jsonl:{n_good + 1}: invalid JSON" in capsys.readouterr().err
    assert main([*run, "--skip-bad-rows"]) == 0
    assert not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    assert main([*run, "--skip-bad-rows"]) == 2
    assert f"--out {out} is not empty (notes.txt) and holds no star-kit run" in capsys.readouterr().err
    (out / "config.yaml").write_text("task: gsm8k\n")
    assert main([*run, "--skip-bad-rows"]) == 2
    assert f"{out} already holds a run: pass --resume {out}" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine\n" and sorted(p.name for p in out.iterdir()) == ["config.yaml",
                                                                                                   "notes.txt"]
