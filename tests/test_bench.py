"""`star-kit bench` on a tiny randomly initialised model (real transformers generate, real lm-eval)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.store import read_jsonl

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
KEYS = {"model", "task", "accuracy", "stderr", "n", "seconds"}
FAST = ["--sampler-opt", "dtype=float32"]  # a 32-wide model decodes ~20x faster in fp32 than bf16 on CPU


def test_bench_models_by_tasks_writes_json(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "--model", tiny_model, "--tasks", "arithmetic,commonsense_qa,gsm8k", "--limit", "3",
               "--data-dir", str(FIXTURES), "--json", str(out), "--no-progress", "--task-opt", "arithmetic.digits=1",
               "--out", str(tmp_path / "samples"), *FAST])
    assert rc == 0
    rows = json.loads(out.read_text())
    assert [r["task"] for r in rows] == ["arithmetic", "commonsense_qa", "gsm8k"]
    for r in rows:
        assert KEYS <= set(r)
        assert r["model"] == tiny_model and r["seconds"] >= 0 and r["metric"] == "task.is_correct"
        # the accuracy is the share of the kept evaluation samples that the task's is_correct accepts
        kept = read_jsonl(next((tmp_path / "samples").rglob(f"{r['task']}/eval_samples.jsonl")))
        assert len(kept) == r["n"] and r["accuracy"] == sum(s["correct"] for s in kept) / len(kept)
        assert r["no_answer"] == sum(s["predicted"] is None for s in kept)
        ev = json.loads(next((tmp_path / "samples").rglob(f"{r['task']}/eval.json")).read_text())
        assert (ev["model"], ev["sampler"], ev["accuracy"]) == (tiny_model, "hf", r["accuracy"])  # what was benched
        # lm-eval's own score is the task's is_correct too (the YAML's exact_match would read "(b) x" vs "x" as 0)
        assert ev["lm_eval"]["results"][ev["task"]]["is_correct,star_kit"] == r["accuracy"]
    # --limit 3, but the fixture eval splits hold 2 rows each
    assert [r["n"] for r in rows] == [3, 2, 2]
    printed = capsys.readouterr().out
    assert "star-kit bench" in printed and "commonsense_qa" in printed and "n=2" in printed
    kept = list((tmp_path / "samples").rglob("eval_samples.jsonl"))
    assert len(kept) == 3


def test_bench_a_run_directory_side_by_side(tiny_model, tmp_path, capsys):
    """--run benches iteration 0 (the base model from config.yaml) and each iteration's checkpoint."""
    run = tmp_path / "run"
    (run / "iter_01").mkdir(parents=True)
    shutil.copytree(tiny_model, run / "iter_01" / "checkpoint")
    (run / "iter_02").mkdir()  # unfinished iteration: no checkpoint, not benched
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"task": "arithmetic", "model": tiny_model, "eval_size": 2, "seed": 3, "task_options": {"digits": 1}}))
    out = tmp_path / "bench.json"
    assert main(["bench", "--run", str(run), "--json", str(out), "--no-progress", *FAST]) == 0
    rows = json.loads(out.read_text())
    assert [(r["iteration"], r["task"], r["n"]) for r in rows] == [(0, "arithmetic", 2), (1, "arithmetic", 2)]
    assert rows[1]["model_path"] == str(run / "iter_01" / "checkpoint")
    assert {r["run"] for r in rows} == {str(run)}  # which run an "iter 1" row is from
    assert f"note: --run {run}: iter_02 has no checkpoint" in capsys.readouterr().err.replace("\n", " ")
    # one run per bench: a second --run was dropped silently
    assert main(["bench", "--run", str(run), "--run", str(tmp_path / "other"), "--no-progress"]) == 2
    assert "--run takes one run directory, given 2" in capsys.readouterr().err
    # the run's sampler, when it named one, is said: it serves every model of the bench
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "sampler": "hf"}))
    assert main(["bench", "--run", str(run), "--no-progress", *FAST]) == 0
    assert f"note: sampler 'hf' as --run {run} used it" in capsys.readouterr().err.replace("\n", " ")
    # --limit overrides the run's eval size; --limit all means every question, not the run's eval size
    assert main(["bench", "--run", str(run), "--json", str(out), "--limit", "3", "--no-progress", *FAST]) == 0
    assert [r["n"] for r in json.loads(out.read_text())] == [3, 3]
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"task": "commonsense_qa", "model": tiny_model, "eval_size": 1, "data_dir": str(FIXTURES)}))
    for limit, n in ((None, 1), ("all", 2)):  # the fixture's dev split holds 2 questions
        extra = ["--limit", limit] if limit else []
        assert main(["bench", "--run", str(run), "--json", str(out), *extra, "--no-progress", *FAST]) == 0
        assert [r["n"] for r in json.loads(out.read_text())] == [n, n], limit


def test_bench_unknown_task_exits_2_with_the_list(tiny_model, capsys):
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic,no-such-task", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no-such-task" in err
    for name in ("arithmetic", "commonsense_qa", "gsm8k", "lm-eval"):
        assert name in err


