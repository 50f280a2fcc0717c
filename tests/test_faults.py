"""Faults: every built-in extractor fuzzed, disk full, out of memory, nothing executed."""

import ast
import errno
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from star_kit.errors import StarKitError
from star_kit.records import GenerationParams
from star_kit.registry import load_registry
from star_kit.store import read_jsonl, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
EXTRACTORS = load_registry().items["extractors"]

answerish = st.one_of(
    st.text(),
    st.builds(lambda a, b, c: f"{a} The answer is {b}{c}", st.text(max_size=30),
              st.text(alphabet="0123456789,.-$ ()abcdeABCDE", max_size=40), st.text(max_size=10)),
    st.builds(lambda n: "#### " + n, st.text(alphabet="0123456789,.-", max_size=60)),
)


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
@settings(max_examples=300, deadline=None)
@given(text=answerish)
def test_no_builtin_extractor_raises(name, text):
    if EXTRACTORS[name].distribution != "star-kit":
        pytest.skip("only built-ins")
    result = EXTRACTORS[name].obj(text)  # the raw function, not the safety wrapper
    assert result is None or isinstance(result, str)


def test_disk_full_is_one_clear_error_and_the_old_file_stays(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"iteration": 0}])
    class Full:
        def __init__(self, fd, mode):
            self.fd = fd

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            os.close(self.fd)

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(StarKitError, match=r"could not write .*metrics.jsonl: No space left on device"):
        write_jsonl(path, [{"iteration": 0}, {"iteration": 1}])
    monkeypatch.undo()
    assert read_jsonl(path) == [{"iteration": 0}]
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]  # no temp file left behind


def test_out_of_memory_halves_the_batch_and_says_so_once(tiny_model, capsys):
    import torch

    # generate's batches (the prefix engine's slots: tests/test_hf_sampler.py)
    sampler = load_registry().create("samplers", "hf", tiny_model, batch_size=8, engine="generate")
    task = load_registry().create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("eval", 8, 0)]
    params = GenerationParams(max_new_tokens=4, stop=task.stop)
    expected = sampler.generate(prompts, params)
    real = sampler._generate_batch

    def flaky(rows, *args):
        if len(rows) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(rows, *args)

    sampler._generate_batch = flaky
    capsys.readouterr()
    got = sampler.generate(prompts, params)
    sampler.generate(prompts, params)
    err = capsys.readouterr().err
    assert err.count("out of memory; batch size halved to 4") == 1
    assert err.count("out of memory; batch size halved to 2") == 1  # and remembered: the 2nd call says nothing
    assert len(got) == 8 and all(len(g) == 1 for g in got)
    assert sum(a == b for a, b in zip(got, expected)) >= 6  # same text, up to batch-composition ties


