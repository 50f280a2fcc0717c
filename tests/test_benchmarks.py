"""The benchmark scripts run (quick mode, tiny model, no assertions on time) and end with one JSON line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _last_json(cmd):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_sampler_throughput_quick(tiny_model):
    data = _last_json([sys.executable, "benchmarks/sampler_throughput.py", "--quick", "--model", tiny_model,
                       "--tasks", "arithmetic"])
    row = data["tasks"]["arithmetic"]
    assert row["hf_tok_s"] > 0 and row["naive_tok_s"] > 0 and data["speedup_vs_naive"] > 0


def test_iteration_phases_quick(tiny_model, tmp_path):
    data = _last_json([sys.executable, "benchmarks/iteration_phases.py", "--quick", "--model", tiny_model,
                       "--out", str(tmp_path)])
    assert {"sample", "rationalize", "evaluate"} <= set(data["seconds"])


def test_train_throughput_quick(tiny_model):
    data = _last_json([sys.executable, "benchmarks/train_throughput.py", "--quick", "--model", tiny_model, "--plain",
                       "--variant", 'fp32={"bf16": false}'])
    before, after = data["variants"]["before"], data["variants"]["after"]
    assert set(data["variants"]) == {"before", "after", "fp32"} and data["plain_tok_s"] > 0
    assert after["padding_share"] == 0 and 0 < before["padding_share"] < 1  # padding-free vs padded batches
    assert after["real_tok_s"] > 0 and 0 < after["mfu"] < 1 and data["peak_gflops"]["bf16_gflops"] > 0
    assert data["after_vs_before"] > 0 and len(after["loss"]) == data["steps"]
    assert data["loss_max_abs_diff"] < 1e-2  # the same loss curve, step by step


def test_paper_table_quick(tiny_model, tmp_path):
    """All five conditions on the same questions; arithmetic per digit count, with unseen digit counts marked."""
    md = tmp_path / "table.md"
    data = _last_json([sys.executable, "benchmarks/paper_table.py", "--quick", "--model", tiny_model,
                       "--out", str(tmp_path / "paper"), "--markdown", str(md)])
    conditions = [c["condition"] for c in data["conditions"]]
    assert conditions == ["few-shot direct", "few-shot rationale", "direct fine-tune", "STaR",
                          "STaR + rationalization"]
    for c in data["conditions"]:
        assert c["n"] == 4
        assert set(c["per_digits"]) == {"1", "2", "3", "4"}  # --quick evaluates 1-4 digits, trains on 1-2
        # one question per digit count: the accuracy is the mean of the per-digit ones, each 0 or 1
        assert set(c["per_digits"].values()) <= {0.0, 1.0}
        assert c["accuracy"] == pytest.approx(sum(c["per_digits"].values()) / 4)
    star = {c["condition"]: c for c in data["conditions"]}
    assert len(star["STaR + rationalization"]["per_iteration"]) == 2  # few-shot, then iteration 1
    assert (tmp_path / "paper" / "direct_finetune" / "checkpoint" / "config.json").exists()
    # the fine-tuned model is prompted as the STaR runs prompt theirs (--eval-prompt trained: the question alone)
    prompt = {d: json.loads((tmp_path / "paper" / d / "eval.json").read_text())["prompt"]
              for d in ("fewshot_direct", "direct_finetune")}
    assert data["eval_prompt"] == "trained" and prompt == {"fewshot_direct": "fewshot", "direct_finetune": "question"}
    assert "| STaR + rationalization |" in md.read_text() and "3 digits *" in md.read_text()
    saved = json.loads((tmp_path / "paper" / "paper_table.json").read_text())
    assert saved["conditions"] == data["conditions"]


def test_sampling_speed_quick(tiny_model):
    """The sampling benchmark's ratios and machine limits come out of one run (vLLM only where its venv is)."""
    data = _last_json([sys.executable, "benchmarks/sampling_speed.py", "--n", "4", "--model", tiny_model,
                       "--skip", "vllm"])
    assert data["hf_tok_s"] > 0 and data["naive_tok_s"] > 0 and data["hf_generate_tok_s"] > 0
    assert data["hf_vs_naive"] == round(data["hf_tok_s"] / data["naive_tok_s"], 2)
    assert data["bf16_peak_gflops"] > 0 and data["memory_gbs"] > 0 and 0 < data["hf_fraction_of_peak"] < 1
    assert data["flops_per_token"] > 2 * data["params"]  # parameters plus attention


def test_default_job_variants(tiny_model):
    tiny = f"--model {tiny_model} --iterations 1 --train-size 4 --eval-size 2 --base-steps 1"
    data = _last_json([sys.executable, "benchmarks/default_job.py", "--variant", f"a={tiny}",
                       "--variant", f"b={tiny} --sampler-opt engine=generate"])
    a, b = data["variants"]["a"], data["variants"]["b"]
    assert len(a["accuracy"]) == 2 and {"evaluate", "sample", "rationalize"} <= set(a["phase_s"])  # train: if kept
    assert abs(sum(a["phase_share"].values()) - 1) < 0.01 and data["speedup"] == round(a["wall_s"] / b["wall_s"], 2)


def test_commonsense_qa_bias_runs(tiny_model):
    from conftest import REAL_DATA

    data_dir = REAL_DATA if REAL_DATA.is_dir() else ROOT / "tests" / "fixtures" / "data"
    data = _last_json([sys.executable, "benchmarks/commonsense_qa_bias.py", "--data-dir", str(data_dir), "--n", "2",
                       "--model", tiny_model, "--variants", "shuffle,letter_text"])
    assert data["variant"] == "letter_text" and data["n"] == 2
    assert sum(data["letters"].values()) == sum(data["text_letters"].values()) == 2


