"""``--merge-passes``: M(n)'s evaluation and iteration n+1's sampling decoded in one batched generate call when both
are due. Real parts: the tiny Llama built from a config, the real hf sampler (wrapped only to record its calls),
real lm-eval and TRL; fp32 so that the merged and separate runs can be compared text for text.

The task is the tests' lenient-arithmetic (any answer is right, so a random model still trains); like every task,
it samples with its evaluation's stop strings and token budget (checked when a task is created), so its greedy
sampling can ride along with the evaluation.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.store import read_jsonl


@pytest.fixture()
def calls(monkeypatch, test_plugin):
    """Every ``HFSampler.generate`` call's prompts (the real sampler, wrapped)."""
    from star_kit_plugins.hf_sampler import HFSampler

    seen: list[list[str]] = []
    real = HFSampler.generate

    def generate(self, prompts, params, advance=None):
        seen.append(list(prompts))
        return real(self, prompts, params, advance)

    monkeypatch.setattr(HFSampler, "generate", generate)
    return seen


def _run(tiny_model, out, *extra):
    return main(["run", "--model", tiny_model, "--out", str(out), "--train-size", "6", "--eval-size", "4",
                 "--base-steps", "2", "--no-progress", "--sampler-opt", "batch_size=4", "--sampler-opt",
                 "dtype=float32", "--trainer-opt", "per_device_train_batch_size=2", *extra])


def _same(rows):
    """A run's records without what may differ between two equal runs (seconds, run-folder paths, the marker)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", "checkpoint", "sampled_ahead_in")} for r in rows]


def test_merged_pass_is_one_generate_call_with_the_same_results(tiny_model, tmp_path, calls, capsys):
    args = ("--task", "lenient-arithmetic", "--iterations", "2", "--patience", "0")
    merged, separate = tmp_path / "merged", tmp_path / "separate"
    assert _run(tiny_model, merged, *args) == 0
    merged_calls = list(calls)
    log = capsys.readouterr()
    calls.clear()
    assert _run(tiny_model, separate, *args, "--no-merge-passes") == 0
    separate_calls = list(calls)

    # separate: evaluation (4), sampling (6), ...; merged: the two sets of one model in one call; the last
    # evaluation (no iteration 3) alone. Nothing is rationalized: every answer is right.
    assert [len(c) for c in separate_calls] == [4, 6, 4, 6, 4]
    assert [len(c) for c in merged_calls] == [10, 10, 4]
    for k in (0, 1):
        assert merged_calls[k] == separate_calls[2 * k] + separate_calls[2 * k + 1]  # eval prompts, then n+1's
    assert merged_calls[0][:4] == [d["prompt"] for d in read_jsonl(merged / "iter_00" / "eval_docs.jsonl")]

    # the same samples, training sets, evaluations and records
    for n in (1, 2):
        for name in ("samples.jsonl", "train.jsonl", "eval_samples.jsonl"):
            assert (merged / f"iter_{n:02d}" / name).read_text() == (separate / f"iter_{n:02d}" / name).read_text()
    rows, rows_separate = read_jsonl(merged / "metrics.jsonl"), read_jsonl(separate / "metrics.jsonl")
    assert _same(rows) == _same(rows_separate)
    assert rows[1]["kept"] == 6 and rows[2]["steps"] == 2 and rows[2]["checkpoint"]

    # iteration n+1 says its sampling was done ahead: 0 seconds, the marker, the log line
    assert [r["sampled_ahead_in"] for r in rows] == [None, 0, 1]
    assert [r["sampled_ahead_in"] for r in rows_separate] == [None, None, None]
    assert rows[1]["seconds"]["sample"] == rows[2]["seconds"]["sample"] == 0.0
    assert rows_separate[1]["seconds"]["sample"] > 0
    assert json.loads((merged / "iter_02" / "sampled_ahead.json").read_text())["in_iteration"] == 1
    assert not (separate / "iter_02" / "sampled_ahead.json").exists()
    text = log.out + log.err
    assert "iteration 2: sampling was done ahead, in iteration 1's evaluation pass" in text
    assert "iteration 0: evaluation (4 questions) and iteration 1's sampling (6 questions) ran as one pass" in text

    # the option is recorded; a resume may change it (it changes nothing already computed)
    assert yaml.safe_load((merged / "config.yaml").read_text())["merge_passes"] is True
    assert yaml.safe_load((separate / "config.yaml").read_text())["merge_passes"] is False
    assert main(["run", "--resume", str(separate), "--no-progress",  "--merge-passes",
                 "--iterations", "2"]) == 0


@pytest.mark.parametrize("case, extra, sizes, iterations", [
    # sampled rationales (temperature > 0) are not the evaluation's greedy ones
    ("sampling", ("--task", "lenient-arithmetic", "--iterations", "1", "--temperature", "0.7"),
     [4, 6, 4], 1),
    # patience 1: iteration 2 runs only if M(1) beats M(0); M(1)'s evaluation is not merged, and iteration 1's
    # equal accuracy (every answer is right) stops the run: nothing was sampled for iteration 2
    ("uncertain", ("--task", "lenient-arithmetic", "--iterations", "2", "--patience", "1"), [10, 4], 1),
])
def test_no_merged_pass_unless_due(tiny_model, tmp_path, calls, case, extra, sizes, iterations):
    out = tmp_path / "run"
    assert _run(tiny_model, out, *extra) == 0
    assert [len(c) for c in calls] == sizes
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == list(range(iterations + 1))
    assert not (out / "iter_02").exists()
    merged = case == "uncertain"
    assert (out / "iter_01" / "sampled_ahead.json").exists() == merged
    assert rows[1]["sampled_ahead_in"] == (0 if merged else None)


def test_a_resumed_run_with_samples_on_disk_does_not_merge(tiny_model, tmp_path, calls):
    """Iteration 1's samples already there (a run interrupted after them): the baseline evaluation runs alone."""
    out = tmp_path / "run"
    args = ("--task", "lenient-arithmetic", "--iterations", "1")
    assert _run(tiny_model, out, *args) == 0
    for name in ("eval.json", "eval_samples.jsonl"):
        (out / "iter_00" / name).unlink()
    (out / "metrics.jsonl").unlink()
    calls.clear()
    before = (out / "iter_01" / "samples.jsonl").read_text()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert [len(c) for c in calls] == [4]  # the baseline evaluation; iteration 1 read back, evaluated from disk
    assert (out / "iter_01" / "samples.jsonl").read_text() == before


