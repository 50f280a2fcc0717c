"""The STaR loop's wiring, with a scripted sampler and a recording trainer (no model; seconds): the trainer always
gets M0, iteration n samples from M(n-1), the step schedule, and rationalized rationales trained without the hint."""

import json
import shutil
from pathlib import Path

import pytest

from star_kit.config import RunConfig
from star_kit.loop import StarRun
from star_kit.progress import Phases
from star_kit.registry import load_registry
from star_kit.store import read_jsonl

FIXTURE_DATA = Path(__file__).resolve().parent / "fixtures" / "data"


@pytest.fixture()
def base_model(tmp_path):
    folder = tmp_path / "m0"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder.resolve())


def scripted_run(test_plugin, tmp_path, base_model, **overrides):
    import plugins_for_tests

    plugins_for_tests.EVENTS.clear()
    config = RunConfig(**{"task": "arithmetic", "model": base_model, "sampler": "scripted", "trainer": "recording",
                          "out": str(tmp_path / "run"), "iterations": 3, "patience": 0, "train_size": 12,
                          "eval_size": 6, "verifier": "none", **overrides})
    lines = []
    star = StarRun(config, load_registry(), Phases(enabled=False), log=lines.append)
    history = star.run()
    return star, history, plugins_for_tests.EVENTS, lines


def _collapsed(events):
    """(kind, model[, hinted]) of each event, consecutive repeats collapsed (an evaluation and the next
    iteration's sampling both generate without the hint from the same model)."""
    out = []
    for e in events:
        key = (e[0], e[1]) if e[0] in ("init", "load") else ("train", e[1], e[2]) if e[0] == "train" else \
            ("generate", e[1], e[2]) if e[0] == "generate" else (e[0],)
        if not out or out[-1] != key:
            out.append(key)
    return out


def test_three_iterations_train_m0_and_sample_from_the_previous_checkpoint(test_plugin, tmp_path, base_model):
    star, history, events, _ = scripted_run(test_plugin, tmp_path, base_model)
    ck = [str(star.store.artifact(n, "checkpoint")) for n in (1, 2, 3)]
    assert _collapsed(events) == [
        ("init", base_model),
        ("generate", base_model, False),  # iteration 0 (baseline evaluation), then iteration 1's sampling
        ("generate", base_model, True),  # iteration 1's rationalization
        ("train", base_model, 40),
        ("load", ck[0]),
        ("generate", ck[0], False),  # M(1) evaluated, then iteration 2 samples from M(1)
        ("generate", ck[0], True),
        ("train", base_model, 48),  # the base model again, never M(1)
        ("load", ck[1]),
        ("generate", ck[1], False),
        ("generate", ck[1], True),
        ("train", base_model, 58),
        ("load", ck[2]),
        ("generate", ck[2], False),  # M(3) evaluated
        ("close",),
    ]
    assert [r.steps for r in history[1:]] == [40, 48, 58]  # 40·1.2^(n-1): a different value every iteration
    assert [r.checkpoint for r in history[1:]] == ck
    # the scripted answers: right when the sum is divisible by 3; every failure rescued by the hint
    for r in history[1:]:
        assert 0 < r.kept < r.sampled == 12
        assert r.rationalized == r.rationalization_attempts == 12 - r.kept
        assert r.train_examples == 12
    evals = [read_jsonl(star.store.artifact(n, "eval_samples.jsonl")) for n in (0, 1, 2, 3)]
    expected = sum(int(e["gold"]) % 3 == 0 for e in evals[0]) / 6
    assert 0 < expected < 1 and all(r.accuracy == pytest.approx(expected) for r in history)


@pytest.mark.parametrize("task,options,marker", [
    ("arithmetic", {}, "(Hint:"),
    # the scripted sampler answers with a letter: the lettered format
    ("commonsense_qa", {"data_dir": str(FIXTURE_DATA), "task_options": {"answer_format": "choice"}}, "(CORRECT)"),
])
def test_a_rescued_rationalization_reaches_train_jsonl_without_its_hint(test_plugin, tmp_path, base_model, task,
                                                                          options, marker):
    star, history, events, _ = scripted_run(test_plugin, tmp_path, base_model, task=task, iterations=1,
                                            train_size=3, eval_size=2, **options)
    rationalized = read_jsonl(star.store.artifact(1, "rationalized.jsonl"))
    assert rationalized and all(r["hinted"] and r["correct"] for r in rationalized)
    train = read_jsonl(star.store.artifact(1, "train.jsonl"))
    rescued = [t for t in train if t["source"] == "rationalized"]
    assert len(rescued) == len(rationalized) == history[-1].rationalized > 0
    hinted_prompts = [p for e in events if e[0] == "generate" and e[2] for p in [e]]
    assert hinted_prompts  # the hint was really shown to the sampler ...
    trained = next(e for e in events if e[0] == "train")[3]
    for t in (*rescued, *trained):  # ... and never reaches the training pairs
        assert marker not in t["prompt"] and marker not in t["completion"]
        assert "Hint" not in t["prompt"] + t["completion"]
        assert t["prompt"].startswith("Q: ") and t["prompt"].endswith("\nA:")
    examples = {e.id: e for e in star.task.examples("train", 3, 0)}
    for t in rescued:
        assert t["prompt"] == star.task.prompt(examples[t["example_id"]], hint=False, fewshot=False)
        assert t["completion"].startswith(" Working it out step by step gives it.")


def test_a_resume_after_an_iteration_that_trained_nothing_samples_from_m0(test_plugin, tmp_path, base_model):
    """M(n) of an iteration with nothing to train on is M0: iteration n+1 samples from M0 in an uninterrupted run,
    and so must a resumed one (it took the last checkpoint recorded, M(n-1)'s)."""
    star, history, events, _ = scripted_run(test_plugin, tmp_path, base_model, iterations=2)
    ck1 = str(star.store.artifact(1, "checkpoint"))
    assert history[1].checkpoint == ck1
    # iteration 2 as recorded when it kept nothing: no training, no checkpoint
    metrics = star.store.root / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    rows[2].update(checkpoint=None, steps=0, train_examples=0)
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    shutil.rmtree(star.store.artifact(2, "checkpoint"))
    import plugins_for_tests

    plugins_for_tests.EVENTS.clear()
    config = RunConfig(**{**star.config.__dict__, "iterations": 3})
    StarRun(config, load_registry(), Phases(enabled=False), log=lambda line: None).run(resume=True)
    models = [e[1] for e in plugins_for_tests.EVENTS if e[0] in ("init", "load", "generate")]
    assert models[0] == base_model and ck1 not in models, models
