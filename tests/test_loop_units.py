"""The loop's pure parts: step schedule, training-set building (never a hint), patience, config, CLI errors."""


import pytest

from star_kit.cli import main
from star_kit.config import RunConfig, steps_for
from star_kit.loop import build_training_set, should_stop, training_pairs
from star_kit.records import IterationResult, Sample
from star_kit.registry import load_registry


def test_step_schedule_exponential_and_linear():
    config = RunConfig()
    assert [steps_for(n, config) for n in range(1, 6)] == [40, 48, 58, 69, 83]  # 40·1.2^(n-1)
    assert steps_for(16, config) == round(40 * 1.2**15)
    linear = RunConfig(step_schedule="linear")
    assert [steps_for(n, linear) for n in (1, 2, 3)] == [40, 60, 80]
    assert steps_for(2, RunConfig(base_steps=10, step_growth=2.0)) == 20
    with pytest.raises(ValueError):
        steps_for(0, config)


@pytest.mark.parametrize("args, message", [
    # a falling schedule reaches 0 steps, which the trainer would read as "train whole epochs" (max_steps <= 0)
    (["--step-growth", "0.5", "--iterations", "9"], "--step-growth 0.5 with --base-steps 40 gives 0 training "
                                                    "steps at iteration 8 of 9"),
    (["--step-growth", "0.4", "--base-steps", "1", "--iterations", "3"], "gives 0 training steps at iteration 2"),
    (["--step-growth", "1e300", "--iterations", "4"], "more training steps than can be counted at iteration 3"),
    # the trainer refused it only after the baseline and the sampling
    (["--seed", "-1"], "--seed must be between 0 and 4294967295, got -1"),
    (["--eval-seed", str(2**32)], "--eval-seed must be between 0 and 4294967295"),
])
def test_a_step_schedule_or_seed_the_trainer_cannot_take_is_refused_at_the_start(args, message, capsys, tmp_path):
    assert main(["run", *args, "--out", str(tmp_path / "run"), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--step-growth", "0.5", "--iterations", "7", "--out", str(tmp_path / "r"),
                 "--print-config"]) == 0  # 40 ... 1 step: each a step count


def _sample(example, completion, hinted=False):
    return Sample(example.id, example.question, completion, None, example.answer, True, hinted)


def test_training_set_never_contains_the_hint():
    task = load_registry().create("tasks", "arithmetic")
    examples = task.examples("train", 4, 0)
    kept = [_sample(examples[0], f" {examples[0].question} is easy. The answer is {examples[0].answer}.")]
    rationalized = [
        _sample(examples[1], f" As the hint says. The answer is {examples[1].answer}.", hinted=True),
        _sample(examples[2], f" {task.hint(examples[2])} so The answer is {examples[2].answer}.", hinted=True),
    ]
    train, dropped = build_training_set(task, examples, kept, rationalized)
    assert dropped == 1  # the rationale that quotes the hint
    assert [t.source for t in train] == ["sampled", "rationalized"]
    for t in train:
        text = t.prompt + t.completion
        assert "Hint" not in text
        for ex in examples:
            assert task.hint(ex) not in text
        assert t.prompt == f"Q: {next(e for e in examples if e.id == t.example_id).question}\nA:"
        assert t.completion.endswith(".\n\n")
    fewshot_train, _ = build_training_set(task, examples, kept, [], fewshot=True)
    assert fewshot_train[0].prompt == task.prompt(examples[0])
    # duplicates collapse
    again, _ = build_training_set(task, examples, kept + kept, [])
    assert len(again) == 1
    counts = {}
    pairs, _ = training_pairs(task, examples, kept + kept + kept, [], counts=counts)
    assert len(pairs) == 1 and counts == {"merged": 2}  # the loop logs how many were merged


def test_patience():
    hist = lambda *accs: [IterationResult(iteration=i, accuracy=a) for i, a in enumerate(accs)]
    assert not should_stop(hist(0.1, 0.2), 1)
    assert should_stop(hist(0.1, 0.2, 0.2), 1)
    assert not should_stop(hist(0.1, 0.2, 0.2), 2)
    assert should_stop(hist(0.3, 0.2, 0.25), 2)
    assert not should_stop(hist(0.3, 0.2, 0.35), 2)
    assert not should_stop(hist(0.3, 0.2, 0.1), 0)


def test_the_resume_line_says_what_is_left(tmp_path):
    from star_kit.loop import StarRun
    from star_kit.progress import Phases
    from star_kit.store import write_jsonl

    def note(accs, **config):
        star = StarRun(RunConfig(out=str(tmp_path), **config), load_registry(), Phases(enabled=False), log=print)
        return star.resume_note([IterationResult(iteration=i, accuracy=a) for i, a in enumerate(accs)])

    head = f"resuming {tmp_path}: iterations 0, 1, 2, 3 finished (read back); "
    assert note([.1, .2, .3, .4], iterations=3) == head + "nothing left to do (--iterations 4 would add one)"
    # --iterations lowered on resume: the next number that adds one is still 4
    assert note([.1, .2, .3, .4], iterations=1) == head + "nothing left to do (--iterations 4 would add one)"
    # the patience rule stops the run before iteration 3 starts
    assert note([.5, .4, .3], iterations=3, patience=1) == \
        f"resuming {tmp_path}: iterations 0, 1, 2 finished (read back); nothing left to do (accuracy has not " \
        "improved for 1 iterations)"
    (tmp_path / "iter_03").mkdir()
    write_jsonl(tmp_path / "iter_03" / "eval.json", [])  # stopped after evaluating, before the record
    assert note([.1, .2, .3], iterations=3).endswith("; iteration 3: every step finished, only its record is written")