# -- a kill during the merged pass -------------------------------------------------------------------------------
def _cmd(tiny_model, out, resume=False):
    tail = ["--no-progress"]
    if resume:
        return [sys.executable, "-m", "star_kit.cli", "run", "--resume", str(out), *tail]
    return [sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out", str(out),
            "--task", "lenient-arithmetic", "--iterations", "2", "--patience", "0", "--seed", "7",
            "--train-size", "24", "--eval-size", "16", "--base-steps", "2", "--sampler-opt", "dtype=float32",
            "--sampler-opt", "batch_size=4", "--trainer-opt", "per_device_train_batch_size=2", *tail]


def _results(out):
    return (_same(read_jsonl(out / "metrics.jsonl")),
            *[(out / f"iter_{n:02d}" / name).read_text() for n in (1, 2)
              for name in ("samples.jsonl", "train.jsonl", "eval_samples.jsonl")])


def test_sigkill_during_the_merged_pass_then_resume(tiny_model, tmp_path, plugin_env):
    """SIGKILL while M(1) is evaluated together with iteration 2's prompts: nothing of iteration 2 is on disk;
    the resumed run redoes the merged pass and ends where an uninterrupted run ends."""
    reference = tmp_path / "reference"
    subprocess.run(_cmd(tiny_model, reference), env=plugin_env, check=True, capture_output=True, timeout=600)
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tiny_model, out), env=plugin_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    it1, it2 = out / "iter_01", out / "iter_02"
    deadline, killed = time.time() + 300, False
    while time.time() < deadline and proc.poll() is None:
        if (it1 / "checkpoint").exists() and (it1 / "eval_docs.jsonl").exists():  # M(1)'s merged pass is running
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed, f"the run ended before M(1)'s evaluation: {proc.stderr.read().decode()[-1500:]}"
    assert not (it1 / "eval.json").exists()  # killed in the pass, before anything was published ...
    assert not it2.exists() or not any(it2.iterdir())  # ... so iteration 2 has no file at all
    done = subprocess.run(_cmd(tiny_model, out, resume=True), env=plugin_env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _results(out) == _results(reference)
    assert [r["sampled_ahead_in"] for r in read_jsonl(out / "metrics.jsonl")] == [None, 0, 1]


def test_ride_along_samples_are_published_before_the_evaluation_is_recorded(tiny_model, tmp_path, test_plugin,
                                                                             monkeypatch):
    # A kill right after M(n)'s eval.json must not lose iteration n+1's merged samples: they are written first.
    import star_kit.evaluation as evaluation

    seen, real = [], evaluation.write_json

    def write_json(path, data):
        if Path(path).name == "eval.json":
            n = int(Path(path).parent.name.split("_")[1])
            seen.append((n, (Path(path).parent.parent / f"iter_{n + 1:02d}" / "samples.jsonl").exists()))
        return real(path, data)

    monkeypatch.setattr(evaluation, "write_json", write_json)
    assert _run(tiny_model, tmp_path / "run", "--task", "lenient-arithmetic", "--iterations", "2",
                "--patience", "0") == 0
    assert seen == [(0, True), (1, True), (2, False)]  # M(2)'s evaluation has no iteration 3 to carry
