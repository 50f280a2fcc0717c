"""Seeing a run: ``star-kit report`` (HTML + PNG), the CSV / TensorBoard / W&B loggers, and the report driven in a
real headless Chromium (skipped, with the reason, when chromium, chromedriver or selenium is missing).

The screenshot the README shows (docs/report.png) is made by ``scripts/docs_screenshot.py RUN``, not by a test.
"""

from __future__ import annotations

import base64
import dataclasses
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

from star_kit import errors
from star_kit.cli import main
from star_kit.config import RunConfig
from star_kit.records import IterationResult
from star_kit.report import write_report
from star_kit.store import read_jsonl, write_jsonl, write_yaml

TESTS = Path(__file__).resolve().parent
EVIL = '</script><script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'"> & <b>'


# -- a run directory written by hand ---------------------------------------------------------------------------
def _sample(qid, question, completion, predicted, gold, correct, hinted=False):
    return {"example_id": qid, "question": question, "completion": completion, "predicted": predicted,
            "gold": gold, "correct": correct, "hinted": hinted}


def make_run(root: Path) -> Path:
    """Two STaR iterations over four training questions; q0 correct, q1 rationalized then correct, q2 failed
    (its completions are an XSS attempt), q3 failed with no answer. Three held-out questions."""
    write_yaml(root / "config.yaml", RunConfig(out=str(root), iterations=2, train_size=4, eval_size=3).to_dict())
    metrics = [
        IterationResult(0, 1 / 3, 0.27, 3, seconds={"evaluate": 4.0}),
        IterationResult(1, 1 / 3, 0.27, 3, sampled=4, kept=1, no_answer=1, rationalization_attempts=3,
                        rationalized=1, train_examples=2, steps=4, checkpoint=str(root / "iter_01" / "checkpoint"),
                        seconds={"sample": 3.0, "rationalize": 2.5, "train": 10.0, "evaluate": 4.0}),
        IterationResult(2, 2 / 3, 0.27, 3, sampled=4, kept=2, no_answer=1, rationalization_attempts=2,
                        rationalized=0, train_examples=2, steps=5,
                        seconds={"sample": 3.5, "rationalize": 2.0, "train": 12.0, "evaluate": 4.5}),
    ]
    write_jsonl(root / "metrics.jsonl", (m.to_dict() for m in metrics))
    qs = [("train-0", "1 + 2 = ?", "3"), ("train-1", "17 + 25 = ?", "42"), ("train-2", "40 + 9 = ?", "49"),
          ("train-3", "8 + 8 = ?", "16")]
    it1 = [
        _sample(*qs[0][:2], " 1 + 2 = 3. The answer is 3.", "3", "3", True),
        _sample(*qs[1][:2], " 17 + 25 = 32. The answer is 32.", "32", "42", False),
        _sample(*qs[2][:2], EVIL + " The answer is 50.", "50", "49", False),
        _sample(*qs[3][:2], " eight and eight", None, "16", False),
    ]
    rat1 = [
        _sample(*qs[1][:2], " 17 + 25 = (10 + 20) + (7 + 5) = 42. The answer is 42.", "42", "42", True, True),
        _sample(*qs[2][:2], EVIL + " The answer is 48.", "48", "49", False, True),
        _sample(*qs[3][:2], " hmm", None, "16", False, True),
    ]
    it2 = [
        _sample(*qs[0][:2], " 1 + 2 = 3. The answer is 3.", "3", "3", True),
        _sample(*qs[1][:2], " 17 + 25 = (10 + 20) + (7 + 5) = 42. The answer is 42.", "42", "42", True),
        _sample(*qs[2][:2], EVIL + " The answer is 51.", "51", "49", False),
        _sample(*qs[3][:2], " ", None, "16", False),
    ]
    rat2 = [
        _sample(*qs[2][:2], EVIL + " The answer is 47.", "47", "49", False, True),
        _sample(*qs[3][:2], " 8 + 8 = 61", None, "16", False, True),
    ]
    for n, (samples, rationalized) in {1: (it1, rat1), 2: (it2, rat2)}.items():
        write_jsonl(root / f"iter_{n:02d}" / "samples.jsonl", samples)
        write_jsonl(root / f"iter_{n:02d}" / "rationalized.jsonl", rationalized)
    for n in (0, 1, 2):
        docs = [{"id": f"eval-{i}", "prompt": f"Q: 6 + 7 = ?\nA: 6 + 7 = 13. The answer is 13.\n\nQ: {i} + {i} = ?\nA:",
                 "answer": str(2 * i)} for i in range(3)]
        rows = [{"example_id": f"eval-{i}", "completion": f" {i} + {i} = {2 * i if i <= n else 0}.",
                 "predicted": str(2 * i if i <= n else 0), "gold": str(2 * i), "correct": i <= n} for i in range(3)]
        write_jsonl(root / f"iter_{n:02d}" / "eval_docs.jsonl", docs)
        write_jsonl(root / f"iter_{n:02d}" / "eval_samples.jsonl", rows)
    return root