def test_config_file_flags_and_print_config(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: arithmetic\niterations: 7\ntrain_size: 10\ntask_options: {digits: 1-2}\n")
    assert main(["run", "--config", str(cfg), "--iterations", "2", "--task-opt", "eval_digits=3",
                 "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "iterations: 2" in out and "train_size: 10" in out
    assert "digits: 1-2" in out and "eval_digits: 3" in out


def test_bad_config_key_names_it(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("iteratons: 7\n")
    assert main(["run", "--config", str(cfg), "--print-config"]) == 2
    assert "unknown key 'iteratons'" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,kind", [
    ("--task", "sudoku", "task"),
    ("--sampler", "nope", "sampler"),
    ("--trainer", "nope", "trainer"),
    ("--model", "no-such-model-anywhere", "model"),
])
def test_unknown_names_exit_2_with_one_line(tmp_path, capsys, flag, value, kind):
    code = main(["run", flag, value, "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert f"unknown {kind} '{value}'" in err and "available:" in err
    assert len(err.splitlines()) == 1


def test_a_plugin_that_raises_mid_run_is_named(tmp_path, capsys, test_plugin, tiny_model):
    code = main(["run", "--model", tiny_model, "--sampler", "broken", "--out", str(tmp_path / "run"),
                 "--no-progress", "--train-size", "2", "--eval-size", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "sampler 'broken' (plugin 'plugins_for_tests', distribution '(--plugin)') failed" in err
    assert "CUDA kernel exploded" in err


def test_a_metrics_row_keeps_what_fits_its_fields_and_names_the_rest():
    """``IterationResult.from_row`` checks each field with the config's type check: a wrong value is left out and
    named (a bool is no count, text is no number), a dict field keeps its well-typed entries, unknown keys are
    dropped, and ``defaults`` fill what the row lacks or holds as null."""
    said: list[str] = []
    row = {"iteration": 2, "accuracy": 0.5, "kept": True, "steps": "many", "train_examples": 7,
           "seconds": {"train": 3, "evaluate": "fast", "sample": 1.5}, "eval_labels": {"A": 2, "B": 1.5},
           "eval_prompt": None, "from_a_newer_release": 1}
    result = IterationResult.from_row(row, said.append, eval_prompt="fewshot")
    assert (result.iteration, result.accuracy, result.train_examples) == (2, 0.5, 7)
    assert (result.kept, result.steps) == (0, 0)  # left out: the dataclass's defaults
    assert result.seconds == {"train": 3, "sample": 1.5} and result.eval_labels == {"A": 2}
    assert result.eval_prompt == "fewshot"
    assert said == ["iteration 2: kept holds True, not an integer; left out",
                    "iteration 2: steps holds 'many', not an integer; left out"]


def test_progress_where_stderr_is_not_a_terminal_is_plain_lines(monkeypatch):
    """A batch job's log (stderr to a file) cannot show a redrawn bar: each phase is a line at its start, one
    every LOG_EVERY seconds, and one at its end, with done/total, rate, elapsed time and ETA."""
    import io

    from rich.console import Console

    import star_kit.progress as progress

    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    out = io.StringIO()
    phases = progress.Phases(Console(file=out, force_terminal=False, width=60))
    with phases:
        with phases.phase("sample · iteration 1 · /a/very/long/model/path", 4, "q") as advance:
            advance(2)
            advance(2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "sample · iteration 1 · /a/very/long/model/path: 0/4 (0%), elapsed 0:00:00"
    assert lines[1].startswith("sample · iteration 1 · /a/very/long/model/path: 2/4 (50%), ") and "eta 0:00:" in lines[1]
    assert lines[-1].startswith("sample · iteration 1 · /a/very/long/model/path: 4/4 (100%), ") and \
        lines[-1].endswith(" q/s, done in 0:00:00")
    assert "\x1b" not in out.getvalue() and "━" not in out.getvalue()  # no bar, no escape codes
    out.seek(0)
    out.truncate()
    with phases, pytest.raises(KeyboardInterrupt), phases.phase("lm-eval", 0) as advance:  # no count to show
        raise KeyboardInterrupt
    assert out.getvalue().splitlines() == ["lm-eval: elapsed 0:00:00", "lm-eval: stopped after 0:00:00"]
    quiet = io.StringIO()
    phases = progress.Phases(Console(file=quiet, force_terminal=False), enabled=False)  # --no-progress
    with phases, phases.phase("x", 1) as advance:
        advance()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("files, missing", [
    (["model.safetensors", "tokenizer.json"], None),
    (["pytorch_model-00001-of-00002.bin", "vocab.json", "merges.txt"], None),
    (["training_args.bin", "tokenizer.json"], "no weights"),  # a trainer's arguments are not weights
    (["model.safetensors", "tokenizer_config.json"], "no tokenizer"),  # its config alone loads nothing
    (["model.safetensors", "vocab.json"], "no tokenizer"),  # a BPE vocabulary needs its merges
])
def test_a_model_folders_weights_and_tokenizer_are_checked_before_loading(tmp_path, files, missing):
    from star_kit.errors import StarKitError
    from star_kit.models import check_model_folder

    (tmp_path / "config.json").write_text("{}")
    for name in files:
        (tmp_path / name).write_text("")
    if missing is None:
        check_model_folder(str(tmp_path), "sampler 'hf'")
    else:
        with pytest.raises(StarKitError, match=f"^sampler 'hf': model folder {tmp_path}: {missing} "):
            check_model_folder(str(tmp_path), "sampler 'hf'")
    check_model_folder("HuggingFaceTB/SmolLM2-135M", "sampler 'hf'")  # a hub id: the loader's to find
