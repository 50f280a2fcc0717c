"""The GPU check: what star-kit does on one CUDA GPU, in one short run (about 9 minutes on an H100/H200).

    python benchmarks/gpu_check.py --model smollm2-135m [--out DIR] [--budget-s 540] [--n 1024] [--quick]

Steps, each in its own process, in this order (most important first), each given what is left of ``--budget-s``:

1. ``env``        torch, CUDA device, transformers/TRL/lm-eval versions, the bf16/fp32 matmul peak of the GPU.
2. ``agreement``  the ``hf`` sampler on the same 128 arithmetic prompts, greedy: ``generate`` in float32 and
                  bfloat16, with the static (compiled) KV cache against without it, and star-kit's ``prefix``
                  engine against ``generate``: identical texts, accuracy, seconds.
3. ``throughput`` useful tokens/s on ``--n`` prompts (``benchmarks/backend_throughput.py``): the default,
                  ``generate`` + static cache, and the naive fp32 loop; fraction of the bf16 peak.
4. ``default_job`` ``star-kit run`` with every default (``benchmarks/default_job.py``), then with
                  ``static_cache=true``: wall time, accuracy per iteration, phase shares. (The static cache was the
                  CUDA default until this check's first run showed it 1.7x slower end to end.)
5. ``budget``     STaR with the budget a GPU allows (3000 training questions, lr 1e-4, batch 32, 4 iterations,
                  256 held-out sums): accuracy per iteration, kept/rationalized, verified share. Whatever iterations
                  finish within the budget are reported.

Every result is appended to ``OUT/gpu_check.jsonl`` as it finishes (one JSON object per step), so a run cut short
keeps what it measured; each step's output goes to ``OUT/<step>.log``; run directories (checkpoints) go to
``--runs`` (a temporary folder by default), not under OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import star_kit_run  # noqa: E402
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


class Runner:
    def __init__(self, out: Path, budget_s: float) -> None:
        self.out, self.deadline = out, time.monotonic() + budget_s
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, row: dict) -> None:
        with open(self.out / "gpu_check.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)

    def sub(self, step: str, name: str, cmd: list[str], limit: float) -> dict:
        """Run ``cmd`` with a timeout of ``min(limit, time left)``; its stdout+stderr go to OUT/<step>.log."""
        limit = min(limit, self.left() - 5)
        if limit < 20:
            row = {"step": step, "name": name, "skipped": "out of time"}
            self.record(row)
            return row
        t0 = time.perf_counter()
        with open(self.out / f"{step}.log", "a") as log:
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            # its own process group, so that a timeout also ends the processes it started (a run's trainer)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
            try:
                out, _ = proc.communicate(timeout=limit)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
                code = "timeout"
            log.write(out)
        row = {"step": step, "name": name, "exit": code, "wall_s": round(time.perf_counter() - t0, 1),
               "result": last_json(out)}
        self.record(row)
        return row


# -- steps run in their own process ------------------------------------------------------------------------------
def step_env() -> dict:
    import torch
    import transformers

    from peak import matmul_peak

    info = {"torch": torch.__version__, "transformers": transformers.__version__,
            "cuda": torch.cuda.is_available()}
    for mod in ("trl", "lm_eval", "datasets", "accelerate"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as exc:  # a missing package is a finding, not a crash
            info[mod] = f"missing: {type(exc).__name__}: {exc}"
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    info["bf16_gflops"] = round(matmul_peak("bfloat16", n=8192 if info["cuda"] else 1024), 1)
    info["fp32_gflops"] = round(matmul_peak("float32", n=8192 if info["cuda"] else 1024), 1)
    return info


AGREEMENT_RUNS = {
    "generate_fp32": dict(engine="generate", dtype="float32", static_cache=False),
    "generate_bf16": dict(engine="generate", dtype="bfloat16", static_cache=False),
    "generate_static_bf16": dict(engine="generate", dtype="bfloat16", static_cache=True),
    "prefix_fp32": dict(engine="prefix", dtype="float32"),
    "prefix_bf16": dict(engine="prefix", dtype="bfloat16"),
}


def step_agreement(model_name: str, n: int, runs=tuple(AGREEMENT_RUNS)) -> dict:
    """The ``hf`` sampler on the same ``n`` held-out arithmetic prompts, greedy, with each of ``runs`` (names in
    ``AGREEMENT_RUNS``): accuracy and seconds of each, and how many texts are identical between pairs that differ
    in one setting (the prefix engine vs ``generate``, the static cache vs none)."""
    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    registry = load_registry()
    task = registry.create("tasks", "arithmetic")
    examples = task.examples("eval", n, 0)
    prompts = [task.prompt(e) for e in examples]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    model = resolve_model(model_name)
    extract = registry.extractor(task.extractor)

    def texts(**options) -> tuple[list[str], float]:
        sampler = registry.create("samplers", "hf", model, **options)
        try:
            sampler.generate(prompts[:4], params)
            t0 = time.perf_counter()
            out = [c[0] for c in sampler.generate(prompts, params)]
            return out, time.perf_counter() - t0
        finally:
            sampler.close()

    def accuracy(out: list[str]) -> float:
        return round(sum(task.is_correct(extract(c), e.answer) for c, e in zip(out, examples)) / len(out), 4)

    result: dict = {"prompts": n}
    got = {}
    for name in runs:
        try:
            got[name], seconds = texts(**AGREEMENT_RUNS[name])
            result[name] = {"accuracy": accuracy(got[name]), "seconds": round(seconds, 2)}
        except Exception as exc:
            result[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        print(json.dumps(result), flush=True)  # cumulative: a step cut short keeps what it measured
    for a, b in (("prefix_fp32", "generate_fp32"), ("prefix_bf16", "generate_bf16"),
                 ("generate_static_bf16", "generate_bf16")):
        if a in got and b in got:
            same = sum(x == y for x, y in zip(got[a], got[b]))
            result[f"identical_{a}_vs_{b}"] = f"{same}/{n}"
            diff = next((i for i, (x, y) in enumerate(zip(got[a], got[b])) if x != y), None)
            if diff is not None:
                result[f"first_difference_{a}_vs_{b}"] = [got[a][diff][:120], got[b][diff][:120]]
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--out", default=None)
    p.add_argument("--budget-s", type=float, default=540)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--runs", default=None, help="where the run directories go (default: a temporary folder)")
    p.add_argument("--steps", default="env,agreement,throughput,default_job,budget", help="which steps, in order")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a check of this script, figures meaningless)")
    p.add_argument("--step", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.step == "env":
        print(json.dumps(step_env()))
        return
    if args.step == "agreement":
        print(json.dumps(step_agreement(args.model, 8 if args.quick else 128)))
        return

    out = Path(args.out or tempfile.mkdtemp(prefix="star-kit-gpu-check-"))
    r = Runner(out, args.budget_s)
    runs = Path(args.runs or tempfile.mkdtemp(prefix="star-kit-gpu-runs-"))
    py, me = sys.executable, str(Path(__file__).resolve())
    quick = ["--quick"] if args.quick else []
    steps = args.steps.split(",")
    if "env" in steps:
        r.sub("env", "env", [py, me, "--step", "env"], 60)
    if "agreement" in steps:
        r.sub("agreement", "agreement", [py, me, "--step", "agreement", "--model", args.model, *quick], 150)
    n = str(8 if args.quick else args.n)
    for name, sampler, options in (("default", "hf", []), ("generate_static", "hf", ["engine=generate",
                                                                                  "static_cache=true"]),
                                   ("naive", "naive", [])):
        if "throughput" in steps:
            cmd = [py, str(HERE / "backend_throughput.py"), "--sampler", sampler, "--model", args.model, "--n", n]
            # 90 s each on the GPU; --quick runs on a CPU, maybe a busy one, where a process start alone takes 10 s
            limit = 240 if args.quick else 90
            r.sub("throughput", name, cmd + [a for o in options for a in ("--sampler-opt", o)], limit)
    job = ["--model", args.model] + (["--train-size", "8", "--eval-size", "4", "--iterations", "1",
                                     "--base-steps", "1"] if args.quick else [])
    if "default_job" in steps:
        r.sub("default_job", "default_job", [py, str(HERE / "default_job.py"), "--keep", str(runs),
                                             "--variant", "default=" + " ".join(job),
                                             "--variant", "static_cache=" + " ".join(
                                                 job + ["--sampler-opt", "static_cache=true"])], 240)
    if "budget" not in steps:
        return
    budget = (["--train-size", "8", "--eval-size", "4", "--iterations", "1", "--base-steps", "1"] if args.quick else
              ["--train-size", "3000", "--eval-size", "256", "--iterations", "4"])
    run_dir = runs / "budget"
    r.sub("budget", "budget", star_kit_run(run_dir, "--model", args.model, *budget, "--trainer-opt",
                                           "learning_rate=1e-4", "--trainer-opt", "per_device_train_batch_size=32"),
          600)
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        r.record({"step": "budget", "name": "iterations", "result": [
            {k: row.get(k) for k in ("iteration", "accuracy", "kept", "rationalized", "rationalization_attempts",
                                     "unverified", "train_examples", "steps", "seconds")} for row in rows]})


if __name__ == "__main__":
    main()
