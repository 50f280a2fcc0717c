"""maj@K evaluation (``--eval-samples K``): K sampled rationales per held-out question, a majority vote over their
answers through lm-eval's ``repeats`` and a filter pipeline, reported beside the greedy accuracy. Real lm-eval and
the real SmolLM2-135M on 4 arithmetic questions (K = 3); the vote itself as a unit."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.config import RunConfig
from star_kit.errors import StarKitError
from star_kit.evaluation import NO_ANSWER, _lm_eval, evaluate, maj_config, majority_vote
from star_kit.records import Example, IterationResult
from star_kit.store import read_jsonl

FAST = ["--sampler-opt", "dtype=float32"]  # the tiny model decodes faster in fp32


def reference_vote(answers):
    """The documented rule, written independently: most votes among the answers given; a tie goes to the answer
    sampled first; no answer abstains; all abstaining -> no answer."""
    given = [(i, a) for i, a in enumerate(answers) if a is not None]
    if not given:
        return None
    counts = Counter(a for _, a in given)
    first = {}
    for i, a in given:
        first.setdefault(a, i)
    return min(counts, key=lambda a: (-counts[a], first[a]))


# -- the vote ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("answers, expected", [
    (["7", "8", "7"], "7"),                     # majority
    (["8", "7", "7"], "7"),                     # majority sampled later
    (["8", "7", "9"], "8"),                     # three-way tie: the first sampled
    (["7", "8", "8", "7"], "7"),                # two-way tie: the first sampled
    ([None, None, "5"], "5"),                   # no answer abstains: it never outvotes an answer
    ([None, "5", None, "6", "6"], "6"),
    ([None, None, None], None),                 # nothing to vote on: no answer
    ([], None),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected == reference_vote(answers)


def test_the_lm_eval_pipeline_votes_on_extracted_answers_and_garbage_is_no_answer():
    """maj_config's pipeline run through lm-eval's own filter ensemble: star_kit_extract, the vote, take_first."""
    from lm_eval.filters import build_filter_ensemble

    _lm_eval()  # registers star-kit's filters with lm-eval
    base = {"task": "t", "generation_kwargs": {"until": ["\n\n"], "do_sample": False, "temperature": 0.0},
            "filter_list": [{"name": "star_kit", "filter": [{"function": "star_kit_extract", "extractor": "arithmetic"},
                                                           {"function": "take_first"}]}]}
    cfg = maj_config(base, 3, 0.7)
    assert cfg["task"] == "t_maj" and cfg["repeats"] == 3
    assert cfg["generation_kwargs"] == {"until": ["\n\n"], "do_sample": True, "temperature": 0.7}
    (pipeline,) = cfg["filter_list"]
    assert pipeline["name"] == "maj@3"
    assert [s["function"] for s in pipeline["filter"]] == ["star_kit_extract", "star_kit_majority_vote", "take_first"]
    assert base["filter_list"][0]["filter"][1] == {"function": "take_first"}  # the greedy config is untouched

    from lm_eval.api.instance import Instance

    def Inst(resps):  # noqa: N802 - one lm-eval request with its K responses, as lm-eval's evaluator leaves it
        inst = Instance("generate_until", doc={}, arguments=("Q: ?\nA:", {}), idx=0, metadata=("t_maj", 0, 3))
        inst.resps = resps
        return inst

    insts = [Inst(["The answer is 12.", "\x00\ufffd<<garbage", "The answer is 12."]),
             Inst(["zzz", "9^9^9", ""]),                                  # no answer at all
             Inst(["The answer is 4.", "The answer is 5.", "no idea"])]  # tie: the first sampled
    ensemble = build_filter_ensemble(pipeline["name"],
                                     [[s["function"], {k: v for k, v in s.items() if k != "function"}]
                                      for s in pipeline["filter"]])
    ensemble.apply(insts)
    assert [i.filtered_resps["maj@3"] for i in insts] == ["12", NO_ANSWER, "4"]


@pytest.mark.parametrize("answers, expected", [
    (["nest", "forest", "nest", "Forest."], "forest"),  # 'nest' names no choice: it abstains; two votes for forest
    (["Mailbox.", "(b) mailbox", "desk"], "Mailbox."),  # one choice written two ways is one answer: its first form
    (["desk", "mailbox", "Mailbox"], "mailbox"),
    (["desk", "mailbox"], "desk"),                      # a tie between choices: the first sampled
    (["nest", "weasel", None], None),                   # no answer names a choice: no answer
])
def test_a_multiple_choice_vote_counts_choices_and_an_answer_naming_none_abstains(answers, expected):
    from star_kit.evaluation import VoteKey
    from star_kit.registry import default_registry

    task = default_registry().create("tasks", "commonsense_qa", _core={}, answer_format="text")
    example = Example("q1", "Q: Where would you put a letter?\nAnswer Choices:\n- drawer\n- mailbox\n- bookshelf\n"
                      "- desk\n- forest", "(b) mailbox",
                      {"choices": [("a", "drawer"), ("b", "mailbox"), ("c", "bookshelf"), ("d", "desk"), ("e", "forest")]})
    key = VoteKey(task, [example])
    assert key.name == "answer_label" and repr(key) == "task.answer_label"
    assert majority_vote(answers, lambda a: key({"id": "q1"}, a)) == expected
    # and through lm-eval's own filter ensemble, as maj_config builds it (lm-eval hands each doc to the filters)
    from lm_eval.api.instance import Instance
    from lm_eval.filters import build_filter_ensemble

    _lm_eval()
    base = {"task": "t", "generation_kwargs": {},
            "filter_list": [{"name": "star_kit", "filter": [{"function": "star_kit_extract",
                                                             "extractor": task.extractor}, {"function": "take_first"}]}]}
    (pipeline,) = maj_config(base, len(answers), 0.7, key)["filter_list"]
    inst = Instance("generate_until", doc={"id": "q1"}, arguments=("Q: ?\nA:", {}), idx=0, metadata=("t_maj", 0, 1))
    inst.resps = [f"Because. The answer is {a}" if a else "no idea" for a in answers]
    build_filter_ensemble(pipeline["name"], [[s["function"], {k: v for k, v in s.items() if k != "function"}]
                                             for s in pipeline["filter"]]).apply([inst])
    extract = default_registry().extractor(task.extractor)
    assert inst.filtered_resps[pipeline["name"]] == (NO_ANSWER if expected is None else
                                                     extract(f"The answer is {expected}"))


def test_the_choice_vote_changes_what_a_raw_text_vote_would_pick():
    """Without the label, "nest" (no choice) wins 2 to 1 to 1; the same answers counted by choice elect forest."""
    answers = ["nest", "forest", "nest", "Forest."]
    label = {"forest": "e", "Forest.": "e"}.get  # the choice each answer names; "nest" names none
    assert majority_vote(answers) == "nest"
    assert majority_vote(answers, label) == "forest"


# -- evaluation on the real model ---------------------------------------------------------------------------------
class Counting:
    """The real sampler, counting what it is asked to generate (prompts x n per call)."""

    def __init__(self, sampler):
        self.sampler, self.calls = sampler, []

    def __getattr__(self, name):
        return getattr(self.sampler, name)

    def generate(self, prompts, params, advance=None):
        self.calls.append((len(prompts), params.n, params.temperature))
        return self.sampler.generate(prompts, params, advance)


@pytest.fixture(scope="module")
def arithmetic_eval(smollm2):
    from star_kit.registry import default_registry

    registry = default_registry()
    task = registry.create("tasks", "arithmetic", _core={}, digits="1-2")
    sampler = registry.create("samplers", "hf", smollm2)
    yield registry, task, task.examples("eval", 4, 0), sampler
    sampler.close()


def test_off_is_greedy_only_and_on_adds_maj_at_k_beside_it(arithmetic_eval, tmp_path):
    registry, task, examples, real = arithmetic_eval
    off = Counting(real)
    ev_off = evaluate(task, off, examples, tmp_path / "off", registry, maj_k=1)
    assert off.calls == [(4, 1, 0.0)]  # no extra generation: 4 greedy rows
    assert ev_off.maj is None and "maj" not in json.loads((tmp_path / "off" / "eval.json").read_text())
    assert not any(k.startswith("maj_") for r in read_jsonl(tmp_path / "off" / "eval_samples.jsonl") for k in r)

    on = Counting(real)
    ev = evaluate(task, on, examples, tmp_path / "on", registry, maj_k=3, maj_temperature=0.7, seed=0)
    # greedy as before, plus the 4 questions once each with n = 3 (lm-eval's 3 repeats of a question: one prompt)
    assert sorted(on.calls) == [(4, 1, 0.0), (4, 3, 0.7)]
    rows = read_jsonl(tmp_path / "on" / "eval_samples.jsonl")
    # the greedy headline is unchanged
    assert ev.accuracy == ev_off.accuracy and [r["completion"] for r in rows] == [
        r["completion"] for r in read_jsonl(tmp_path / "off" / "eval_samples.jsonl")]
    for r in rows:
        assert len(r["maj_completions"]) == 3 and len(r["maj_answers"]) == 3
        assert r["maj_predicted"] == reference_vote(r["maj_answers"])  # lm-eval's pipeline voted as documented
        assert r["maj_correct"] == task.is_correct(r["maj_predicted"], r["gold"])
    written = json.loads((tmp_path / "on" / "eval.json").read_text())
    summary = written["maj"]
    assert summary["k"] == 3 and summary["temperature"] == 0.7
    assert summary["vote"] == "answer"  # arithmetic has no answer_label: the extracted answers are the votes
    assert written["lm_eval"]["results"][f"{written['task']}_maj"]["is_correct,maj@3"] == summary["accuracy"]
    assert summary["accuracy"] == ev.maj["accuracy"] == sum(r["maj_correct"] for r in rows) / 4
    assert summary["no_answer"] == sum(r["maj_predicted"] is None for r in rows)
    # SmolLM2 at 0.7 does not repeat itself on every question: the samples are real samples
    assert any(len(set(r["maj_completions"])) > 1 for r in rows)


# -- the run: record, table, report, loggers, resume ---------------------------------------------------------------
def test_a_run_records_maj_at_k_everywhere_and_resumes(smollm2, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--model", smollm2, "--out", str(out), "--iterations", "0", "--eval-size", "4",
            "--task-opt", "digits=1-2", "--eval-samples", "3", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    (row,) = read_jsonl(out / "metrics.jsonl")
    assert row["maj_k"] == 3 and 0 <= row["maj_accuracy"] <= 1
    ev = json.loads((out / "iter_00" / "eval.json").read_text())
    assert row["maj_accuracy"] == ev["maj"]["accuracy"] and row["accuracy"] == ev["accuracy"]
    assert "maj@3" in printed  # the terminal table's column
    with open(out / "metrics.csv", newline="") as fh:
        (csv_row,) = list(csv.DictReader(fh))
    assert float(csv_row["maj_accuracy"]) == row["maj_accuracy"] and csv_row["maj_k"] == "3"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<th>maj@3</th>" in html
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["eval_samples"] == 3 and saved["eval_temperature"] == 0.7

    mtime = (out / "iter_00" / "eval.json").stat().st_mtime_ns
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0  # config.yaml round-trips
    assert (out / "iter_00" / "eval.json").stat().st_mtime_ns == mtime  # nothing evaluated again
    assert main(["run", "--resume", str(out), "--eval-samples", "5", "--no-progress"]) == 2
    assert "config key 'eval_samples' differs" in capsys.readouterr().err


def test_bench_reports_maj_at_k_and_garbage_is_no_answer(tiny_model, tmp_path, capsys):
    """A random tiny model writes garbage: counted as no answer by the vote, never an error."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--limit", "3", "--task-opt", "digits=1",
                 "--eval-samples", "2", "--eval-temperature", "1.0", "--json", str(out), "--out",
                 str(tmp_path / "samples"), "--no-progress", *FAST]) == 0
    (row,) = json.loads(out.read_text())
    kept = read_jsonl(next((tmp_path / "samples").rglob("eval_samples.jsonl")))
    assert row["maj_k"] == 2 and row["maj_temperature"] == 1.0
    assert row["maj_no_answer"] == sum(r["maj_predicted"] is None for r in kept)
    assert row["maj_accuracy"] == sum(r["maj_correct"] for r in kept) / 3
    for r in kept:
        assert r["maj_predicted"] == reference_vote(r["maj_answers"])
    assert "maj@2" in capsys.readouterr().out