def test_nothing_is_executed():
    """No eval/exec/compile of data or model output anywhere in the package or the built-in plugins."""
    for folder in ("star_kit", "plugins"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in ("eval", "exec", "compile"), f"{path}:{node.lineno}"


def test_trainer_out_of_memory_halves_the_batch_keeps_the_effective_batch(tiny_model, tmp_path, capsys):
    import torch

    from star_kit.records import TrainExample

    trainer = load_registry().create("trainers", "trl-sft", per_device_train_batch_size=4)
    real = trainer._fit
    calls = []

    def flaky(*args, **kwargs):
        options, progress = args[-1], args[-2]  # the SFTConfig options of this attempt, its progress callback
        calls.append((options["per_device_train_batch_size"], options["gradient_accumulation_steps"]))
        if options["per_device_train_batch_size"] > 2:  # out of memory after its first optimizer step
            def then_oom(step):
                progress(step)
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return real(*args[:-2], then_oom, options, **kwargs)
        return real(*args, **kwargs)

    trainer._fit = flaky
    data = [TrainExample(f"e{i}", f"Q: {i} + 1 = ?\nA:", f" {i} + 1 = {i + 1}. The answer is {i + 1}.\n\n", "sampled")
            for i in range(8)]
    advanced = []
    out = trainer.train(tiny_model, data, 2, tmp_path / "ckpt", advance=advanced.append)
    assert (out / "config.json").exists()
    assert calls == [(4, 1), (2, 2)]
    assert sum(advanced) == 2  # step 1 of the failed attempt is not counted again by the retry
    assert "per-device batch halved to 2 (gradient accumulation 2, same effective batch)" in capsys.readouterr().err


def test_a_damaged_line_of_a_run_file_is_named_never_skipped(tmp_path):
    """star-kit writes its JSONL files whole: a line that is not a JSON object was edited or damaged, and a row
    silently left out would make counts (``train 13``) disagree with what was used. Only an append log of work in
    progress (``*.partial``) may end in a line torn by a kill, which is dropped."""
    path = tmp_path / "train.jsonl"
    path.write_text('{"a": 1}\n{"example_id": "train-000\n{"a": 3}\n')
    with pytest.raises(StarKitError, match=r"train.jsonl:2: not JSON \(.*\); star-kit writes this file whole") as exc:
        read_jsonl(path)
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(StarKitError, match=r"train.jsonl:2: a JSON list, not an object"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')  # a finished file cut short: damaged too
    with pytest.raises(StarKitError, match=r"train.jsonl:3: cut short"):
        read_jsonl(path)
    assert read_jsonl(path, partial=True) == [{"a": 1}, {"a": 2}]  # a work log's torn tail: dropped
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]  # blank lines are nothing


def test_bytes_that_are_not_utf8_and_edited_json_files_are_one_line_each(tmp_path, capsys):
    """A non-UTF-8 byte in a run file, a run file's JSON object edited (not an object, a key missing, a key
    renamed in a samples row) and a non-UTF-8 --config are each one line naming the file, never a traceback."""
    from star_kit.cli import main
    from star_kit.config import load_config_file
    from star_kit.loop import read_samples
    from star_kit.store import read_json

    path = tmp_path / "samples.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "caf\xe9"}\n')
    with pytest.raises(StarKitError, match=r"samples.jsonl:2: not UTF-8 \(byte 11 of the line\); star-kit writes"):
        read_jsonl(path)
    assert read_jsonl(path, skip_bad=True) == [{"a": 1}]  # a viewer (the report) leaves it out, with a warning
    assert "samples.jsonl:2: not UTF-8" in capsys.readouterr().err
    path.write_text('{"example_id": "t-0", "question": "q", "completion": "c", "predicted": null, "gold": "1", '
                    '"correct": false, "graded_by": "me"}\n')
    with pytest.raises(StarKitError, match=r"samples.jsonl: row 1: got an unexpected keyword argument 'graded_by'"):
        read_samples(path)
    ev = tmp_path / "eval.json"
    for text, problem in (('{"accuracy": 0.5', "not JSON"), ("[0.5]", "a JSON list, not an object"),
                          ('{"accuracy": 0.5, "n": 64}', "no 'stderr' in it")):
        ev.write_text(text)
        with pytest.raises(StarKitError, match=rf"eval.json: {re.escape(problem)}"):
            read_json(ev, keys=("accuracy", "stderr", "n"))
    config = tmp_path / "job.yaml"
    config.write_bytes(b"seed: 1\n# caf\xe9\n")
    with pytest.raises(StarKitError, match=r"job.yaml:2: not UTF-8 text \(byte 0xe9\)"):
        load_config_file(config)
    assert main(["run", "--config", str(config), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert "job.yaml:2: not UTF-8" in err and len(err.splitlines()) == 1


def test_resume_names_a_damaged_training_set(tmp_path, tiny_model, capsys):
    from star_kit.cli import main

    out = tmp_path / "run"
    args = ["run", "--model", tiny_model, "--train-size", "4", "--eval-size", "2", "--iterations", "1",
            "--base-steps", "1", "--no-baseline", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    samples = out / "iter_01" / "samples.jsonl"  # one row per training question, whatever the model answered
    lines = samples.read_text().splitlines(keepends=True)
    assert len(lines) == 4
    samples.write_text(lines[0] + lines[1][:10] + "\n" + "".join(lines[2:]))
    (out / "metrics.jsonl").unlink()  # iteration 1 is done again from its files: the samples are read
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "samples.jsonl:2: not JSON (Invalid control character at column 11); star-kit writes this file whole" in last


def test_a_file_named_gguf_that_is_not_one_is_one_line(tmp_path, capsys):
    from star_kit.cli import main

    (tmp_path / "model.gguf").write_bytes(b"not a gguf file")
    assert main(["bench", "--model", str(tmp_path / "model.gguf"), "--tasks", "arithmetic", "--limit", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot read {tmp_path / 'model.gguf'} as a GGUF model: ValueError:"), err
    assert not any("Traceback" in line for line in err)


def test_a_run_directory_named_with_brackets_runs_and_is_printed_as_named(tiny_model, tmp_path, capsys, test_plugin):
    """'runs/[exp]' is rich markup and a glob pattern (datasets reads lm-eval's data_files as one): the run
    evaluates its own eval_docs.jsonl and every line names the directory as given."""
    from star_kit.cli import main

    out = tmp_path / "runs" / "[exp]" / "a[b]"
    assert main(["run", "--model", tiny_model, "--task", "lenient-arithmetic", "--out", str(out), "--iterations", "1",
                 "--train-size", "4", "--eval-size", "4", "--base-steps", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"run directory: {out} (metrics.jsonl" in captured.out
    assert (out / "iter_01" / "eval.json").is_file()
