"""The STaR paper's comparison on one task and model: does STaR beat its baselines here?

Five conditions, same training questions, same evaluation questions, same seed, same lm-eval evaluation:

    few-shot direct          the base model, exemplars that give only "The answer is X."
    few-shot rationale       the base model, exemplars with rationales (= iteration 0 of the STaR runs)
    direct fine-tune         the base model fine-tuned on the gold answers alone (no rationales), as many steps as
                             STaR's last iteration trains
    STaR                     STaR without rationalization (`star-kit run --no-rationalize`)
    STaR + rationalization   STaR as in the paper (`star-kit run`)

For arithmetic it trains on ``--train-digits`` (1-5) and evaluates on ``--eval-digits`` (1-8, balanced), so the
table shows accuracy per number of digits, including digit counts never trained on.

    python benchmarks/paper_table.py [--quick] [--task arithmetic] [--model smollm2-135m] [--out DIR]
        [--iterations 2] [--train-size 64] [--eval-size 64] [--base-steps 20] [--data-dir DIR]
        [--train-digits 1-5] [--eval-digits 1-8] [--verifier auto] [--eval-prompt trained] [--task-opt K=V]
        [--markdown FILE]

Re-running with the same --out resumes (finished runs and evaluations are read back). The table is printed,
written to OUT/paper_table.json (and --markdown FILE), and the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CONDITIONS = ["few-shot direct", "few-shot rationale", "direct fine-tune", "STaR", "STaR + rationalization"]


def accuracy(rows: list[dict]) -> float | None:
    """The share of an evaluation's rows that are correct (None for no rows)."""
    return sum(bool(r["correct"]) for r in rows) / len(rows) if rows else None


