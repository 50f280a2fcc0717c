"""Variants of a STaR run over several seeds: accuracy per iteration, mean and spread, in one table.

    python benchmarks/seed_sweep.py --seeds 0,1,2 \\
        --common "--task commonsense_qa --data-dir DATA --train-size 256 --eval-size all --no-baseline" \\
        --variant default="" --variant k4="--samples 4 --temperature 0.7" [--jobs 1] [--budget-s 3600]

Each (variant, seed) is one `star-kit run --seed S COMMON VARIANT` in a run directory of its own under `--keep`
(a temporary folder by default). `--jobs N` runs N of them at once: on a GPU one process leaves the card idle most
of the time (decoding a 135M model is bound by per-step latency), so several processes share it; on a 2-core
machine keep `--jobs 1`. At `--budget-s` the runs still going are stopped; every iteration they finished counts
(`metrics.jsonl` is written per iteration), and the table says which runs were cut short.

The last line printed is one JSON object: per variant and seed the accuracy per iteration, the kept/rationalized
counts, the exit status (0, "cut" at the budget, "not started", or the run's own exit code) and the wall seconds;
per variant and iteration the mean and the (sample) standard deviation over the seeds that reached it (runs that
failed are left out of the means). `--json FILE` also writes it to FILE. Without `--keep` the run directories
(checkpoints: ~270 MB each for SmolLM2-135M) are deleted at the end; a `--keep` folder must not hold runs of the
same names already (`star-kit run` refuses a run directory in use).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
OWN_FLAGS = ("--seed", "--out", "--resume")  # the sweep sets these per run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_variants, star_kit_run  # noqa: E402
from star_kit.config import redact_argv  # noqa: E402


def read_metrics(run: Path) -> list[dict]:
    """The iterations a run recorded (``metrics.jsonl``), those with an accuracy."""
    from star_kit.store import read_jsonl

    path = run / "metrics.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    return [r for r in rows if isinstance(r.get("accuracy"), (int, float))]


def summarize(variants: dict[str, str], seeds: list[int], runs: dict[tuple[str, int], dict]) -> dict:
    out: dict = {"variants": {}}
    for name, extra in variants.items():
        per_seed = {}
        by_iter: dict[int, list[float]] = {}
        for seed in seeds:
            run = runs[(name, seed)]
            rows = read_metrics(run["dir"])
            per_seed[seed] = {
                "accuracy": {r["iteration"]: round(r["accuracy"], 6) for r in rows},
                "kept": {r["iteration"]: r.get("kept") for r in rows if r["iteration"] > 0},
                "rationalized": {r["iteration"]: r.get("rationalized") for r in rows if r["iteration"] > 0},
                "exit": run.get("exit"), "wall_s": run.get("wall_s"),
            }
            if run.get("exit") in (0, "cut"):  # a failed run's iterations are not averaged
                for r in rows:
                    by_iter.setdefault(r["iteration"], []).append(r["accuracy"])
        out["variants"][name] = {
            "args": shlex.join(redact_argv(shlex.split(extra))), "seeds": per_seed,
            "mean": {i: {"mean": round(statistics.fmean(v), 6), "sd": round(statistics.stdev(v), 6) if len(v) > 1
                         else None, "n": len(v)} for i, v in sorted(by_iter.items())},
        }
    return out


def table(summary: dict) -> str:
    lines = ["| variant | seed | accuracy per iteration | exit | wall s |", "|---|---|---|---|---|"]
    for name, v in summary["variants"].items():
        for seed, s in v["seeds"].items():
            accs = " → ".join(f"{100 * a:.1f}" for _, a in sorted(s["accuracy"].items())) or "—"
            lines.append(f"| {name} | {seed} | {accs} | {s['exit']} | {s['wall_s']} |")
        means = ", ".join(f"M{i} {100 * m['mean']:.1f}" + (f" ± {100 * m['sd']:.1f}" if m["sd"] is not None else "")
                          + f" (n={m['n']})" for i, m in v["mean"].items())
        lines.append(f"| {name} | mean | {means} | | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--common", default="", help="`star-kit run` arguments given to every run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (several only on a GPU)")
    p.add_argument("--budget-s", type=float, default=None, help="stop the runs still going after this many seconds")
    p.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR (default: a temporary folder)")
    p.add_argument("--json", metavar="FILE", help="also write the result to FILE")
    args = p.parse_args()
    variants = parse_variants(p, args.variant)
    for where, extra in (("--common", args.common), *((f"--variant {n}", e) for n, e in variants.items())):
        own = [a for a in shlex.split(extra) if a.split("=")[0] in OWN_FLAGS]
        if own:
            p.error(f"{where}: {own[0]} is set by the sweep for each run")
    seeds = [int(s) for s in args.seeds.split(",")]
    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="star-kit-sweep-")
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    taken = [f"{n}-s{s}" for s in seeds for n in variants
             if (root / f"{n}-s{s}").exists() or (root / f"{n}-s{s}.log").exists()]
    if taken:
        p.error(f"--keep {root}: already holds {', '.join(taken)} (a sweep writes new run directories)")
    env = dict(os.environ)
    if args.jobs > 1:  # share the cores instead of each process taking all of them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    deadline = time.monotonic() + args.budget_s if args.budget_s else None

    todo = [(name, seed) for seed in seeds for name in variants]  # seed-major: a cut-short sweep keeps every variant
    runs: dict[tuple[str, int], dict] = {key: {"dir": root / f"{key[0]}-s{key[1]}"} for key in todo}
    running: dict[tuple[str, int], subprocess.Popen] = {}
    while todo or running:
        while todo and len(running) < args.jobs and (deadline is None or time.monotonic() < deadline):
            key = todo.pop(0)
            run = runs[key]
            cmd = star_kit_run(run["dir"], "--seed", str(key[1]), *shlex.split(args.common),
                               *shlex.split(variants[key[0]]))
            with open(root / f"{key[0]}-s{key[1]}.log", "w") as log:  # the child keeps its own handle
                log.write("$ " + shlex.join(redact_argv(cmd)) + "\n")
                log.flush()
                run["t0"] = time.monotonic()
                running[key] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                                start_new_session=True)
        for key, proc in list(running.items()):  # first the runs that ended, then the deadline
            if proc.poll() is not None:
                runs[key].update(exit=proc.returncode, wall_s=round(time.monotonic() - runs[key]["t0"], 1))
                del running[key]
                print(f"{key[0]} seed {key[1]}: exit {proc.returncode} in {runs[key]['wall_s']} s", flush=True)
        if deadline is not None and time.monotonic() >= deadline:
            todo.clear()
            for key, proc in running.items():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                runs[key].update(exit="cut", wall_s=round(time.monotonic() - runs[key]["t0"], 1))
            running.clear()
            break
        if running:
            time.sleep(1)
    for key, run in runs.items():
        run.setdefault("exit", "not started")
    summary = summarize(variants, seeds, runs)
    summary.update(common=shlex.join(redact_argv(shlex.split(args.common))), jobs=args.jobs,
                   runs=str(root) if args.keep else None)
    print(table(summary))
    line = json.dumps(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(line)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