def chart_svg(html: str) -> bytes:
    match = re.search(r'<div id="charts"><img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    assert match, "no inline chart"
    return base64.b64decode(match.group(1))


def embedded_data(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="star-data">(.*?)</script>', html, re.S)
    assert match, "no embedded data"
    return json.loads(match.group(1))


# -- the report files --------------------------------------------------------------------------------------------
def test_report_files_hold_the_run_and_nothing_runs_from_model_text(tmp_path):
    run = make_run(tmp_path / "run")
    html_path, png_path = write_report(run)
    assert html_path == run / "report.html" and png_path == run / "accuracy.png"
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000
    html = html_path.read_text(encoding="utf-8")

    data = embedded_data(html)
    assert data["metrics"] == read_jsonl(run / "metrics.jsonl")
    assert data["config"]["train_size"] == 4
    status = {n: {e["id"]: e["s"] for e in data["samples"]["train"][n]} for n in ("1", "2")}
    assert status["1"] == {"train-0": "correct", "train-1": "rationalized", "train-2": "failed", "train-3": "failed"}
    assert status["2"] == {"train-0": "correct", "train-1": "correct", "train-2": "failed", "train-3": "failed"}
    assert set(data["samples"]["eval"]) == {"0", "1", "2"}
    assert data["questions"]["eval"]["eval-2"] == ["Q: 2 + 2 = ?", "4"]
    hinted = [a for e in data["samples"]["train"]["1"] if e["id"] == "train-1" for a in e["a"]]
    assert [a[3] for a in hinted] == [False, True]  # the hint-free sample, then the rationalization
    evil = next(e for e in data["samples"]["train"]["1"] if e["id"] == "train-2")
    assert evil["a"][0][0] == EVIL + " The answer is 50."  # the model's text survives intact ...

    # ... but only as JSON data: no markup from it reaches the page, nothing is fetched.
    assert "<script>document.title" not in html and "<b>" not in html
    assert html.count("<img") == 1 and '<img src="data:image/svg+xml;base64,' in html  # only the charts
    assert html.count("<script") == 2 and "<script src" not in html and "<link" not in html
    assert re.findall(r"https?://[^\s\"'<>]+", html) == []
    assert "Content-Security-Policy" in html and "default-src &#x27;none&#x27;" in html
    # The charts: matplotlib's SVG, inline as a data: image, the same four charts as the PNG; no script draws them.
    svg = chart_svg(html)
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"<script" not in svg
    accuracy = re.findall(rb'<g id="accuracy">(.*?)</g>\s*</g>', svg, re.S)
    assert len(accuracy) == 1 and accuracy[0].count(b"<use ") == 3  # one accuracy point per iteration
    for title in ("held-out accuracy", "training samples", "training steps", "seconds per phase"):
        assert f"<!-- {title}".encode() in svg
    # The static metrics table (readable without JavaScript).
    assert "<td>66.7%</td>" in html and "<td>1 / 3</td>" in html
    # The config table: strings bare as in config.yaml, other values as JSON.
    assert "<tr><th>task</th><td>arithmetic</td></tr>" in html and "<tr><th>train_size</th><td>4</td></tr>" in html
    assert "<tr><th>rationalize</th><td>true</td></tr>" in html


def test_report_tolerates_a_torn_line_nan_and_a_missing_config(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    (run / "config.yaml").unlink()
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"iteration": 3, "accuracy": NaN, "seconds": {"evaluate": 1}}\n["not", "a", "row"]\n'
                 '{"iteration": "x", "accuracy": 0.9}\n{"iterat')
    with open(run / "iter_02" / "samples.jsonl", "a") as fh:
        fh.write('{"example_id": "train-9", "completion": 5, "predicted": 7}\n{"exam')
    html_path, _ = write_report(run)
    data = embedded_data(html_path.read_text())
    assert [m["iteration"] for m in data["metrics"]] == [0, 1, 2, 3]
    assert data["metrics"][3]["accuracy"] is None and data["config"] == {}
    assert any(e["id"] == "train-9" and e["a"][0][0] == "5" for e in data["samples"]["train"]["2"])
    warnings = capsys.readouterr().err  # each line left out is said, with its file and line
    assert "metrics.jsonl:5: a JSON list, not an object; left out" in warnings
    assert "metrics.jsonl:7: cut short; left out" in warnings
    assert "metrics.jsonl: a row whose iteration is 'x', not an integer, is left out" in warnings


def test_the_report_of_a_moved_run_shows_where_it_is(tmp_path):
    made = make_run(tmp_path / "made")
    moved = made.rename(tmp_path / "moved")
    data = embedded_data(write_report(moved)[0].read_text())
    assert data["config"]["out"] == str(moved)


def test_report_command(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert str(run / "report.html") in out
    assert (run / "accuracy.png").exists()
    # the run's table, as `star-kit run` printed it: a row per recorded iteration with its accuracy
    rows = [line.split("│") for line in out.splitlines() if line.count("│") > 4]
    metrics = [r for r in read_jsonl(run / "metrics.jsonl") if isinstance(r.get("iteration"), int)]
    assert "STaR iterations" in out and [r[1].strip() for r in rows] == [str(m["iteration"]) for m in metrics]
    assert [r[2].strip() for r in rows] == ["n/a" if m["accuracy"] is None else f"{100 * m['accuracy']:.1f}%"
                                                for m in metrics]
    # rows the report tolerates (no accuracy, a NaN, no seconds) print as blank cells, never a traceback
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "metrics.jsonl").write_text('{"iteration": 0}\n{"iteration": 1, "accuracy": NaN, "seconds": null}\n')
    assert main(["report", str(odd)]) == 0
    assert "n/a" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_the_report_says_which_iteration_a_stopped_run_left_unfinished(tmp_path):
    from star_kit.report.data import load_run, summary

    run = make_run(tmp_path / "run")
    (run / "iter_03").mkdir()
    write_jsonl(run / "iter_03" / "samples.jsonl", [])
    write_jsonl(run / "iter_03" / "train.jsonl", [])
    data = load_run(run)
    assert data["unfinished"] == {"3": ["samples.jsonl", "train.jsonl"]}
    assert summary(data).endswith("iteration 3 unfinished (has samples.jsonl, train.jsonl; star-kit run --resume "
                                  "goes on)")
    assert "unfinished" not in summary(data, unfinished=False)  # the chart's title
    html_path, _ = write_report(run)
    assert "iteration 3 unfinished" in html_path.read_text()


def test_a_non_editable_install_ships_the_page_files(tmp_path):
    """``pip install .`` (a wheel, not this checkout) carries report.html, report.css and report.js, and the
    installed package writes the page from them."""
    root = TESTS.parent
    src = tmp_path / "src"
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(".*", "build", "dist", "runs", "*.egg-info",
                                                             "__pycache__", "tests", "docs", "benchmarks"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile",
                    "-q", "--target", str(target), str(src)], check=True, capture_output=True, timeout=300)
    assert {p.name for p in (target / "star_kit" / "report").iterdir()} >= {"report.html", "report.css", "report.js"}
    run = make_run(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, star_kit.report as r; print(r.__file__); r.write_report(sys.argv[1])",
         str(run)], env={**os.environ, "PYTHONPATH": str(target)}, cwd=tmp_path, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(target)  # the installed copy, not this checkout
    assert embedded_data((run / "report.html").read_text(encoding="utf-8"))["config"]["train_size"] == 4


