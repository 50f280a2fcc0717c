"""How a model is prompted when it is evaluated (``--eval-prompt``): M0 few-shot, M(n) as it was fine-tuned.

A tiny randomly initialised Llama and the tests' lenient task (real TRL training, real lm-eval evaluation); what is
checked is the prompt each model got (``eval_docs.jsonl`` is what lm-eval reads) and what ``eval.json`` says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.registry import load_registry
from star_kit.store import read_json, read_jsonl

FAST = ["--sampler-opt", "dtype=float32", "--sampler-opt", "batch_size=4"]


def _run(tiny_model, out, *extra):
    return main(["run", "--task", "lenient-arithmetic", "--model", tiny_model, "--out", str(out), "--train-size", "4",
                 "--eval-size", "3", "--base-steps", "1", "--iterations", "1", "--no-progress",
                 "--trainer-opt", "per_device_train_batch_size=2", *FAST, *extra])


def _prompts(iter_dir):
    return [d["prompt"] for d in read_jsonl(iter_dir / "eval_docs.jsonl")]


@pytest.fixture()
def task(test_plugin):
    return load_registry().create("tasks", "lenient-arithmetic")


def _expected(task, n, fewshot):
    return [task.prompt(e, fewshot=fewshot) for e in task.examples("eval", n, 0)]


def test_default_evaluates_m0_few_shot_and_m1_as_trained(tiny_model, tmp_path, task, capsys):
    out = tmp_path / "run"
    assert _run(tiny_model, out) == 0
    log = capsys.readouterr()
    said = " ".join((log.out + log.err).split())
    # one step: the default 2 warmup steps cannot fit, and the trainer's line says so
    assert "; warmup 0 of the 2 steps asked (the fine-tune has 1)" in said
    assert _prompts(out / "iter_00") == _expected(task, 3, True)
    assert _prompts(out / "iter_01") == _expected(task, 3, False)  # the question alone, as M(1) was fine-tuned
    assert _expected(task, 3, False) != _expected(task, 3, True)
    assert read_json(out / "iter_00" / "eval.json")["prompt"] == "fewshot"
    assert read_json(out / "iter_01" / "eval.json")["prompt"] == "question"
    # the exemplars are in the docs' text (lm-eval's n-shot is 0): eval.json counts them
    assert read_json(out / "iter_00" / "eval.json")["exemplars_in_prompt"] == len(task.fewshot()) > 0
    assert read_json(out / "iter_01" / "eval.json")["exemplars_in_prompt"] == 0
    # what was evaluated: M0 as given, then iteration 1's checkpoint, by the sampler that ran
    assert {k: read_json(out / "iter_00" / "eval.json")[k] for k in ("model", "sampler")} == \
        {"model": tiny_model, "sampler": "hf"}
    assert read_json(out / "iter_01" / "eval.json")["model"] == str((out / "iter_01" / "checkpoint").resolve())
    # and how it sampled: its options as given, and the weights' dtype (the hf sampler's float32 on this CPU run)
    ev = read_json(out / "iter_01" / "eval.json")
    assert ev["sampler_options"] == {"dtype": "float32", "batch_size": 4} and ev["sampler_dtype"] == "float32", ev
    import star_kit
    import transformers

    versions = read_json(out / "iter_01" / "eval.json")["versions"]  # what made the number
    assert versions["star-kit"] == star_kit.__version__ and versions["transformers"] == transformers.__version__
    assert read_json(out / "iter_01" / "eval.json")["plugins"] == {  # and whose plugins, in which version
        "task": "(--plugin) (plugin 'plugins_for_tests')", "extractor": "(--plugin) (plugin 'plugins_for_tests')",
        "sampler": f"star-kit {star_kit.__version__} (plugin 'hf')"}
    assert [r["eval_prompt"] for r in read_jsonl(out / "metrics.jsonl")] == ["fewshot", "question"]
    # ... which is how its training pairs were prompted
    train = {e.id: e for e in task.examples("train", 4, 0)}
    pairs = read_jsonl(out / "iter_01" / "train.jsonl")
    assert pairs and all(r["prompt"] == task.prompt(train[r["example_id"]], fewshot=False) for r in pairs)
    assert "M(n) with the question alone" in said
    assert yaml.safe_load((out / "config.yaml").read_text())["eval_prompt"] == "trained"


@pytest.mark.parametrize("flags", [("--eval-prompt", "fewshot"), ("--train-fewshot",)])
def test_fewshot_for_every_model(tiny_model, tmp_path, task, flags):
    # --eval-prompt fewshot, or a model fine-tuned on the few-shot prompt: the few-shot prompt throughout
    out = tmp_path / "run"
    assert _run(tiny_model, out, *flags) == 0
    assert (out / "iter_01" / "checkpoint" / "config.json").is_file()  # a trained M(1), not the base model again
    assert _prompts(out / "iter_00") == _prompts(out / "iter_01") == _expected(task, 3, True)
    assert read_json(out / "iter_01" / "eval.json")["prompt"] == "fewshot"
    assert [r["eval_prompt"] for r in read_jsonl(out / "metrics.jsonl")] == ["fewshot", "fewshot"]


def test_a_run_that_predates_the_key_resumes_few_shot(tiny_model, tmp_path, task):
    # A run directory written before --eval-prompt existed evaluated every model few-shot; resumed, it goes on so.
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "0") == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["eval_prompt"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["run", "--resume", str(out), "--iterations", "1", "--no-progress"]) == 0
    assert (out / "iter_01" / "checkpoint" / "config.json").is_file()  # a trained M(1), not the base model again
    assert _prompts(out / "iter_01") == _expected(task, 3, True)
    assert yaml.safe_load((out / "config.yaml").read_text())["eval_prompt"] == "fewshot"
    assert read_jsonl(out / "metrics.jsonl")[-1]["eval_prompt"] == "fewshot"


def test_a_bad_eval_prompt_is_one_line(tiny_model, tmp_path, capsys, test_plugin):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("eval_prompt: zero\n")
    assert main(["run", "--config", str(cfg), "--model", tiny_model, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{cfg}: key 'eval_prompt' must be one of trained, fewshot, got 'zero'" in err  # the file, not a flag
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
    with pytest.raises(SystemExit):
        main(["run", "--eval-prompt", "zero"])


def test_bench_prompts_a_run_as_it_was_evaluated_and_eval_prompt_overrides(tiny_model, tmp_path, task):
    run = tmp_path / "run"
    (run / "iter_01").mkdir(parents=True)
    shutil.copytree(tiny_model, run / "iter_01" / "checkpoint")
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"task": "lenient-arithmetic", "model": tiny_model, "eval_size": 3, "eval_prompt": "trained",
         "plugins": []}))
    out, samples = tmp_path / "bench.json", tmp_path / "samples"
    plugin: list[str] = []  # the tests' plugin comes through STAR_KIT_PLUGINS (the task fixture)
    assert main(["bench", "--run", str(run), "--json", str(out), "--out", str(samples), "--no-progress",
                 *plugin, *FAST]) == 0
    rows = json.loads(out.read_text())
    assert [(r["iteration"], r["prompt"]) for r in rows] == [(0, "fewshot"), (1, "question")]
    docs = {p.parts[-3].split("_")[1]: p for p in samples.rglob("eval_docs.jsonl")}  # <model label>/<task>/
    assert [d["prompt"] for d in read_jsonl(docs["0"])] == _expected(task, 3, True)
    assert [d["prompt"] for d in read_jsonl(docs["1"])] == _expected(task, 3, False)
    # a config.yaml without the key (a run made before it) is benched few-shot throughout, as it was evaluated
    saved = yaml.safe_load((run / "config.yaml").read_text())
    del saved["eval_prompt"]
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["bench", "--run", str(run), "--json", str(out), "--no-progress", *plugin, *FAST]) == 0
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["fewshot", "fewshot"]
    # --eval-prompt applies to every model, --model ones included (default for those: few-shot)
    assert main(["bench", "--model", tiny_model, "--tasks", "lenient-arithmetic", "--limit", "3", "--json", str(out),
                 "--no-progress", *plugin, *FAST]) == 0
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["fewshot"]
    assert main(["bench", "--model", tiny_model, "--tasks", "lenient-arithmetic", "--limit", "3", "--json", str(out),
                 "--eval-prompt", "question", "--no-progress", *plugin, *FAST]) == 0
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["question"]
    # `trained`, run's default value, is bench's too: a run's iterations as the run evaluated them
    saved["eval_prompt"] = "trained"
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["bench", "--run", str(run), "--json", str(out), "--eval-prompt", "trained", "--no-progress",
                 *plugin, *FAST]) == 0
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["fewshot", "question"]
    # on another task than the run's, its M(n) is prompted few-shot (it learned the question alone on its own)
    assert main(["bench", "--run", str(run), "--tasks", "lenient-arithmetic,arithmetic", "--json", str(out),
                 "--limit", "2", "--no-progress", *plugin, *FAST]) == 0
    assert [(r["iteration"], r["task"], r["prompt"]) for r in json.loads(out.read_text())] == [
        (0, "lenient-arithmetic", "fewshot"), (0, "arithmetic", "fewshot"),
        (1, "lenient-arithmetic", "question"), (1, "arithmetic", "fewshot")]


def test_resuming_a_run_that_predates_the_key_with_another_eval_prompt_is_refused(tiny_model, tmp_path, task, capsys):
    out = tmp_path / "run"
    assert _run(tiny_model, out, "--iterations", "0") == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    del saved["eval_prompt"]
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert main(["run", "--resume", str(out), "--iterations", "1", "--eval-prompt", "trained", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config key 'eval_prompt' differs ('fewshot' in config.yaml, 'trained' now)" in " ".join(err.split())
    assert len(err.splitlines()) == 1 and not (out / "iter_01").exists()


def test_predated_keys_of_an_old_run_directory():
    from star_kit.config import predated

    assert predated({"task": "arithmetic"}) == {"task": "arithmetic", "eval_prompt": "fewshot", "eval_seed": None}
    # CommonsenseQA runs of that time were lettered (config.yaml keeps only the options given)
    assert predated({"task": "commonsense_qa", "task_options": {}})["task_options"] == {"answer_format": "choice"}
    assert predated({"task": "commonsense_qa", "task_options": {"answer_format": "letter"}})["task_options"] == \
        {"answer_format": "letter"}
    new = {"task": "commonsense_qa", "task_options": {}, "eval_prompt": "trained", "eval_seed": None}
    assert predated(new) == new


def test_bench_of_an_old_commonsense_qa_run_keeps_its_lettered_format(tiny_model, tmp_path):
    fixtures = Path(__file__).resolve().parent / "fixtures" / "data"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"task": "commonsense_qa", "model": tiny_model, "eval_size": 2, "data_dir": str(fixtures),
         "task_options": {}}))
    samples = tmp_path / "samples"
    assert main(["bench", "--run", str(run), "--out", str(samples), "--no-progress", *FAST]) == 0
    [docs] = samples.rglob("eval_docs.jsonl")
    prompts = [d["prompt"] for d in read_jsonl(docs)]
    assert prompts and all("\n(a) " in p and "\n- " not in p for p in prompts)


def test_bench_of_a_run_that_is_still_going_says_so(tiny_model, tmp_path, capsys):
    from star_kit.store import RunLock

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "arithmetic", "model": tiny_model, "eval_size": 2,
                                                     "task_options": {"digits": "1"}}))
    with RunLock(run):  # what a live run holds
        assert main(["bench", "--run", str(run), "--no-progress", *FAST]) == 0
        assert f"--run {run} is still going (pid " in " ".join(capsys.readouterr().err.split())
    assert main(["bench", "--run", str(run), "--no-progress", *FAST]) == 0
    assert "still going" not in capsys.readouterr().err and not (run / ".lock").exists()


def test_bench_of_a_runs_checkpoint_given_as_model_prompts_it_as_the_run_did(tiny_model, tmp_path, task, capsys):
    run = tmp_path / "run"
    (run / "iter_01").mkdir(parents=True)
    shutil.copytree(tiny_model, run / "iter_01" / "checkpoint")
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "lenient-arithmetic", "model": tiny_model,
                                                     "eval_prompt": "trained", "plugins": []}))
    ckpt, out = str(run / "iter_01" / "checkpoint"), tmp_path / "bench.json"
    common = ["--tasks", "lenient-arithmetic", "--limit", "3", "--json", str(out), "--no-progress", *FAST]
    capsys.readouterr()
    assert main(["bench", "--model", ckpt, "--model", tiny_model, *common]) == 0
    said = capsys.readouterr()
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["question", "fewshot"]  # the run's M(1); a model
    assert f"--model {ckpt} is iteration 1 of the run in {run.resolve()}: prompted on lenient-arithmetic with the " \
           f"question alone, as that run evaluated it, and few-shot on other tasks" in " ".join(said.err.split())
    table = " ".join(said.out.split())
    assert "question alone" in table and "few-shot" in table  # each cell names its prompt
    # on a task it was not fine-tuned on, the run's checkpoint is prompted few-shot
    assert main(["bench", "--model", ckpt, *common, "--tasks", "lenient-arithmetic,arithmetic"]) == 0
    assert [(r["task"], r["prompt"]) for r in json.loads(out.read_text())] == [("lenient-arithmetic", "question"),
                                                                                ("arithmetic", "fewshot")]
    assert main(["bench", "--model", ckpt, *common, "--eval-prompt", "fewshot"]) == 0  # asked for: few-shot
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["fewshot"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**saved, "eval_prompt": "fewshot"}))
    assert main(["bench", "--model", ckpt, *common]) == 0  # a run that evaluated few-shot: few-shot
    assert [r["prompt"] for r in json.loads(out.read_text())] == ["fewshot"]


def test_the_results_tables_say_how_each_model_was_prompted():
    # The terminal table and the report's table: a "prompt" column (M0 few-shot; M(n) as recorded; an M(n) row of
    # a metrics.jsonl written before the field is left blank rather than guessed).
    from rich.console import Console

    from star_kit.cli import results_table
    from star_kit.records import IterationResult
    from star_kit.report.page import _metrics_table

    rows = [IterationResult(0, 0.2), IterationResult(1, 0.3, eval_prompt="question", sampled_ahead_in=0,
                                                     seconds={"sample": 0.0, "train": 5.0}),
            IterationResult(2, 0.4, eval_prompt="fewshot"), IterationResult(3, 0.5)]
    console = Console(record=True, width=300)
    console.print(results_table(rows))
    lines = console.export_text().splitlines()
    cells = {line.split("│")[1].strip(): line.split("│")[4].strip() for line in lines if line.count("│") > 4}
    assert cells == {"0": "few-shot", "1": "question", "2": "few-shot", "3": ""}
    assert "in eval 0" in next(line for line in lines if line.split("│")[1:2] == ["    1 "])  # its sampling's time
    html = _metrics_table({"phases": ["sample", "train"], "metrics": [r.to_dict() for r in rows[:3]] + [{"iteration": 3,
                                                                                    "accuracy": 0.5}]})
    assert "<th>prompt</th>" in html
    body = html.split("<tbody>")[1]
    prompts = [row.split("<td>")[4].split("</td>")[0] for row in body.split("<tr>")[1:]]  # the 4th cell of a row
    assert prompts == ["few-shot", "question", "few-shot", ""]
    assert "<td>in eval 0</td><td>5.0</td>" in html  # iteration 1 was sampled in M(0)'s evaluation pass


def test_rows_written_before_the_field_get_it_from_eval_json_or_the_config(tmp_path):
    # The report reads eval.json's prompt; a resumed run's history reads the config (a resume cannot change it).
    from star_kit.config import RunConfig
    from star_kit.loop import StarRun
    from star_kit.report.data import load_run
    from star_kit.store import RunStore

    run = tmp_path / "old"
    (run / "iter_01").mkdir(parents=True)
    (run / "iter_02").mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"iteration": n, "accuracy": 0.1 * n}) + "\n"
                                               for n in range(3)))
    (run / "iter_01" / "eval.json").write_text(json.dumps({"accuracy": 0.1, "prompt": "question"}))
    (run / "iter_02" / "eval.json").write_text("{not json")
    assert [r["eval_prompt"] for r in load_run(run)["metrics"]] == [None, "question", None]
    loop = StarRun.__new__(StarRun)  # only what history() reads: the store and the config
    loop.store, loop.config = RunStore(run), RunConfig(eval_prompt="trained")
    assert [r.eval_prompt for r in loop.history()] == ["fewshot", "question", "question"]
