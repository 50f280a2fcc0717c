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
    with pytest.raises(StarKitError, match="unknown task 'nope'"):  # a Path is taken where a path is meant
        star_kit.run(task="nope", out=tmp_path / "f", data_dir=tmp_path)
    assert not any((tmp_path / d).exists() for d in "abcdef")  # nothing was started
