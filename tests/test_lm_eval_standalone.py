"""The built-in tasks run by the stock ``lm_eval`` command (``lm_eval_standalone.yaml``, :mod:`star_kit.lm_eval_hooks`):
graded as star-kit grades them. Real lm-eval (its YAML loader, its CLI and its ``hf`` model) on a tiny randomly
initialised Llama."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from star_kit.cli import main
from star_kit.lm_eval_hooks import Extract, IsCorrect
from star_kit.store import read_jsonl
from star_kit_tasks import TASKS_DIR


@pytest.mark.parametrize("task, text, gold, right", [
    ("arithmetic", " 3 + 4 = 7. The answer is 7.", "7", True),
    ("arithmetic", " The answer is 8.", "7", False),
    ("commonsense_qa", " Letters go in a mailbox. The answer is Mailbox.", "(b) mailbox", True),
    ("commonsense_qa", " The answer is nest.", "(b) mailbox", False),
    ("gsm8k", " 2 + 2 = 4. The answer is 1,000.", "1000", True),
    ("gsm8k", "\x00garbage", "4", False),
])
def test_the_standalone_configs_load_in_lm_eval_with_star_kits_extractor_and_is_correct(task, text, gold, right):
    from lm_eval.tasks._yaml_loader import load_yaml

    config = load_yaml(TASKS_DIR / task / "lm_eval_standalone.yaml")
    assert config["task"] == f"star_kit_{task}_standalone" and config["doc_to_target"] == "answer"
    assert config["generation_kwargs"] == load_yaml(TASKS_DIR / task / f"{task}.yaml")["generation_kwargs"]  # include
    (flt,) = config["filter_list"]
    extract = flt["filter"][0]["filter_fn"]
    (metric,) = config["metric_list"]
    assert isinstance(extract, Extract) and isinstance(metric["metric"], IsCorrect)
    [[answer]] = extract([[text]], [{}])
    assert metric["metric"]([gold], [answer]) == float(right)


def test_a_plugins_own_standalone_config_grades_with_its_task(monkeypatch):
    """A third-party task ships a standalone config the built-ins' way (``star_kit.lm_eval_hooks.standalone``): the
    example plugin's loads in lm-eval with its extractor and ``is_correct``."""
    import star_kit.registry as registry
    from lm_eval.tasks._yaml_loader import load_yaml

    example = Path(__file__).resolve().parents[1] / "examples" / "star-kit-multiply"
    monkeypatch.syspath_prepend(str(example))
    monkeypatch.setenv("STAR_KIT_PLUGINS", "star_kit_multiply.plugin")
    monkeypatch.setattr(registry, "_DEFAULT", None)  # the process-wide registry, built anew with the plugin
    config = load_yaml(example / "star_kit_multiply" / "lm_eval_standalone.yaml")
    assert config["task"] == "star_kit_multiply_standalone"
    extract = config["filter_list"][0]["filter"][0]["filter_fn"]
    metric = config["metric_list"][0]["metric"]
    [[right], [none]] = extract([[" 12 * 3 = 36. The answer is 36."], ["no idea"]], [{}, {}])
    assert (right, none) == ("36", "[no answer]")
    assert metric(["36"], [right]) == 1.0 and metric(["36"], [none]) == 0.0


def test_python_m_star_kit_tasks_prints_the_include_path():
    out = subprocess.run([sys.executable, "-m", "star_kit_tasks"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == TASKS_DIR


def test_the_lm_eval_command_grades_a_bench_folder_as_star_kit_did(tiny_model, tmp_path):
    samples = tmp_path / "samples"
    assert main(["bench", "--model", tiny_model, "--tasks", "arithmetic", "--limit", "4", "--out", str(samples),
                 "--sampler-opt", "dtype=float32", "--no-progress"]) == 0
    [folder] = [p.parent for p in samples.rglob("eval_docs.jsonl")]
    ours = read_jsonl(folder / "eval_samples.jsonl")
    lm_eval = Path(sys.executable).parent / "lm_eval"
    subprocess.run([str(lm_eval), "--model", "hf", "--model_args", f"pretrained={tiny_model},dtype=float32",
                    "--device", "cpu", "--batch_size", "1", "--tasks", "star_kit_arithmetic_standalone",
                    "--include_path", str(TASKS_DIR), "--output_path", str(tmp_path / "lm"), "--log_samples"],
                   cwd=folder, check=True, capture_output=True, text=True, timeout=600)
    [results] = (tmp_path / "lm").rglob("results_*.json")
    [logged] = (tmp_path / "lm").rglob("samples_star_kit_arithmetic_standalone_*.jsonl")
    rows = sorted(read_jsonl(logged), key=lambda r: r["doc_id"])
    assert [r["doc"]["id"] for r in rows] == [r["example_id"] for r in ours]  # the same questions, in order
    for theirs, mine in zip(rows, ours):
        [answer] = theirs["filtered_resps"]
        assert answer == (mine["predicted"] or "[no answer]") or theirs["resps"][0][0] != mine["completion"]
        assert theirs["is_correct"] == float(mine["correct"]) or theirs["resps"][0][0] != mine["completion"]
    same = sum(t["resps"][0][0] == m["completion"] for t, m in zip(rows, ours))
    assert same >= 3, same  # greedy fp32 decoding by lm-eval's hf model and by star-kit's sampler agree
    accuracy = json.loads(results.read_text())["results"]["star_kit_arithmetic_standalone"]["is_correct,star_kit"]
    if same == len(ours):
        assert accuracy == sum(r["correct"] for r in ours) / len(ours)
