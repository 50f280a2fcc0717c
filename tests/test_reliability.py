"""Reliability: one run per run directory (a lock), one clear line instead of a traceback (a bad --out, values of
the wrong type), values out of range refused before any work, and an unknown model said quickly.

Runs use the ``canned`` sampler and ``no-train`` trainer of ``tests/test_security.py`` (loaded as a plugin), so
nothing here loads a model.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.config import RunConfig
from star_kit.errors import StarKitError, UnknownNameError
from star_kit.store import RunLock, read_jsonl, write_json

ROOT = Path(__file__).resolve().parents[1]


from test_security import _run, fake_model  # noqa: E402,F401 - the same run helper and model fixture


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# -- a lock on the run directory -------------------------------------------------------------------------------
def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding ``run``'s lock until its stdin closes."""
    code = ("import sys; from star_kit.store import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); sys.stdin.read(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_a_locked_directory_is_refused_naming_the_holder(tmp_path, fake_model, capsys):
    run = tmp_path / "run"
    assert _run(run, fake_model) == 0
    assert not (run / ".lock").exists()  # released (and removed) when the run ended
    capsys.readouterr()
    holder = _hold_lock(run)
    try:
        assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 2
        err = _one_line(capsys)
        assert f"{run} is in use by another star-kit run (pid {holder.pid} on {socket.gethostname()}, since " in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder is gone: the same command runs.
    assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 0
    assert not (run / ".lock").exists()


def test_a_stale_lock_file_is_taken_over(tmp_path, fake_model):
    run = tmp_path / "run"
    assert _run(run, fake_model) == 0
    # A run killed with SIGKILL leaves its lock file; the kernel dropped its flock.
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 0
    with RunLock(run) as lock:  # and it is free again
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run / ".lock").exists()


def test_busy_reads_a_lock_without_taking_or_writing_it(tmp_path):
    """bench --run and --print-config ask whether a live run holds a directory: a stale lock file (its process
    gone) is not busy, a live holder is named, and nothing is created or changed."""
    run = tmp_path / "run"
    run.mkdir()
    assert RunLock.busy(run) is None and not (run / ".lock").exists()
    stale = json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"})
    (run / ".lock").write_text(stale)
    assert RunLock.busy(run) is None and (run / ".lock").read_text() == stale
    holder = _hold_lock(run)
    try:
        assert RunLock.busy(run).startswith(f"pid {holder.pid} on {socket.gethostname()}, since ")
        assert main(["run", "--out", str(run), "--print-config"]) == 2  # as the run would refuse it
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    (run / ".lock").unlink(missing_ok=True)
    os.mkfifo(run / ".lock")  # not a regular file: not opened for reading (it would block), not busy
    assert RunLock.busy(run) is None


def test_the_lock_is_held_while_the_run_works(tmp_path, fake_model, monkeypatch):
    """While a run samples, evaluates or trains, a second taker of its directory is refused."""
    import test_security

    seen = []
    real = test_security.CannedSampler.generate

    def generate(self, prompts, params, advance=None):
        with pytest.raises(StarKitError, match="is in use by another star-kit run"):
            RunLock(tmp_path / "run").acquire()
        seen.append(len(prompts))
        return real(self, prompts, params, advance)

    monkeypatch.setattr(test_security.CannedSampler, "generate", generate)
    assert _run(tmp_path / "run", fake_model) == 0
    assert seen  # the baseline evaluation ran under the lock


# -- one line instead of a traceback ---------------------------------------------------------------------------
def test_out_naming_a_file_is_one_line(tmp_path, fake_model, capsys):
    out = tmp_path / "a-file"
    out.write_text("not a directory")
    assert _run(out, fake_model) == 2
    assert f"--out {out}: a file, not a folder" in _one_line(capsys)
    assert _run(out / "below", fake_model) == 2  # a file where a parent folder should be
    assert f"--out {out / 'below'}: {out} is a file, not a folder" in _one_line(capsys)


