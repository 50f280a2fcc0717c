"""star-kit from Python: ``star_kit.run`` is ``star-kit run`` without the command line (a tiny randomly initialised
Llama, the tests' lenient task, real TRL training and real lm-eval evaluation)."""

from __future__ import annotations

import pytest
import yaml

import star_kit
from star_kit.config import RunConfig
from star_kit.errors import StarKitError
from star_kit.store import read_jsonl

FAST = {"sampler_options": {"dtype": "float32", "batch_size": 4}, "trainer_options": {"per_device_train_batch_size": 2}}


def test_run_from_python_writes_the_run_directory_returns_the_history_and_resumes(tiny_model, tmp_path, test_plugin,
                                                                                  capsys):
    out = tmp_path / "run"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"task": "lenient-arithmetic", "train_size": 4, "eval_size": 3,
                                      "base_steps": 1, "iterations": 1}))
    history = star_kit.run(config, model=tiny_model, out=str(out), progress=False, **FAST)
    assert [r.iteration for r in history] == [0, 1]
    assert history[1].checkpoint and (out / "iter_01" / "checkpoint" / "config.json").is_file()
    assert [r["accuracy"] for r in read_jsonl(out / "metrics.jsonl")] == [r.accuracy for r in history]
    assert (out / "report.html").is_file()  # as after `star-kit run`
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train_size"] == 4 and saved["model"] == tiny_model  # the file, then the keyword options
    assert "STaR iterations" in capsys.readouterr().out  # the same results table as the command
    # resume=DIR continues the run as --resume does: its config.yaml first, then what is given; a RunConfig
    # contributes the keys it sets (its defaults would otherwise override the run's own values)
    history = star_kit.run(RunConfig(iterations=2), resume=out, progress=False)
    assert [r.iteration for r in history] == [0, 1, 2] and (out / "iter_02" / "eval.json").is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["iterations"] == 2 and saved["train_size"] == 4 and saved["out"] == str(out)


def test_bad_input_raises_the_commands_one_line_error_before_any_model_loads(tmp_path):
    with pytest.raises(StarKitError, match="key 'train_size' is 'lots' \\(a string\\); expected an integer"):
        star_kit.run(train_size="lots", out=str(tmp_path / "a"))
    with pytest.raises(StarKitError, match="unknown key 'trainsize' \\(did you mean 'train_size'\\?\\)"):
        star_kit.run({"trainsize": 4}, out=str(tmp_path / "b"))
    with pytest.raises(StarKitError, match="--resume .*: no config.yaml there"):
        star_kit.run(resume=tmp_path / "nothing")
    with pytest.raises(TypeError, match="config must be a path, a dict or a RunConfig"):
        star_kit.run(42)
    with pytest.raises(StarKitError, match="unknown task 'nope'"):
        star_kit.run(RunConfig(task="nope", out=str(tmp_path / "c")))
    with pytest.raises(StarKitError, match="task_options must be a dict"):
        star_kit.run(task_options="digits=1-2", out=tmp_path / "d")
    with pytest.raises(TypeError, match="'config' is not a config key"):
        star_kit.run(config=RunConfig(), out=tmp_path / "e")
    with pytest.raises(StarKitError, match="^star_kit.run: key 'train_size' must be positive, got -3$"):
        star_kit.run(train_size=-3, out=tmp_path / "e")  # named as it was given, not as the command's --train-size
    with pytest.raises(TypeError, match="star_kit.run: 'trian_size' is not a config key \\(did you mean "
                                        "'train_size'\\?\\)"):
        star_kit.run(trian_size=5, out=tmp_path / "e")
    with pytest.raises(StarKitError, match="'print_config' is not a config key") as info:  # both kinds of error
        star_kit.run(print_config=True, out=tmp_path / "e")
    assert isinstance(info.value, TypeError) and info.value.exit_code == 2
    with pytest.raises(StarKitError, match="unknown task 'nope'"):  # a Path is taken where a path is meant
        star_kit.run(task="nope", out=tmp_path / "f", data_dir=tmp_path)
    assert not any((tmp_path / d).exists() for d in "abcdef")  # nothing was started