def per_group(rows: list[dict], group_of: dict[str, str]) -> dict[str, float]:
    """Accuracy per group (e.g. digit count) of an evaluation's rows."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        g = group_of.get(r["example_id"])
        if g is not None:
            groups.setdefault(g, []).append(r)
    return {g: accuracy(groups[g]) for g in sorted(groups, key=int)}


def star_run(args, out: Path, rationalize: bool, baseline: bool) -> list[dict]:
    """One STaR run through the CLI (resumed when its directory exists); its metrics.jsonl rows."""
    from star_kit.cli import main as cli
    from star_kit.store import read_jsonl

    flags = ["--task", args.task, "--model", args.model, "--iterations", str(args.iterations), "--patience", "0",
             "--train-size", str(args.train_size), "--eval-size", str(args.eval_size),
             "--base-steps", str(args.base_steps), "--seed", str(args.seed), "--verifier", args.verifier,
             "--eval-prompt", args.eval_prompt,
             *(["--no-rationalize"] if not rationalize else []), *(["--no-baseline"] if not baseline else []),
             *args.task_flags, *args.backend_flags]
    flags += ["--resume", str(out)] if (out / "config.yaml").exists() else ["--out", str(out)]
    if args.quick:
        flags.append("--no-progress")
    code = cli(["run", *flags])
    if code != 0:
        raise SystemExit(f"star-kit run for {out} exited {code}")
    return read_jsonl(out / "metrics.jsonl")


def direct_conditions(args, out: Path, eval_set, train_set, steps: int) -> dict[str, list[dict]]:
    """Few-shot direct and direct fine-tuning: the task without rationales, evaluated the same way."""
    from rich.console import Console

    from star_kit.evaluation import evaluate
    from star_kit.models import resolve_model
    from star_kit.progress import Phases
    from star_kit.records import TrainExample
    from star_kit.registry import load_registry
    from star_kit.store import read_jsonl

    registry = load_registry()
    task = registry.create("tasks", args.task, data_dir=args.data_dir, rationales=False, **args.task_options)
    base = resolve_model(args.model)
    results: dict[str, list[dict]] = {}
    todo = {"few-shot direct": out / "fewshot_direct", "direct fine-tune": out / "direct_finetune"}
    # the fine-tuned model is prompted as the STaR runs prompt theirs (--eval-prompt)
    fewshot = {name: name != "direct fine-tune" or args.eval_prompt == "fewshot" for name in todo}

    def finished(name: str) -> bool:
        """Its evaluation is on disk and was prompted as asked (an eval.json without ``prompt``: few-shot)."""
        d = todo[name]
        if not (d / "eval_samples.jsonl").exists() or not (d / "eval.json").exists():
            return False
        return json.loads((d / "eval.json").read_text()).get("prompt", "fewshot") == \
            ("fewshot" if fewshot[name] else "question")

    if all(finished(name) for name in todo):
        return {name: read_jsonl(d / "eval_samples.jsonl") for name, d in todo.items()}
    sampler = registry.create("samplers", args.sampler, base, **args.sampler_options)
    try:
        with Phases(Console(stderr=True), enabled=not args.quick) as phases:
            for name, d in todo.items():
                d.mkdir(parents=True, exist_ok=True)
                if finished(name):
                    results[name] = read_jsonl(d / "eval_samples.jsonl")
                    continue
                if name == "direct fine-tune":
                    ckpt = d / "checkpoint"
                    if not (ckpt / "config.json").exists():
                        pairs = [TrainExample(e.id, task.prompt(e, fewshot=False), task.target("", e.answer), "gold")
                                 for e in train_set]
                        trainer = registry.create("trainers", args.trainer, **args.trainer_options)
                        t0 = time.perf_counter()
                        with phases.phase("direct fine-tune · train", steps, "step") as advance:
                            trainer.train(base, pairs, steps, d / "checkpoint.partial", seed=args.seed,
                                          advance=advance)
                        os.replace(d / "checkpoint.partial", ckpt)
                        (d / "train_seconds.json").write_text(json.dumps(round(time.perf_counter() - t0, 1)))
                    sampler.load(str(ckpt))
                with phases.phase(f"{name} · evaluate", len(eval_set), "q") as advance:
                    results[name] = evaluate(task, sampler, eval_set, d, registry, advance,
                                             fewshot=fewshot[name]).samples
    finally:
        sampler.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for CI (figures not meaningful)")
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", default="runs/paper-table")
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--eval-size", type=int, default=64)
    parser.add_argument("--base-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verifier", default="auto", help="rationale verifier for the STaR runs (auto, none, name)")
    parser.add_argument("--eval-prompt", default="trained", choices=("trained", "fewshot"),
                        help="how the fine-tuned models are prompted when evaluated (star-kit run --eval-prompt)")
    parser.add_argument("--train-digits", default="1-5", help="arithmetic: digit counts trained on")
    parser.add_argument("--eval-digits", default="1-8", help="arithmetic: digit counts evaluated (balanced)")
    parser.add_argument("--data-dir", default=os.environ.get("STAR_KIT_DATA_DIR"))
    parser.add_argument("--sampler", default="hf")
    parser.add_argument("--trainer", default="trl-sft")
    parser.add_argument("--sampler-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--trainer-opt", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--task-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="more task options, e.g. hint_style=groups")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.train_size, args.eval_size, args.base_steps = 1, 4, 4, 1
        args.train_digits, args.eval_digits = "1-2", "1-4"

    from rich.console import Console
    from rich.table import Table

    from star_kit.cli_common import key_value, quiet_libraries
    from star_kit.config import RunConfig, steps_for
    from star_kit.registry import load_registry

    quiet_libraries()
    arithmetic = args.task == "arithmetic"
    args.task_options = {"digits": args.train_digits, "eval_digits": args.eval_digits} if arithmetic else {}
    args.task_options.update(dict(key_value(o) for o in args.task_opt))
    args.sampler_options = dict(key_value(o) for o in args.sampler_opt)
    args.trainer_options = dict(key_value(o) for o in args.trainer_opt)
    args.task_flags = [f for k, v in args.task_options.items() for f in ("--task-opt", f"{k}={v}")]
    if args.data_dir:
        args.task_flags += ["--data-dir", args.data_dir]
    args.backend_flags = ["--sampler", args.sampler, "--trainer", args.trainer,
                          *(f for o in args.sampler_opt for f in ("--sampler-opt", o)),
                          *(f for o in args.trainer_opt for f in ("--trainer-opt", o))]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    task = load_registry().create("tasks", args.task, data_dir=args.data_dir, **args.task_options)
    eval_set = task.examples("eval", args.eval_size, args.seed)
    train_set = task.examples("train", args.train_size, args.seed)
    group_of = {e.id: str(e.fields["digits"]) for e in eval_set} if arithmetic else {}
    trained = {str(d) for d in task.digits} if arithmetic else set()
    steps = steps_for(args.iterations, RunConfig(base_steps=args.base_steps))

    # STaR with rationalization first: its iteration 0 is the few-shot rationale baseline for both runs.
    with_rat = star_run(args, out / "star_rationalize", rationalize=True, baseline=True)
    without = star_run(args, out / "star", rationalize=False, baseline=False)
    direct = direct_conditions(args, out, eval_set, train_set, steps)

    def eval_rows(run_dir: Path, it: int) -> list[dict]:
        from star_kit.store import read_jsonl

        return read_jsonl(run_dir / f"iter_{it:02d}" / "eval_samples.jsonl")

    last = args.iterations
    rows_of = {
        "few-shot direct": direct["few-shot direct"],
        "few-shot rationale": eval_rows(out / "star_rationalize", 0),
        "direct fine-tune": direct["direct fine-tune"],
        "STaR": eval_rows(out / "star", last),
        "STaR + rationalization": eval_rows(out / "star_rationalize", last),
    }
    curves = {"STaR": [with_rat[0]["accuracy"], *[r["accuracy"] for r in without if r["iteration"] > 0]],
              "STaR + rationalization": [r["accuracy"] for r in with_rat]}
    table_rows = []
    for name in CONDITIONS:
        rows = rows_of[name]
        entry = {"condition": name, "accuracy": round(accuracy(rows), 4), "n": len(rows)}
        if arithmetic:
            entry["per_digits"] = {g: round(a, 4) for g, a in per_group(rows, group_of).items()}
            for key, trained_on in (("trained_digits", True), ("unseen_digits", False)):
                part = accuracy([r for r in rows if (group_of.get(r["example_id"]) in trained) == trained_on])
                entry[key] = None if part is None else round(part, 4)
        if name in curves:
            entry["per_iteration"] = [round(a, 4) for a in curves[name]]
        table_rows.append(entry)
    star_stats = {name: [{k: r.get(k) for k in ("iteration", "kept", "sampled", "rationalized",
                                                "rationalization_attempts", "unverified", "train_examples", "steps")}
                         for r in rows if r["iteration"] > 0]
                  for name, rows in (("STaR", without), ("STaR + rationalization", with_rat))}

    table = Table(title=f"{args.task}, {args.model}: train {args.train_size}, eval {args.eval_size}, "
                        f"{args.iterations} iterations")
    groups = sorted({g for e in table_rows for g in e.get("per_digits", {})}, key=int)
    table.add_column("condition")
    for g in groups:
        table.add_column(f"{g}d{'' if g in trained else '*'}", justify="right")
    table.add_column("all", justify="right")
    table.add_column("per iteration", justify="left")
    pct = lambda a: "" if a is None else f"{100 * a:.0f}"  # noqa: E731

    def cells(e: dict) -> list[str]:
        """One condition's row of the table (terminal and Markdown alike)."""
        return [e["condition"], *(pct(e.get("per_digits", {}).get(g)) for g in groups), pct(e["accuracy"]),
                " → ".join(pct(a) for a in e.get("per_iteration", []))]

    for e in table_rows:
        table.add_row(*cells(e))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if groups:
        console.print("* digit counts never trained on", highlight=False)

    summary = {"task": args.task, "model": args.model, "iterations": args.iterations, "train_size": args.train_size,
               "eval_size": args.eval_size, "base_steps": args.base_steps, "direct_finetune_steps": steps,
               "seed": args.seed, "verifier": args.verifier, "eval_prompt": args.eval_prompt,
               "conditions": table_rows, "star": star_stats,
               "total_s": round(time.perf_counter() - t_start, 1)}
    (out / "paper_table.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.markdown:
        head = ["condition", *[f"{g} digits{'' if g in trained else ' *'}" for g in groups], "all", "per iteration"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(cells(e)) + " |" for e in table_rows]
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
