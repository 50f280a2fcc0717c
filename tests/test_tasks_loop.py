"""One STaR iteration on commonsense_qa and gsm8k with the real data files (tiny model: the whole path runs)."""

import pytest

from star_kit.cli import main
from star_kit.store import read_jsonl

from conftest import SHARED_DATA


@pytest.mark.parametrize("task", ["commonsense_qa", "gsm8k"])
def test_one_iteration_on_real_data(task, tiny_model, tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    out = tmp_path / "run"
    code = main(["run", "--task", task, "--data-dir", str(SHARED_DATA), "--model", tiny_model, "--out", str(out),
                 "--iterations", "1", "--train-size", "3", "--eval-size", "2", "--base-steps", "1",
                 "--no-progress", "--sampler-opt", "batch_size=3"])
    assert code == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["sampled"] == 3 and rows[1]["eval_examples"] == 2
    samples = read_jsonl(out / "iter_01" / "samples.jsonl")
    assert all(s["gold"] for s in samples)
    if task == "commonsense_qa":
        assert all(s["gold"] in "abcde" for s in samples)