def test_nothing_in_the_package_imports_the_cli():
    """The command line sits on top: ``report`` and ``bench`` print through :mod:`star_kit.console`, so no module
    (at import or inside a function) reaches back into :mod:`star_kit.cli`; only ``python -m star_kit`` starts it."""
    import ast
    import importlib.util

    package = TESTS.parent / "star_kit"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), ".".join(parts[:-1]))
                imported = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            if "star_kit.cli" in imported and path.name != "__main__.py":
                offenders.append(f"{path.relative_to(package)}:{node.lineno}")
    assert offenders == []


# -- loggers -----------------------------------------------------------------------------------------------------
def _results():
    return [IterationResult(0, 0.25, 0.1, 8, seconds={"evaluate": 2.0}),
            IterationResult(1, 0.5, 0.12, 8, sampled=6, kept=3, no_answer=1, rationalization_attempts=3,
                            rationalized=1, train_examples=4, steps=2, checkpoint="/x/iter_01/checkpoint",
                            seconds={"sample": 1.5, "rationalize": 1.0, "train": 3.0, "evaluate": 2.0})]


def test_csv_logger_one_row_per_iteration_replaced_on_resume(tmp_path):
    from star_kit_plugins import csv_logger

    for r in _results():
        csv_logger.star_kit_iteration_end(iteration=r.iteration, result=r, run_dir=tmp_path)
    again = IterationResult(1, 0.625, 0.1, 8, steps=2, seconds={"evaluate": 2.5, "judge": 1.0})  # resumed
    csv_logger.star_kit_iteration_end(iteration=1, result=again, run_dir=tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["iteration"] for r in rows] == ["0", "1"]
    assert rows[0]["accuracy"] == "0.25" and rows[0]["seconds_evaluate"] == "2.0" and rows[0]["checkpoint"] == ""
    # the base model sampled and trained nothing: empty cells, as in the results table, not measured zeros
    assert rows[0]["kept"] == rows[0]["sampled"] == rows[0]["steps"] == rows[0]["train_examples"] == ""
    assert rows[0]["eval_examples"] == "8" and rows[0]["no_answer"] == "0"  # the evaluation's count: measured
    assert rows[1]["accuracy"] == "0.625" and rows[1]["seconds_evaluate"] == "2.5" and rows[1]["seconds_judge"] == "1.0"
    assert list(rows[0])[:3] == ["iteration", "accuracy", "accuracy_stderr"]