def test_bench_from_python_returns_the_rows_the_command_writes(tiny_model, tmp_path, capsys):
    """``star_kit.bench`` is ``star-kit bench``: the same rows as its --json, the same table; a Path is a path."""
    from pathlib import Path

    from star_kit.cli import main

    data = Path(__file__).resolve().parent / "fixtures" / "data"
    rows = star_kit.bench(tiny_model, ["arithmetic", "commonsense_qa"], limit=2, data_dir=data, progress=False,
                          json=tmp_path / "api.json", task_options={"arithmetic.digits": 1},
                          sampler_options={"dtype": "float32"})
    assert [(r["model"], r["task"], r["n"]) for r in rows] == [(tiny_model, "arithmetic", 2),
                                                             (tiny_model, "commonsense_qa", 2)]
    assert "star-kit bench" in capsys.readouterr().out
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic,commonsense_qa", "--limit", "2",
                 "--data-dir", str(data), "--json", str(tmp_path / "cli.json"), "--task-opt", "arithmetic.digits=1",
                 "--sampler-opt", "dtype=float32", "--no-progress"]) == 0
    import json

    drop = lambda rs: [{k: v for k, v in r.items() if k != "seconds"} for r in rs]  # noqa: E731
    cli_rows = json.loads((tmp_path / "cli.json").read_text())
    assert drop(cli_rows) == drop(json.loads((tmp_path / "api.json").read_text())) == drop(rows)


def test_bench_from_python_bad_input_is_the_commands_error(tiny_model, tmp_path):
    with pytest.raises(TypeError, match="'limt' is not an option of bench \\(did you mean 'limit'\\?\\)"):
        star_kit.bench(tiny_model, "arithmetic", limt=2)
    with pytest.raises(StarKitError, match="'limt' is not an option of bench"):  # an ArgumentError is both
        star_kit.bench(tiny_model, "arithmetic", limt=2)
    with pytest.raises(StarKitError, match="bench: pass --tasks"):
        star_kit.bench(tiny_model)
    with pytest.raises(StarKitError, match="bench: pass at least one --model"):
        star_kit.bench([], "arithmetic")
    with pytest.raises(StarKitError, match="limit must be an int, None or 'all'"):
        star_kit.bench(tiny_model, "arithmetic", limit="ten")
    with pytest.raises(StarKitError, match="eval_prompt must be one of trained, fewshot, question"):
        star_kit.bench(tiny_model, "arithmetic", eval_prompt="zero-shot")
    with pytest.raises(StarKitError, match="seed must be int"):
        star_kit.bench(tiny_model, "arithmetic", seed="3")
    with pytest.raises(StarKitError, match="task_options must be a dict"):
        star_kit.bench(tiny_model, "arithmetic", task_options="digits=1")
    with pytest.raises(StarKitError, match="unknown task 'nope'"):
        star_kit.bench(tiny_model, "nope", json=tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def test_the_api_puts_the_libraries_settings_back_and_shows_no_tqdm_bars(tiny_model, monkeypatch, capfd):
    """A notebook calls star_kit.bench/run between its own work: the environment variables, warning filters and
    transformers' and datasets' verbosity and bars star-kit quiets are put back after the call (after a refused
    one too), and lm-eval's tqdm bars stay off during it even though tqdm was imported first."""
    import os
    import warnings

    import datasets
    import tqdm  # noqa: F401  (imported before the call, as in any HF user's session)
    import transformers

    from star_kit.cli_common import QUIET_ENVIRONMENT

    for key in QUIET_ENVIRONMENT:
        monkeypatch.delenv(key, raising=False)
    transformers.logging.set_verbosity_warning()
    datasets.enable_progress_bars()
    before = (list(warnings.filters), transformers.logging.get_verbosity(), datasets.is_progress_bar_enabled())
    try:
        rows = star_kit.bench(tiny_model, "arithmetic", limit=2, progress=False, sampler_options={"dtype": "float32"})
        assert rows[0]["n"] == 2
        err = capfd.readouterr().err
        assert "it/s]" not in err and "%|" not in err, err[-500:]  # no tqdm bar
        with pytest.raises(StarKitError):
            star_kit.run(train_size="lots")
        after = (list(warnings.filters), transformers.logging.get_verbosity(), datasets.is_progress_bar_enabled())
        assert after == before and not any(key in os.environ for key in QUIET_ENVIRONMENT)
        with tqdm.tqdm(range(3), disable=False) as bar:  # the session's own bars work again
            assert not bar.disable
    finally:
        transformers.logging.set_verbosity_error()