# -- configuration: flags, YAML, validation ------------------------------------------------------------------------
def test_flags_and_yaml_round_trip(tmp_path, capsys):
    assert main(["run", "--eval-samples", "8", "--eval-temperature", "0.5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["eval_samples"] == 8 and printed["eval_temperature"] == 0.5
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(printed))
    assert main(["run", "--config", str(path), "--print-config"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == printed
    assert RunConfig.from_dict(printed).eval_samples == 8
    defaults = RunConfig()
    assert defaults.eval_samples == 0 and defaults.eval_temperature == 0.7  # off by default
    # a config.yaml written before these keys existed loads with them off
    old = {k: v for k, v in defaults.to_dict().items() if not k.startswith("eval_s") and k != "eval_temperature"}
    assert RunConfig.from_dict(old).eval_samples == 0


@pytest.mark.parametrize("argv, message", [
    (["--eval-samples", "-1"], "--eval-samples must be an integer >= 0 (0 and 1: greedy only), got -1"),
    (["--eval-samples", "4", "--eval-temperature", "0"], "--eval-samples 4 needs --eval-temperature > 0"),
    (["--eval-temperature", "-0.5"], "--eval-temperature must be a number >= 0, got -0.5"),
])
def test_bad_values_are_one_line(argv, message, tmp_path, capsys):
    assert main(["run", *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert main(["bench", "--model", "smollm2-135m", "--tasks", "arithmetic", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_yaml_value_that_is_not_an_integer_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("eval_samples: 2.5\n")
    assert main(["run", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    assert "key 'eval_samples' is 2.5 (a number); expected an integer" in capsys.readouterr().err
    with pytest.raises(StarKitError, match="expected an integer"):
        RunConfig.from_dict({"eval_samples": True})


# -- the record's consumers ----------------------------------------------------------------------------------------
def test_loggers_and_report_show_maj_only_when_on(tmp_path):
    from star_kit_plugins import csv_logger, tensorboard_logger

    from star_kit.loop import describe
    from star_kit.report import write_report

    on = IterationResult(0, 0.25, 0.1, 8, maj_k=8, maj_accuracy=0.375, maj_accuracy_stderr=0.12)
    off = IterationResult(0, 0.25, 0.1, 8)
    tags = tensorboard_logger.scalars(on)
    assert tags["maj_accuracy"] == 0.375 and tags["maj_k"] == 8 and "samples/maj_accuracy" not in tags
    assert not any("maj" in t for t in tensorboard_logger.scalars(off))
    assert csv_logger.row_of(on)["maj_accuracy"] == 0.375
    assert describe(on) == "iteration 0 (few-shot baseline): accuracy 25.0% (maj@8 37.5%) on 8"
    assert describe(off) == "iteration 0 (few-shot baseline): accuracy 25.0% on 8"
    for name, result in (("on", on), ("off", off)):
        run = tmp_path / name
        run.mkdir()
        (run / "metrics.jsonl").write_text(json.dumps(result.to_dict()) + "\n")
        html = Path(write_report(run)[0]).read_text(encoding="utf-8")
        assert ("<th>maj@8</th>" in html) == (name == "on") and ("<td>37.5%</td>" in html) == (name == "on")
