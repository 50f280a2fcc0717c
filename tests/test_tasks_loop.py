"""One STaR iteration on commonsense_qa and gsm8k with the real data files (tiny model: the whole path runs), and the
answer-letter distribution recorded per iteration (metrics.jsonl, metrics.csv, report.html) for the choice task."""

import csv
import json
import re

import pytest

from star_kit.cli import main
from star_kit.store import read_jsonl

from conftest import REAL_DATA


@pytest.mark.parametrize("task", ["commonsense_qa", "gsm8k"])
def test_one_iteration_on_real_data(task, tiny_model, tmp_path):
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data not found at {REAL_DATA}")
    out = tmp_path / "run"
    code = main(["run", "--task", task, "--data-dir", str(REAL_DATA), "--model", tiny_model, "--out", str(out),
                 "--iterations", "1", "--train-size", "3", "--eval-size", "2", "--base-steps", "1",
                 "--no-progress", "--sampler-opt", "batch_size=3"])
    assert code == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["sampled"] == 3 and rows[1]["eval_examples"] == 2
    samples = read_jsonl(out / "iter_01" / "samples.jsonl")
    assert all(s["gold"] for s in samples)
    if task == "commonsense_qa":
        assert all(re.fullmatch(r"\([a-e]\) .+", s["gold"]) for s in samples)  # "(b) mailbox"
    # the answer-letter distribution: recorded per iteration for the multiple-choice task, not for GSM8K
    if task == "commonsense_qa":
        for row in rows:
            evals = read_jsonl(out / f"iter_{row['iteration']:02d}" / "eval_samples.jsonl")
            assert sum(row["eval_labels"].values()) == row["eval_examples"] == len(evals)
            assert set(row["eval_labels"]) <= set("abcde") | {"no_choice", "none"}
            ev = json.loads((out / f"iter_{row['iteration']:02d}" / "eval.json").read_text())
            assert row["eval_labels"].get("none", 0) == ev["no_answer"]  # no answer; a non-choice is no_choice
        assert rows[0]["train_labels"] is None
        trained = read_jsonl(out / "iter_01" / "train.jsonl")
        assert sum((rows[1]["train_labels"] or {}).values()) == rows[1]["train_examples"] == len(trained)
        page = (out / "report.html").read_text(encoding="utf-8")
        assert "eval answers" in page and "train answers" in page
        letters = max(rows[1]["eval_labels"], key=rows[1]["eval_labels"].get)
        assert f"{letters} {rows[1]['eval_labels'][letters]}" in page
        with open(out / "metrics.csv", newline="", encoding="utf-8") as fh:  # one JSON cell per count
            cells = list(csv.DictReader(fh))
        assert [json.loads(c["eval_labels"]) for c in cells] == [r["eval_labels"] for r in rows]
    else:
        assert all(r["eval_labels"] is None and r["train_labels"] is None for r in rows)
        assert "eval answers" not in (out / "report.html").read_text(encoding="utf-8")
