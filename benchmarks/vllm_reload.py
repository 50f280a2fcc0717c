"""What a new checkpoint costs the ``vllm`` sampler: an engine restart against an in-place weight load.

    .venv-vllm/bin/python benchmarks/vllm_reload.py [--model smollm2-135m] [--n 64] [--sampler-opt K=V ...]
                                                     [--out runs/bench/vllm_reload.json]

Checkpoint B is the model with Gaussian noise on every weight matrix (same architecture, different outputs), in a
new folder, as each STaR iteration's checkpoint is. For each way of loading it, in one run: start a sampler on the
model, generate once (warm-up: the prefix cache now holds the few-shot prefix computed with the old weights),
``load(B)`` (timed), then generate greedily on ``--n`` arithmetic prompts (timed). Ways: ``restart``
(``reload=restart``, what the sampler did before: the engine is torn down and a new one started on B, which on
CPU means a new torch.compile, as vLLM's compile cache is keyed on the model folder) and ``in place`` (the
default, ``reload=inplace``). ``--sampler-opt`` applies to both (e.g. ``enforce_eager=true``).

It checks that the in-place load gives the restarted engine's greedy texts, prints a table and writes one JSON
object to ``--out`` and as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def perturbed_copy(src: str, dst: Path, scale: float = 0.1) -> str:
    """``src`` with noise (``scale`` of each matrix's standard deviation) on every weight matrix."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    generator = torch.Generator().manual_seed(0)
    for file in Path(src).glob("*.safetensors"):
        tensors = load_file(file)
        for name, t in tensors.items():
            if t.ndim == 2:
                noise = torch.randn(t.shape, generator=generator) * t.float().std() * scale
                tensors[name] = (t.float() + noise).to(t.dtype).contiguous()
        save_file(tensors, dst / file.name, metadata={"format": "pt"})
    return str(dst)


def scalar(text: str):
    """A ``--sampler-opt`` value as the command line reads it: true/false, an int, a float, else the text."""
    if text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def measure(label: str, model: str, checkpoint: str, options: dict, prompts, params) -> dict:
    from star_kit.registry import load_registry

    registry = load_registry()
    t0 = time.perf_counter()
    sampler = registry.create("samplers", "vllm", model, **options)
    start_s = time.perf_counter() - t0
    try:
        sampler.generate(prompts, params)  # warm-up; the prefix cache now holds blocks computed with the old weights
        t0 = time.perf_counter()
        sampler.load(checkpoint)
        load_s = time.perf_counter() - t0
        how = sampler.last_load
        t0 = time.perf_counter()
        out = sampler.generate(prompts, params)
        generate_s = time.perf_counter() - t0
    finally:
        sampler.close()
    texts = [c[0] for c in out]
    row = {"way": label, "options": options, "first_start_s": round(start_s, 1), "load_s": round(load_s, 2),
           "load_was": how, "generate_s": round(generate_s, 1), "texts": texts}
    print(f"# {label}: start {start_s:.1f}s, load {load_s:.2f}s ({how}), generate {generate_s:.1f}s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=64, help="arithmetic prompts generated after the load")
    parser.add_argument("--sampler-opt", action="append", default=[], metavar="K=V", help="for both ways")
    parser.add_argument("--out", default="runs/bench/vllm_reload.json")
    args = parser.parse_args()

    from star_kit.models import resolve_model
    from star_kit.records import GenerationParams
    from star_kit.registry import load_registry

    task = load_registry().create("tasks", "arithmetic")
    prompts = [task.prompt(e) for e in task.examples("eval", args.n, 0)]
    params = GenerationParams(max_new_tokens=task.max_new_tokens, stop=task.stop)
    model = resolve_model(args.model)
    common = {k: scalar(v) for k, v in (kv.split("=", 1) for kv in args.sampler_opt)}
    ways = [("restart", {**common, "reload": "restart"}), ("in place", {**common, "reload": "inplace"})]
    with tempfile.TemporaryDirectory(prefix="vllm-reload-") as tmp:
        rows = []
        for label, options in ways:
            # A new folder for every way, as every STaR iteration writes one (vLLM's compile cache is per folder).
            checkpoint = perturbed_copy(model, Path(tmp) / f"checkpoint-{len(rows)}")
            rows.append(measure(label, model, checkpoint, options, prompts, params))
    by_way = {r["way"]: r for r in rows}
    same = sum(a == b for a, b in zip(by_way["in place"]["texts"], by_way["restart"]["texts"]))
    import vllm

    result = {"model": args.model, "prompts": len(prompts), "vllm": vllm.__version__,
              "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "sampler_options": common,
              "inplace_texts_equal_restart": f"{same}/{len(prompts)}",
              "rows": [{k: v for k, v in r.items() if k != "texts"} for r in rows]}
    print(f"\n{'way':<10} {'first start s':>13} {'load(B) s':>10} {'generate s':>11}")
    for r in rows:
        print(f"{r['way']:<10} {r['first_start_s']:>13.1f} {r['load_s']:>10.2f} {r['generate_s']:>11.1f}")
    print(f"in-place greedy texts equal to the restarted engine's: {same}/{len(prompts)} "
          f"(sampler options: {common or 'defaults'})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