def test_a_fresh_run_refuses_a_directory_that_holds_files_but_no_run(tmp_path, fake_model, capsys):
    """Without config.yaml a fresh run would read another run's iter_NN/ and metrics.jsonl back as its own numbers
    (or write over the user's files of the same names): refused, nothing touched."""
    out = tmp_path / "old"
    (out / "iter_01").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"iteration": 0, "accuracy": 0.99}\n')
    (out / "report.html").write_text("<h1>mine</h1>")
    (out / "notes.txt").write_text("notes")
    (out / "zz.txt").write_text("more")
    assert _run(out, fake_model) == 2
    assert (f"--out {out} is not empty (iter_01, metrics.jsonl, notes.txt and 2 more) and holds no star-kit run "
            f"(no config.yaml): choose a new or empty directory") in _one_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["iter_01", "metrics.jsonl", "notes.txt", "report.html", "zz.txt"]
    assert (out / "report.html").read_text() == "<h1>mine</h1>"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / RunLock.NAME).write_text("12345\n")  # a stale lock of a start that died: not a file of a run
    (empty / ".gitkeep").write_text("")  # hidden files are not a run's
    assert _run(empty, fake_model) == 0
    assert (empty / "config.yaml").is_file()


def test_out_that_cannot_be_written_is_one_line(tmp_path, fake_model, capsys, monkeypatch):
    """A read-only --out (simulated: the tests may run as root, whom permissions do not stop)."""
    import tempfile

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert _run(tmp_path / "run", fake_model) == 1
    assert f"could not write {tmp_path / 'run' / 'config.yaml'}: Permission denied" in _one_line(capsys)
    with pytest.raises(StarKitError, match="could not write .*x.json: Permission denied"):
        write_json(tmp_path / "x.json", {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_directory_is_one_line(tmp_path, fake_model, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert _run(ro / "run", fake_model) == 2
        assert "cannot create run directory" in _one_line(capsys)
        assert _run(ro, fake_model) != 0
        assert "Permission denied" in _one_line(capsys)
    finally:
        ro.chmod(0o755)


@pytest.mark.parametrize("text,key,value,expected", [
    ("iterations: two", "iterations", "'two' (a string)", "expected an integer"),
    ("seed: [1, 2]", "seed", "[1, 2] (a list)", "expected an integer"),
    ("train_size: 1.5", "train_size", "1.5 (a number)", "expected an integer or null"),
    ("rationalize: 3", "rationalize", "3 (an integer)", "expected true or false"),
    ("temperature: hot", "temperature", "'hot' (a string)", "expected a number"),
    ("model: 7", "model", "7 (an integer)", "expected a string"),
    ("sampler_options: [a]", "sampler_options", "['a'] (a list)", "expected a mapping of names to values"),
    ("plugins: mod", "plugins", "'mod' (a string)", "expected a list of strings"),
])
def test_a_value_of_the_wrong_type_is_one_line_before_any_work(tmp_path, capsys, text, key, value, expected):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text + "\n")
    out = tmp_path / "run"
    # No such model: before the type checks, some of these values started the default job.
    no_model = [] if key == "model" else ["--model", str(tmp_path / "no-model")]
    assert main(["run", "--config", str(cfg), *no_model, "--out", str(out), "--no-progress"]) == 2
    assert f"key {key!r} is {value}; {expected}" in _one_line(capsys)
    assert not out.exists()
    assert main(["run", "--config", str(cfg), "--print-config"]) == 2


def test_a_wrong_type_in_a_resumed_config_is_one_line(tmp_path, fake_model, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = RunConfig(model=fake_model, out=str(run)).to_dict()
    config["seed"] = [1, 2]
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    assert "key 'seed' is [1, 2] (a list); expected an integer" in _one_line(capsys)
    (run / "config.yaml").write_text("1: x\n")
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    assert "config keys are names, got 1" in _one_line(capsys)


def test_a_constructed_config_is_type_checked_too():
    with pytest.raises(StarKitError, match="key 'patience' is '2'"):
        RunConfig(patience="2").validate()


# -- values out of range ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--base-steps", "0"], "--base-steps must be >= 1, got 0"),
    (["--base-steps", "-3"], "--base-steps must be >= 1, got -3"),
    (["--patience", "-1"], "--patience must be >= 0"),
    (["--chunk-size", "0"], "--chunk-size must be >= 1, got 0"),
    (["--temperature", "-0.5"], "--temperature must be >= 0, got -0.5"),
    (["--temperature", "nan"], "--temperature must be >= 0, got nan"),
    (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1], got 1.5"),
    (["--step-growth", "0"], "--step-growth must be > 0, got 0.0"),
    (["--step-growth", "-1.2"], "--step-growth must be > 0, got -1.2"),
    (["--iterations", "0", "--no-baseline"], "--iterations 0 with --no-baseline: nothing to do"),
])
def test_out_of_range_values_are_refused_before_any_work(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    # The model does not exist: before the range checks, that was the (later) error.
    assert main(["run", "--model", str(tmp_path / "no-model"), "--out", str(out), "--no-progress", *args]) == 2
    assert message in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("yaml_text,args,message", [
    ("temperature: -1\n", [], "{file}: key 'temperature' must be >= 0, got -1"),
    ("samples: 4\n", [], "{file}: key 'samples' 4 needs --temperature > 0"),
    ("eval_samples: 5\neval_temperature: 0\n", [],
     "{file}: key 'eval_samples' 5 needs {file}: key 'eval_temperature' > 0"),
    ("temperature: -1\n", ["--temperature", "-2"], "--temperature must be >= 0, got -2.0"),  # the flag wins
])
def test_an_out_of_range_value_from_a_config_file_names_the_file_and_key(tmp_path, capsys, yaml_text, args, message):
    config = tmp_path / "my.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "run"
    assert main(["run", "--config", str(config), "--out", str(out), "--no-progress", *args]) == 2
    assert message.format(file=config) in _one_line(capsys)
    assert not out.exists()


def test_a_flag_overrides_a_config_files_out_of_range_value(tmp_path, capsys):
    config = tmp_path / "my.yaml"
    config.write_text("temperature: -1\nsamples: 2\n")
    assert main(["run", "--config", str(config), "--temperature", "0.7", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "\ntemperature: 0.7\n" in printed and "\nsamples: 2\n" in printed


def test_config_files_read_exponent_numbers_as_yaml_1_2_and_refuse_a_key_given_twice(tmp_path, capsys):
    config = tmp_path / "my.yaml"
    config.write_text("temperature: 7e-1\nstep_growth: 1.5E0\nsamples: 2\nmodel: '1e3'\n")  # YAML 1.1: strings
    assert main(["run", "--config", str(config), "--print-config"]) == 2  # the quoted model name stays a name
    assert "unknown model '1e3'" in _one_line(capsys)
    config.write_text("temperature: 7e-1\nstep_growth: 1.5E0\nsamples: 2\n")
    assert main(["run", "--config", str(config), "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["temperature"] == 0.7 and printed["step_growth"] == 1.5
    config.write_text("seed: 1e3\n")  # a float where an integer is expected: refused, not truncated
    assert main(["run", "--config", str(config), "--print-config"]) == 2
    assert f"{config}: key 'seed' is 1000.0 (a number); expected an integer" in _one_line(capsys)
    config.write_text("train_size: 16\nseed: 2\ntrain_size: 32\n")
    assert main(["run", "--config", str(config), "--print-config"]) == 2
    assert f"{config}:3: invalid YAML: key 'train_size' is given twice (first on line 1)" in _one_line(capsys)
    config.write_text("train_size: 16\ntrain-size: 32\n")  # one key, written two ways
    assert main(["run", "--config", str(config), "--print-config"]) == 2
    assert "key 'train-size' is given twice (as 'train_size') (first on line 1)" in _one_line(capsys)
    config.write_text("sampler_options: &s {batch_size: 4}\ntrainer_options: {<<: *s, learning_rate: 1e-4}\n")
    assert main(["run", "--config", str(config), "--print-config"]) == 2  # merge keys still merge (then checked)
    assert "trainer 'trl-sft'" in _one_line(capsys)  # batch_size is no trainer option: the merge happened
    # what star-kit writes, it reads back as written: a string that YAML 1.2 would read as a number is quoted
    from star_kit.config import load_config_file
    from star_kit.store import write_yaml

    write_yaml(tmp_path / "c.yaml", {"out": "1e5", "temperature": 0.5, "learning_rate": 5e-05})
    assert load_config_file(tmp_path / "c.yaml") == {"out": "1e5", "temperature": 0.5, "learning_rate": 5e-05}


@pytest.mark.parametrize("yaml_text, message", [
    ("task_options: {digitz: 1-2}\n", "key 'task_options': task 'arithmetic' (plugin 'arithmetic', distribution "
                                      "'star-kit') has no option 'digitz' (did you mean 'digits'?)"),
    ("trainer_options: {learning_rate: fast}\n", "key 'trainer_options': trainer 'trl-sft' (plugin 'trl-sft', "
                                                 "distribution 'star-kit'): option learning_rate='fast' is not a number"),
    ("sampler_options: {dtype: float33}\n", "key 'sampler_options': sampler 'hf' (plugin 'hf', distribution "
                                            "'star-kit'): option dtype='float33' is not"),
])
def test_a_plugin_option_refused_from_a_config_file_names_the_file(tmp_path, capsys, yaml_text, message):
    config = tmp_path / "my.yaml"
    config.write_text(yaml_text)
    assert main(["run", "--config", str(config), "--print-config"]) == 2
    assert f"{config}: {message}" in _one_line(capsys)
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert f"{config}: {message}" in _one_line(capsys) and not (tmp_path / "run").exists()


def test_data_dir_ignored_by_a_generated_task_is_said_once(tmp_path, fake_model, capsys):
    assert _run(tmp_path / "run", fake_model, "--data-dir", str(tmp_path)) == 0
    err = capsys.readouterr().err
    assert err.count(f"--data-dir {tmp_path} is not used: task 'arithmetic' makes its own questions") == 1
    assert _run(tmp_path / "run2", fake_model) == 0
    assert "--data-dir" not in capsys.readouterr().err


# -- an unknown model ------------------------------------------------------------------------------------------
def test_an_unknown_model_offline_is_one_quick_line_naming_what_was_tried(monkeypatch):
    from star_kit import models

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(models, "_hub_has", lambda name: pytest.fail("the hub was asked"))
    t0 = time.monotonic()
    with pytest.raises(UnknownNameError) as info:
        models.resolve_model("no-such-model-anywhere")
    assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert "\n" not in message
    for part in ("unknown model 'no-such-model-anywhere'", "an alias", "a local folder or .gguf file",
                 "a hub id (not in the local hub cache; the hub is not asked: HF_HUB_OFFLINE is set)"):
        assert part in message


def test_an_unknown_model_without_network_says_the_hub_is_unreachable(monkeypatch):
    from star_kit import models

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    def no_network(*args, **kwargs):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(models, "_hub_has", lambda name: pytest.fail("the hub was asked (30 s of retries)"))
    with pytest.raises(UnknownNameError, match=r"the hub is unreachable: huggingface.co:443: Network is unreachable"):
        models.resolve_model("org/no-such-model")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # datasets' own: transformers still downloads models
    with pytest.raises(UnknownNameError, match=r"the hub is unreachable: huggingface.co"):
        models.resolve_model("org/no-such-model")
    with pytest.raises(UnknownNameError, match=r"not a hub id"):
        models.resolve_model("a/b/c")


# -- usage errors, and inputs refused before any work ----------------------------------------------------------
def test_one_suggestion_rule_for_every_mistyped_name():
    from star_kit.errors import did_you_mean

    assert did_you_mean("GSM8K", ["arithmetic", "gsm8k"]) == " (did you mean 'gsm8k'?)"  # another case: that only
    assert did_you_mean("BFLOAT16", ["bfloat16", "float16"], n=2) == " (did you mean 'bfloat16'?)"
    assert did_you_mean("adamw", ["sgd", "adamw_torch", "adamw_torch_fused"], n=2) == \
        " (did you mean 'adamw_torch' or 'adamw_torch_fused'?)"  # the names it begins
    assert did_you_mean("a", ["adamw_torch", "sgd"]) == ""  # one letter begins too much to suggest
    assert did_you_mean("--itrations", ["--iterations", "--task"], quote=False) == " (did you mean --iterations?)"
    assert did_you_mean("zzz", ["arithmetic"]) == ""


@pytest.mark.parametrize("argv, message", [
    (["run", "--iterations", "abc"], "star-kit run: error: argument --iterations: invalid int value: 'abc'"),
    (["run", "--task-opt", "digits"], "star-kit run: error: argument --task-opt: expected KEY=VALUE, got 'digits'"),
    (["bench", "--limit", "abc"], "star-kit bench: error: argument --limit: expected an integer or 'all', got 'abc'"),
    (["nosuch"], "star-kit: error: argument command: invalid choice: 'nosuch'"),
    (["run", "--no-such-flag", "x"], "star-kit run: error: unrecognized arguments: --no-such-flag x"),
    (["bench", "--model", "m", "--nope"], "star-kit bench: error: unrecognized arguments: --nope"),
    (["run", "--itrations", "2"], "star-kit run: error: unrecognized arguments: --itrations 2 (did you mean "
                                  "--iterations?)"),  # a misspelt flag: the nearest one
    (["run", "x", "--itrations", "2"], "star-kit run: error: unrecognized arguments: x --itrations 2 (did you mean "
                                       "--iterations?)"),  # after a stray word too
])
def test_a_usage_error_is_one_line_with_where_to_read_more(argv, message):
    proc = subprocess.run([sys.executable, "-m", "star_kit", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()  # no usage block before it
    assert line.startswith(message) and line.endswith(f"(see {message.split(': error')[0]} --help)")


def test_resume_with_another_out_is_refused(tmp_path, fake_model, capsys):
    assert _run(tmp_path / "run", fake_model) == 0
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "run"), "--out", str(tmp_path / "other"), "--no-progress"]) == 2
    assert "names another (drop --out)" in _one_line(capsys)
    assert not (tmp_path / "other").exists()
    # --out naming the same directory is what --resume does anyway
    assert main(["run", "--plugin", "test_security", "--resume", str(tmp_path / "run"), "--out",
                 str(tmp_path / "run" / "."), "--no-progress"]) == 0


def test_bench_json_that_cannot_be_written_fails_before_the_model_loads(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "results.json"  # its folder is a file
    assert main(["bench", "--model", str(tmp_path / "no-model"), "--tasks", "arithmetic", "--limit", "2",
                 "--json", str(target), "--no-progress"]) == 2
    assert _one_line(capsys).startswith(f"error: --json {target}: cannot write there")


def test_trainer_options_that_would_fail_in_training_are_refused_at_start():
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        with pytest.raises(StarKitError, match=f"{key} must be a positive integer, got 0") as err:
            TRLSFTTrainer(**{key: 0})
        assert err.value.exit_code == 2
    try:
        import peft  # noqa: F401
    except ImportError:
        with pytest.raises(StarKitError, match=r"lora=true needs peft") as err:
            TRLSFTTrainer(lora=True)
        assert err.value.exit_code == 2


def test_eval_seed_evaluates_runs_of_other_seeds_on_the_same_questions(tmp_path, fake_model, capsys):
    def questions(run):
        return [d["prompt"] for d in read_jsonl(run / "iter_00" / "eval_docs.jsonl")]

    for seed in (1, 2):
        assert _run(tmp_path / f"s{seed}", fake_model, "--seed", str(seed)) == 0
        assert _run(tmp_path / f"e{seed}", fake_model, "--seed", str(seed), "--eval-seed", "7") == 0
    assert questions(tmp_path / "s1") != questions(tmp_path / "s2")  # --seed alone draws other questions
    assert questions(tmp_path / "e1") == questions(tmp_path / "e2") != questions(tmp_path / "s1")
    assert yaml.safe_load((tmp_path / "e1" / "config.yaml").read_text())["eval_seed"] == 7
    # bench --run draws them as the run did
    out = tmp_path / "bench.json"
    assert main(["bench", "--run", str(tmp_path / "e1"), "--plugin", "test_security", "--json", str(out),
                 "--out", str(tmp_path / "b"), "--no-progress"]) == 0, capsys.readouterr().err
    benched = [d["prompt"] for d in read_jsonl(next((tmp_path / "b").rglob("eval_docs.jsonl")))]
    assert benched == questions(tmp_path / "e1")
    # a run made before the key drew with its seed: another --eval-seed on resume is a change, refused by name
    saved = yaml.safe_load((tmp_path / "s1" / "config.yaml").read_text())
    del saved["eval_seed"]
    (tmp_path / "s1" / "config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert main(["run", "--resume", str(tmp_path / "s1"), "--plugin", "test_security", "--eval-seed", "9",
                 "--no-progress"]) == 2
    assert "config key 'eval_seed' differs (None in config.yaml, 9 now)" in " ".join(capsys.readouterr().err.split())


# -- JSON and YAML beyond what Python reads: one line, never a hang or a traceback ------------------------------
def _bomb(levels: int = 8) -> str:
    """The "billion laughs": 8 levels of 10 aliases each, 10^9 values once expanded, in 10 lines."""
    lines = ["task_options:", "  x0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    lines += [f"  x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, message", [
    (_bomb(), "expands to more than 100,000 values (anchors repeated by aliases)"),
    ("task_options: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
    ("task_options: {a: " + "[" * 60 + "]" * 60 + "}\n", "nested more than 50 levels deep"),
    ("train_size: " + "9" * 5000 + "\n", "an integer of more than 4,300 digits"),
])
def test_a_config_file_beyond_reason_is_refused_in_one_line(tmp_path, capsys, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    started = time.perf_counter()
    assert main(["run", "--config", str(path), "--print-config"]) == 2
    assert time.perf_counter() - started < 20
    err = _one_line(capsys)
    assert str(path) in err and message in err
    path.write_text("base: &b {digits: 1-3}\ntask: arithmetic\ntask_options:\n  <<: *b\n")  # a merge key still works
    from star_kit.config import load_config_file

    assert load_config_file(path)["task_options"] == {"digits": "1-3"}


@pytest.mark.parametrize("line, message", [
    ("[" * 100000 + "]" * 100000, "JSON nested too deeply to read"),
    ('{"a": ' + "9" * 5000 + "}", "a JSON integer of more than 4,300 digits"),
])
def test_json_beyond_what_python_reads_is_one_line_in_run_files_and_data(tmp_path, capsys, line, message):
    from star_kit.data import read_jsonl_rows

    path = tmp_path / "rows.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(StarKitError, match=f"{path}:1: {message}"):
        read_jsonl(path)
    assert read_jsonl(path, skip_bad=True) == []
    with pytest.raises(StarKitError, match=f"{path}:1: {message}"):
        read_jsonl_rows(path)
    skipped: list[str] = []
    assert read_jsonl_rows(path, skipped=skipped) == [] and message in skipped[0]


def test_an_os_error_is_one_line_naming_the_file(monkeypatch, capsys):
    """A full disk, a cache or run directory that cannot be written: the machine's failure, one line naming the
    path (a plugin's own is named by the registry), the traceback behind STAR_KIT_DEBUG."""
    import star_kit.cli as cli

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/iter_01/checkpoint.partial")

    monkeypatch.setitem(cli.COMMANDS, "plugins", full)
    monkeypatch.delenv("STAR_KIT_DEBUG", raising=False)
    assert main(["plugins"]) == 1
    err = _one_line(capsys)
    assert err.startswith("error: /data/run/iter_01/checkpoint.partial: No space left on device (run with "
                          "STAR_KIT_DEBUG=1")
    monkeypatch.setenv("STAR_KIT_DEBUG", "1")
    with pytest.raises(OSError):
        main(["plugins"])


def test_a_data_file_that_is_a_folder_fifo_or_dead_link_says_what_it_is(tmp_path):
    """Not "not found": the path is there, as something that is no data file (a FIFO would block a read)."""
    from star_kit.data import HubSource, load_rows

    hub = HubSource("openai/gsm8k", "main", "train")
    (tmp_path / "gsm8k").mkdir()
    path = tmp_path / "gsm8k" / "train.jsonl"
    for make, kind in ((path.mkdir, "a folder"), (lambda: os.mkfifo(path), "not a file"),
                       (lambda: path.symlink_to(tmp_path / "gone.jsonl"), "a link to nothing")):
        make()
        with pytest.raises(StarKitError, match=f"task 'gsm8k': {path} is {kind}, not a data file"):
            load_rows("gsm8k", tmp_path, "gsm8k/train.jsonl", hub)
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def test_print_config_refuses_a_data_dir_that_is_no_folder(tmp_path, capsys):
    """As the run does at its start: --print-config checked every option but this one."""
    assert main(["run", "--data-dir", str(tmp_path / "nope"), "--print-config"]) == 2
    assert f"--data-dir {tmp_path / 'nope'}: no such folder" in _one_line(capsys)
    (tmp_path / "file").write_text("x")
    assert main(["run", "--data-dir", str(tmp_path / "file"), "--print-config"]) == 2
    assert "a file, not a folder" in _one_line(capsys)
