"""Wall time of one STaR iteration, split by phase (sample, rationalize, train, evaluate).

    python benchmarks/iteration_phases.py [--quick] [--train-size 200] [--eval-size 100] [--model smollm2-135m]
        [--task arithmetic] [--out DIR]

Defaults: 200 arithmetic problems (the CPU figure); pass --train-size 3000 on a GPU. The last line printed is
one JSON object: the iteration's metrics (seconds per phase and each phase's share of their sum, kept, rationalized,
accuracy) and the total. (One iteration without a baseline: no evaluation comes before its sampling, so nothing is
merged; ``benchmarks/default_job.py`` measures the merged passes.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (figures not meaningful)")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--train-size", type=int, default=200)
    parser.add_argument("--eval-size", type=int, default=100)
    parser.add_argument("--base-steps", type=int, default=40)
    parser.add_argument("--out", default=None)
    args, extra = parser.parse_known_args()
    if args.quick:
        args.train_size, args.eval_size, args.base_steps = 4, 2, 1
    out = args.out or tempfile.mkdtemp(prefix="star-kit-bench-")
    from star_kit.cli import main as cli
    from star_kit.store import read_jsonl

    t0 = time.perf_counter()
    code = cli(["run", "--task", args.task, "--model", args.model, "--iterations", "1", "--no-baseline",
                "--train-size", str(args.train_size), "--eval-size", str(args.eval_size),
                "--base-steps", str(args.base_steps), "--out", os.path.join(out, "run"), "--no-progress", *extra])
    total = time.perf_counter() - t0
    if code != 0:
        sys.exit(code)
    row = read_jsonl(os.path.join(out, "run", "metrics.jsonl"))[-1]
    phases = sum(row["seconds"].values())
    share = {k: round(v / phases, 3) for k, v in row["seconds"].items()} if phases else {}
    print("phase shares: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in share.items()), file=sys.stderr)
    print(json.dumps({"task": args.task, "model": args.model, "train_size": args.train_size,
                      "eval_size": args.eval_size, "seconds": row["seconds"], "phase_share": share,
                      "total_s": round(total, 1),
                      "kept": row["kept"], "rationalized": row["rationalized"], "steps": row["steps"],
                      "accuracy": row["accuracy"]}))


if __name__ == "__main__":
    main()