def test_gpu_check_quick_runs_its_steps_and_keeps_each_result(tiny_model, tmp_path):
    # On this CPU-only machine: the script's plumbing, and the prefix engine's greedy texts equal generate's in fp32.
    subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--model", tiny_model, "--out",
                    str(tmp_path), "--steps", "env,agreement,throughput", "--budget-s", "500"],
                   cwd=ROOT, check=True, capture_output=True, timeout=600)
    rows = [json.loads(line) for line in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    assert [(r["step"], r["name"]) for r in rows] == [("env", "env"), ("agreement", "agreement"),
                                                      ("throughput", "default"), ("throughput", "generate_static"),
                                                      ("throughput", "naive")]
    assert all(r["exit"] == 0 for r in rows), rows
    assert rows[0]["result"]["cuda"] is False and rows[0]["result"]["bf16_gflops"] > 0
    agreement = rows[1]["result"]
    assert agreement["identical_prefix_fp32_vs_generate_fp32"] == "8/8"
    assert all("error" not in agreement[k] for k in ("generate_fp32", "generate_static_bf16", "prefix_bf16"))
    assert all(r["result"]["tokens_per_s"] > 0 for r in rows[2:])


def test_gpu_sampler_quick_compares_the_two_engines(tiny_model, tmp_path):
    # On CPU: the plumbing, and the prefix engine's greedy float32 texts equal generate's (on a GPU, the same check
    # covers its CUDA attention).
    data = _last_json([sys.executable, "benchmarks/gpu_sampler.py", "--quick", "--model", tiny_model,
                       "--out", str(tmp_path / "r.json")])
    assert json.loads((tmp_path / "r.json").read_text()) == data
    assert data["agreement"]["identical_prefix_fp32_vs_generate_fp32"] == "4/4"
    assert all("error" not in data["agreement"][k] for k in ("generate_bf16", "prefix_bf16"))
    rows = data["throughput"]
    assert set(rows) == {"generate", "prefix_auto", "prefix_4"} and rows["prefix_4"]["slots"] == 4
    assert all(r["tokens_per_s"] > 0 and 0 < r["fraction_of_bf16_peak"] < 1 for r in rows.values())
    assert rows["generate"]["vs_generate"] == 1.0


def test_seed_sweep_runs_every_variant_and_seed(tiny_model, tmp_path):
    common = f"--model {tiny_model} --iterations 1 --train-size 4 --eval-size 2 --base-steps 1 --patience 0"
    data = _last_json([sys.executable, "benchmarks/seed_sweep.py", "--seeds", "0,1", "--jobs", "2",
                       "--common", common, "--variant", "rat=", "--variant", "norat=--no-rationalize",
                       "--keep", str(tmp_path), "--json", str(tmp_path / "sweep.json")])
    assert json.loads((tmp_path / "sweep.json").read_text()) == data
    for name in ("rat", "norat"):
        v = data["variants"][name]
        assert set(v["seeds"]) == {"0", "1"} and all(s["exit"] == 0 for s in v["seeds"].values())
        assert all(set(s["accuracy"]) == {"0", "1"} for s in v["seeds"].values())  # M0 and M1 of each seed
        assert v["mean"]["1"]["n"] == 2 and v["mean"]["1"]["sd"] is not None
    assert all(r == 0 for r in data["variants"]["norat"]["seeds"]["0"]["rationalized"].values())


def test_seed_sweep_budget_stops_runs_and_a_used_folder_is_refused(tiny_model, tmp_path):
    common = f"--model {tiny_model} --iterations 1 --train-size 4 --eval-size 2 --base-steps 1"
    cmd = [sys.executable, "benchmarks/seed_sweep.py", "--seeds", "0,1", "--common", common, "--keep", str(tmp_path)]
    data = _last_json([*cmd, "--budget-s", "2"])  # too short for any run: the first is stopped, the second never starts
    assert data["variants"]["default"]["seeds"]["0"]["exit"] == "cut"
    assert data["variants"]["default"]["seeds"]["1"]["exit"] == "not started"
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already holds default-s0" in again.stderr
    assert "sk-secret" not in json.dumps(_last_json([*cmd[:-2], "--keep", str(tmp_path / "s"), "--budget-s", "1",
                                                    "--variant", "k=--sampler-opt api_key=sk-secret"]))
    assert "sk-secret" not in (tmp_path / "s" / "k-s0.log").read_text()  # the logged command line too
    bad = subprocess.run([*cmd[:-2], "--variant", "x=--seed 3"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--seed is set by the sweep" in bad.stderr


def test_attention_speed_runs_and_agrees_with_sdpa():
    data = _last_json([sys.executable, "benchmarks/attention_speed.py", "--repeats", "1"])
    assert set(data["rows"]) == {"default_job", "train_benchmark", "train_fewshot"}
    assert data["rows"]["train_fewshot"]["probabilities"] == "recomputed"
    for row in data["rows"].values():
        assert row["sdpa_ms"] > 0 and row["packed_ms"] > 0
        assert row["max_abs_diff_out"] < 0.05 and max(row["max_rel_diff_grad"]) < 0.05  # bf16 rounding


def test_prefix_attention_variants_run_and_agree(tiny_model):
    result = _last_json([sys.executable, str(ROOT / "benchmarks" / "prefix_attention.py"), "--model", tiny_model,
                         "--n", "8", "--rounds", "1"])
    assert set(result["per_call"]) == {"flash", "bf16", "shift"} and result["prompts"] == 8
    assert all(v["max_out_error"] < 0.1 for v in result["per_call"].values())
    assert set(result["same_texts_as_flash"]) == {"bf16", "shift"} and set(result["right_answers"]) == {
        "flash", "bf16", "shift"}
