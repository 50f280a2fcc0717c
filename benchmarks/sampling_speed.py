"""Sampling speed on the STaR workload, every figure a ratio taken in one run: star-kit's default sampler against
a naive generate loop, transformers' ``generate`` inside the ``hf`` sampler, the fastest peer on the machine
(vLLM's CPU build, from ``.venv-vllm`` when it is there) and the machine's own limits.

    python benchmarks/sampling_speed.py [--n 256] [--model smollm2-135m] [--skip naive,vllm] [--vllm-python PATH]

The workload: ``--n`` arithmetic prompts (1-5 digit sums, the default task's few-shot prompt: a ~416-token
shared prefix, a short question), greedy, the task's stop strings and token budget. Each contender runs
``benchmarks/backend_throughput.py`` in its own process, one after the other (never two at once), and reports
useful tokens/s (completions cut at the stop string, re-tokenized with the model's tokenizer; engine start and
warm-up excluded, reported as ``load_s``).

Machine limits, measured in this process: the bf16 matmul peak (``benchmarks/peak.py``) and the decode roofline
at the contender's batch: every decode step reads all weights once, so tokens/s <= batch x bandwidth / weight
bytes as well as <= peak / FLOPs per token. FLOPs per token = 2 x parameters (the LM head counted once, the
embedding lookup not) + 4 x layers x heads x head_dim x mean context (attention). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def memory_bandwidth_gbs(mb: int = 512) -> float:
    """Best of three large tensor copies: GB/s read + written."""
    import torch

    a = torch.empty(mb * 2**20 // 4, dtype=torch.float32).fill_(1.0)
    b = torch.empty_like(a)
    best = 0.0
    for _ in range(4):
        t0 = time.perf_counter()
        b.copy_(a)
        best = max(best, 2 * a.numel() * 4 / (time.perf_counter() - t0))
    return best / 1e9


def model_costs(model: str, n: int, split: str = "eval", new_tokens: float = 60.0) -> dict:
    """Parameters, weight bytes (bf16) and FLOPs per generated token on the workload's mean context: the mean of
    ``n`` arithmetic prompts of ``split`` plus half of ``new_tokens`` (a completion's mean length)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from star_kit.registry import load_registry

    cfg = AutoConfig.from_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    task = load_registry().create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples(split, n, 0)]
    context = sum(len(tok(p)["input_ids"]) for p in prompts) / len(prompts) + new_tokens / 2
    with torch.device("meta"):
        from transformers import AutoModelForCausalLM

        net = AutoModelForCausalLM.from_config(cfg)
    params = sum(p.numel() for p in net.parameters())  # tied embeddings counted once: the LM head's matmul
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attention = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * context
    return {"params": params, "weight_bytes": params * 2, "mean_context": round(context, 1),
            "flops_per_token": 2 * params + attention}


def run(python: str, sampler: str, n: int, model: str, options: list[str]) -> dict | None:
    cmd = [python, str(ROOT / "benchmarks" / "backend_throughput.py"), "--sampler", sampler, "--n", str(n),
           "--model", model] + [a for o in options for a in ("--sampler-opt", o)]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"{sampler}: failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result = json.loads(lines[-1])
    print(json.dumps(result), file=sys.stderr, flush=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--skip", default="", help="comma-separated: naive, generate, vllm")
    p.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm" / "bin" / "python"))
    args = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from peak import matmul_peak

    from star_kit.models import resolve_model

    skip = set(filter(None, args.skip.split(",")))
    path = resolve_model(args.model)
    costs = model_costs(path, args.n)
    peak = matmul_peak("bfloat16")
    bandwidth = memory_bandwidth_gbs()
    contenders = {"hf": (sys.executable, "hf", [])}
    if "generate" not in skip:
        contenders["hf_generate"] = (sys.executable, "hf", ["engine=generate", "batch_size=32"])
    if "naive" not in skip:
        contenders["naive"] = (sys.executable, "naive", [])
    if "vllm" not in skip and Path(args.vllm_python).exists():
        contenders["vllm_cpu"] = (args.vllm_python, "vllm", [])
    results = {name: run(py, sampler, args.n, args.model, opts) for name, (py, sampler, opts) in contenders.items()}
    ours = results["hf"]["tokens_per_s"]
    flops = costs["flops_per_token"]
    report = {"workload": f"{args.n} arithmetic prompts, greedy", "model": args.model, **costs,
              "bf16_peak_gflops": round(peak, 1), "memory_gbs": round(bandwidth, 1),
              "compute_bound_tok_s": round(peak * 1e9 / flops, 1)}
    batch = 256  # the hf sampler's decode slots on CPU for this workload (what a 1 GiB cache holds, at most 256)
    report["bandwidth_bound_tok_s_at_batch"] = round(batch * bandwidth * 1e9 / costs["weight_bytes"], 1)
    for name, r in results.items():
        if r:
            report[f"{name}_tok_s"] = r["tokens_per_s"]
            report[f"{name}_load_s"] = r["load_s"]
            report[f"{name}_fraction_of_peak"] = round(r["tokens_per_s"] * flops / (peak * 1e9), 4)
            if name != "hf":
                report[f"hf_vs_{name}"] = round(ours / r["tokens_per_s"], 2)
    report["hf_fraction_of_roofline"] = round(
        ours / min(report["compute_bound_tok_s"], report["bandwidth_bound_tok_s_at_batch"]), 3)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
