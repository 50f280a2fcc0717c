"""The benchmark scripts run (quick mode, tiny model, no assertions on time) and end with one JSON line."""

import json
import subprocess
import sys
from pathlib import Path

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
    data = _last_json([sys.executable, "benchmarks/train_throughput.py", "--quick", "--model", tiny_model])
    assert data["plain_tok_s"] > 0 and data["trl_tok_s"] > 0