def test_bench_needs_a_model_and_a_task(tiny_model, capsys):
    assert main(["bench", "--tasks", "arithmetic"]) == 2
    assert main(["bench", "--model", tiny_model]) == 2
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--sampler", "nope"]) == 2
    assert main(["bench", "--model", "no/such-model-here", "--tasks", "arithmetic"]) == 2
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--limit", "-1"]) == 2


def test_bench_task_option_for_a_task_not_benched_is_refused(tiny_model, capsys):
    # `gsm8k.digits` while benching arithmetic (or a misspelled prefix) was dropped silently and the run went on
    for key in ("gsm8k.digits=1-2", "arithmatic.digits=1-2"):
        assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--task-opt", key]) == 2
        err = capsys.readouterr().err
        assert f"--task-opt {key.split('=')[0]}" in err and "not one of the benched tasks (arithmetic)" in err


def test_bench_offline_without_data_is_one_line(tiny_model, monkeypatch, capsys):
    monkeypatch.delenv("STAR_KIT_DATA_DIR", raising=False)
    assert main(["bench", "--model", tiny_model, "--tasks", "gsm8k", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--data-dir" in err and "STAR_KIT_DATA_DIR" in err
    assert "Traceback" not in err


def test_bench_lm_eval_task_offline_names_the_dataset(tiny_model, monkeypatch, capsys):
    """A task lm-eval knows (not star-kit's) goes through lm-eval's HFLM; offline it fails in one line."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["bench", "--model", tiny_model, "--tasks", "arc_easy", "--limit", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "allenai/ai2_arc" in err and "Traceback" not in err


@pytest.mark.parametrize("metrics, expected", [
    ({"alias": "x", "acc,none": 0.5, "acc_stderr,none": 0.1, "acc_norm,none": 0.6, "acc_norm_stderr,none": 0.1},
     ("acc,none", 0.5, 0.1)),
    ({"exact_match,strict-match": 0.2, "exact_match_stderr,strict-match": 0.05}, ("exact_match,strict-match", 0.2, 0.05)),
    ({"bits,none": 1.5, "bits_stderr,none": "N/A"}, ("bits,none", 1.5, None)),
    ({"alias": "x"}, ("", None, None)),
])
def test_headline_metric(metrics, expected):
    from star_kit.benching import headline_metric

    assert headline_metric(metrics) == expected


def test_bench_run_takes_the_runs_task_options_then_the_ones_given_with_or_without_prefix():
    from star_kit.benching import options_for, with_run_task_options

    saved = {"digits": "1-5", "eval_digits": None, "rationales": True}  # a run records its task's defaults too
    for given in ({"eval_digits": "6-8"}, {"arithmetic.eval_digits": "6-8"}):
        options = with_run_task_options(given, "arithmetic", saved)
        assert options_for("arithmetic", options) == {"digits": "1-5", "eval_digits": "6-8", "rationales": True}
    # an unprefixed option still reaches the other benched tasks; the run's options stay the run task's own
    options = with_run_task_options({"rationales": False}, "arithmetic", saved)
    assert options_for("gsm8k", options) == {"rationales": False}
    assert options_for("arithmetic", options)["rationales"] is False
    assert with_run_task_options({"k": 1}, "", saved) == {"k": 1}  # no --run


def test_bench_json_path_checked_first_leaves_an_earlier_file_alone(tmp_path, capsys):
    earlier = tmp_path / "results.json"
    earlier.write_text('[{"accuracy": 0.5}]\n')
    assert main(["bench", "--model", str(tmp_path / "no-model"), "--tasks", "arithmetic", "--limit", "2",
                 "--json", str(earlier), "--no-progress"]) == 2  # the model is missing: after the path's check
    assert earlier.read_text() == '[{"accuracy": 0.5}]\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no scratch file left behind
    capsys.readouterr()
    assert main(["bench", "--model", "m", "--tasks", "arithmetic", "--json", str(tmp_path), "--no-progress"]) == 2
    assert f"--json {tmp_path}: a folder, not a file" in capsys.readouterr().err


def test_models_whose_names_make_the_same_folder_keep_their_own_samples():
    from star_kit.benching import model_folders

    assert model_folders(["a/b", "a_b", "a:b", "iter 1"]) == {"a/b": "a_b", "a_b": "a_b-2", "a:b": "a_b-3",
                                                             "iter 1": "iter_1"}


def test_benching_every_question_of_a_large_task_is_said(tiny_model, capsys):
    """No --limit: every question, as lm-eval does; for the arithmetic task's 1000 held-out sums (GSM8K's 1319)
    that is said before anything loads, with the flag that benches fewer. (Here the run then stops on a bad
    sampler option, before any model loads.)"""
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--sampler-opt", "bogus=1",
                 "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "note: task 'arithmetic': all its 1000 questions, for each of 1 model (--limit N benches N of them)" in err
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--limit", "4", "--sampler-opt",
                 "bogus=1", "--no-progress"]) == 2
    assert "all its" not in capsys.readouterr().err