def test_csv_logger_writes_an_iteration_recorded_but_never_logged(tmp_path):
    """A run killed after recording iteration 1 in metrics.jsonl and before its event: the resume does not record
    iteration 1 again, so the next event writes it from metrics.jsonl (it used to be missing from metrics.csv)."""
    from star_kit.store import write_jsonl
    from star_kit_plugins import csv_logger

    base, first = _results()
    csv_logger.star_kit_iteration_end(iteration=0, result=base, run_dir=tmp_path)
    write_jsonl(tmp_path / "metrics.jsonl", [base.to_dict(), first.to_dict()])  # 1 recorded; its event never ran
    second = IterationResult(2, 0.75, 0.1, 8, steps=3, seconds={"evaluate": 1.0})
    write_jsonl(tmp_path / "metrics.jsonl", [base.to_dict(), first.to_dict(), second.to_dict()])
    csv_logger.star_kit_iteration_end(iteration=2, result=second, run_dir=tmp_path)
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["iteration"], r["accuracy"]) for r in rows] == [("0", "0.25"), ("1", str(first.accuracy)), ("2", "0.75")]


def test_tensorboard_logger_writes_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from star_kit_plugins import tensorboard_logger

    checkpoint = tmp_path / "iter_01" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "train_log.jsonl").write_text(  # as the trainer writes it; a damaged line is skipped
        '{"loss": 1.5, "grad_norm": 4.0, "step": 1}\n{"loss": 0.75, "step": 2}\nnot json\n{"train_runtime": 3.0}\n')
    results = _results()
    results[1] = dataclasses.replace(results[1], checkpoint=str(checkpoint))
    for r in results:
        tensorboard_logger.star_kit_iteration_end(iteration=r.iteration, result=r, config=RunConfig(), run_dir=tmp_path)
    events = sorted((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    values: dict[str, list] = {}
    for path in events:
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            values.setdefault(tag, []).extend((e.step, round(e.value, 4)) for e in acc.Scalars(tag))
    assert sorted(values["accuracy"]) == [(0, 0.25), (1, 0.5)]
    assert values["samples/kept"] == [(1, 3.0)] and values["train/steps"] == [(1, 2.0)]
    from star_kit_plugins.tensorboard_logger import scalars

    ahead = dataclasses.replace(_results()[1], sampled_ahead_in=0)  # an iteration number: not plotted as a value
    assert "samples/sampled_ahead_in" not in scalars(ahead) and scalars(ahead)["samples/kept"] == 3.0
    assert values["seconds/train"] == [(1, 3.0)]
    assert values["train_loss/iter_01"] == [(1, 1.5), (2, 0.75)] and values["train_grad_norm/iter_01"] == [(1, 4.0)]
    assert not any(tag.endswith("iter_00") for tag in values)  # the base model trained nothing


class _FakeWandb(types.ModuleType):
    def __init__(self, fail=False):
        super().__init__("wandb")
        self.inits, self.logged, self.finished, self.fail, self.axes = [], [], 0, fail, {}

    def init(self, **kwargs):
        if self.fail:
            raise RuntimeError("no network")
        self.inits.append({**kwargs, "argv": list(sys.argv)})  # wandb records sys.argv during init
        fake = self

        class Run:
            def define_metric(self, name, step_metric=None):
                fake.axes[name] = step_metric

            def log(self, data, step=None):
                assert step is None  # W&B's own step: one per call; the axes are custom step metrics
                fake.logged.append(data)

            def finish(self):
                fake.finished += 1

        return Run()


def test_wandb_logger_is_off_without_project_and_logs_with_it(tmp_path, monkeypatch, capsys):
    from star_kit_plugins import wandb_logger

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr(wandb_logger, "_state", {"run": None, "dir": None, "defined": set()})
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    r0, r1 = _results()
    checkpoint = tmp_path / "iter_01" / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "train_log.jsonl").write_text(
        '{"loss": 1.5, "grad_norm": 4.0, "step": 1}\n{"loss": 0.75, "step": 2}\n')
    r1.checkpoint = str(checkpoint)
    wandb_logger.star_kit_iteration_end(iteration=0, result=r0, config=RunConfig(), run_dir=tmp_path)
    assert fake.inits == [] and fake.logged == []

    monkeypatch.setenv("WANDB_PROJECT", "star-tests")
    argv = ["star-kit", "run", "--trainer-opt", "hub_token=hf_cmdline789", "--sampler-opt=openai.api_key=sk-1",
            "--task-opt", "digits=1-2"]
    monkeypatch.setattr(sys, "argv", list(argv))
    for r in (r0, r1):
        wandb_logger.star_kit_iteration_end(iteration=r.iteration, result=r, config=RunConfig(), run_dir=tmp_path)
    assert len(fake.inits) == 1 and fake.inits[0]["project"] == "star-tests"
    # the command line wandb records has the credentials redacted; the process's own is restored after init
    assert fake.inits[0]["argv"] == ["star-kit", "run", "--trainer-opt", "hub_token=<redacted>",
                                     "--sampler-opt=openai.api_key=<redacted>", "--task-opt", "digits=1-2"]
    assert sys.argv == argv
    assert fake.inits[0]["config"]["task"] == "arithmetic"
    # the iterations' metrics against the axis "iteration", the fine-tune's curve against "train_step"
    assert [d["iteration"] for d in fake.logged if "iteration" in d] == [0, 1]
    assert next(d for d in fake.logged if d.get("iteration") == 1)["accuracy"] == 0.5
    assert [d for d in fake.logged if "train_step" in d] == [
        {"train_step": 1, "train_loss/iter_01": 1.5, "train_grad_norm/iter_01": 4.0},
        {"train_step": 2, "train_loss/iter_01": 0.75}]
    assert fake.axes["accuracy"] == fake.axes["samples/kept"] == "iteration"
    assert fake.axes["train_loss/*"] == fake.axes["train_grad_norm/*"] == "train_step"
    wandb_logger.star_kit_iteration_end(iteration=0, result=r0, config=RunConfig(), run_dir=tmp_path / "other")
    assert len(fake.inits) == 2 and fake.finished == 1  # a new run directory: the previous W&B run is finished

    # wandb not importable: nothing happens, one note.
    monkeypatch.delitem(sys.modules, "wandb")
    monkeypatch.setattr(wandb_logger.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(errors, "WARNED", set())
    wandb_logger.star_kit_iteration_end(iteration=1, result=r1, config=RunConfig(), run_dir=tmp_path / "third")
    assert "wandb is not installed" in capsys.readouterr().err


def test_loggers_never_raise(tmp_path, monkeypatch, capsys):
    from star_kit_plugins import csv_logger, tensorboard_logger, wandb_logger

    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    r = _results()[1]
    monkeypatch.setenv("WANDB_PROJECT", "star-tests")
    monkeypatch.setitem(sys.modules, "wandb", _FakeWandb(fail=True))
    monkeypatch.setattr(wandb_logger, "_state", {"run": None, "dir": None, "defined": set()})
    csv_logger.star_kit_iteration_end(iteration=1, result=r, run_dir=blocked)
    tensorboard_logger.star_kit_iteration_end(iteration=1, result=r, config=RunConfig(), run_dir=blocked)
    wandb_logger.star_kit_iteration_end(iteration=1, result=r, config=RunConfig(), run_dir=blocked)
    err = capsys.readouterr().err
    assert "csv logger" in err and "tensorboard logger" in err and "wandb logger" in err


# -- a real run on the tiny model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tiny_model, tmp_path_factory):
    """Two STaR iterations of lenient-arithmetic on the tiny model, through the CLI (so the loggers and the
    end-of-run report run as they do for a user)."""
    out = tmp_path_factory.mktemp("report-run") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        mp.setenv("STAR_KIT_PLUGINS", "plugins_for_tests")
        mp.delenv("STAR_KIT_LOAD_PLUGINS", raising=False)
        mp.delenv("WANDB_PROJECT", raising=False)
        rc = main(["run", "--model", tiny_model, "--out", str(out), "--task", "lenient-arithmetic",
                   "--iterations", "2", "--patience", "0", "--train-size", "6", "--eval-size", "4",
                   "--base-steps", "2", "--no-progress", "--sampler-opt", "batch_size=4",
                   "--trainer-opt", "per_device_train_batch_size=2"])
    assert rc == 0
    return out


def test_a_run_ends_with_report_csv_and_tensorboard(tiny_run):
    metrics = read_jsonl(tiny_run / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    html = (tiny_run / "report.html").read_text(encoding="utf-8")
    data = embedded_data(html)
    assert data["metrics"] == metrics
    assert set(data["samples"]["train"]) == {"1", "2"} and set(data["samples"]["eval"]) == {"0", "1", "2"}
    assert len(data["samples"]["train"]["1"]) == 6
    assert (tiny_run / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    with open(tiny_run / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert [float(r["accuracy"]) for r in rows] == [m["accuracy"] for m in metrics]
    assert [r["kept"] for r in rows] == ["", *(str(m["kept"]) for m in metrics[1:])]  # the base model kept nothing
    assert list((tiny_run / "tensorboard").glob("events.out.tfevents.*"))


def test_a_failing_report_does_not_fail_the_run(tiny_model, tmp_path, monkeypatch, capsys):
    import star_kit.report

    def broken(run_dir):
        raise RuntimeError("disk [full]")

    monkeypatch.setattr(star_kit.report, "write_report", broken)
    out = tmp_path / "run"
    assert main(["run", "--model", tiny_model, "--out", str(out), "--iterations", "0", "--eval-size", "2",
                 "--task-opt", "digits=1", "--no-progress", "--sampler-opt", "batch_size=2"]) == 0
    err = capsys.readouterr().err
    assert "report not written: RuntimeError: disk [full]" in err
    assert (out / "metrics.jsonl").exists() and not (out / "report.html").exists()


# -- the report in a real browser --------------------------------------------------------------------------------
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1500"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
    options = Options()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _open(driver, html_path: Path):
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(html_path.resolve().as_uri())
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _rows(driver):
    return driver.find_elements("css selector", "#list li.row")


def _click_filter(driver, status):
    driver.find_element("css selector", f"#filters button[data-status='{status}']").click()


def test_report_in_a_browser_real_run(browser, tiny_run, tmp_path):
    errors = _open(browser, tiny_run / "report.html")
    assert errors == [], errors
    chart = browser.find_element("css selector", "#charts img")  # matplotlib's SVG, drawn before the page
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", chart) > 600
    assert chart.size["height"] > 200
    svg = chart_svg((tiny_run / "report.html").read_text(encoding="utf-8"))
    accuracy = re.findall(rb'<g id="accuracy">(.*?)</g>\s*</g>', svg, re.S)
    assert accuracy[0].count(b"<use ") == 3  # one accuracy point per iteration
    # Training samples of the last iteration; every lenient sample is "correct": the failed filter empties it.
    assert len(_rows(browser)) == 6
    _click_filter(browser, "failed")
    assert _rows(browser) == [] and "0 of 6" in browser.find_element("id", "count").text
    _click_filter(browser, "all")
    rows = _rows(browser)
    assert len(rows) == 6
    rows[0].click()
    cols = browser.find_elements("css selector", "#detail .col")
    assert [c.get_attribute("data-iteration") for c in cols] == ["1", "2"]
    assert browser.find_elements("css selector", "#detail .col.current")[0].get_attribute("data-iteration") == "2"
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"] == []


def test_report_in_a_browser_filters_search_and_escapes(browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    run = make_run(tmp_path / "run")
    html_path, _ = write_report(run)
    assert _open(browser, html_path) == []
    Select(browser.find_element("id", "iteration")).select_by_value("1")
    assert len(_rows(browser)) == 4
    for status, ids in {"correct": ["train-0"], "rationalized": ["train-1"], "failed": ["train-2", "train-3"]}.items():
        _click_filter(browser, status)
        assert [r.get_attribute("data-id") for r in _rows(browser)] == ids, status
    _click_filter(browser, "all")
    search = browser.find_element("id", "search")
    search.send_keys("pwned")
    rows = _rows(browser)
    assert [r.get_attribute("data-id") for r in rows] == ["train-2"]
    rows[0].click()
    detail = browser.find_element("id", "detail")
    assert [c.get_attribute("data-iteration") for c in detail.find_elements("css selector", ".col")] == ["1", "2"]
    pres = [p.text for p in detail.find_elements("css selector", "pre")]
    assert len(pres) == 4 and all("<img src=x onerror=" in p for p in pres)  # shown as text ...
    assert browser.find_elements("css selector", "#browser img, #browser b") == []  # ... never as markup
    assert browser.title.startswith("star-kit report") and "pwned" not in browser.title
    search.clear()
    search.send_keys("17 + 25")
    assert [r.get_attribute("data-id") for r in _rows(browser)] == ["train-1"]
    # The held-out set has iteration 0, the few-shot baseline.
    Select(browser.find_element("id", "set")).select_by_value("eval")
    its = [o.get_attribute("value") for o in Select(browser.find_element("id", "iteration")).options]
    assert its == ["0", "1", "2"]
    assert [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"] == []


def test_a_rationale_the_verifier_rejected_is_not_kept_in_the_report():
    from star_kit.report.data import attempt, sample, status

    row = {"completion": " 27 + 28 = 55. The answer is 55.", "predicted": "55", "correct": True, "hinted": False,
           "verified": False, "rejected": "no place-value step (the rationale skips the reasoning)"}
    rejected = attempt(sample(row))
    assert rejected == [row["completion"], "55", False, False, row["rejected"]]
    assert status([rejected]) == "failed"
    kept = attempt(sample(dict(row, verified=True, rejected=None)))
    assert kept[2:] == [True, False, None] and status([kept]) == "correct"
