"""The default job end to end (`star-kit run`, every default), its wall time and each phase's share, for one or
more variants run one after the other in this process's machine (never two at once).

    python benchmarks/default_job.py                         # today's defaults
    python benchmarks/default_job.py --variant old="--sampler-opt engine=generate --sampler-opt batch_size=32"
        --variant new=""                                      # a before/after pair, as a ratio

Each variant is a string of extra `star-kit run` arguments. The last line printed is one JSON object: per variant
the wall seconds, the accuracy per iteration, the seconds per phase summed over the run and their shares; with two
variants, `speedup` = first wall / last wall. (With --merge-passes, the default, an evaluation's seconds include
the next iteration's sampling, whose own `sample` seconds are 0: see `sampled_ahead_in`.)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parse_variants, star_kit_run  # noqa: E402
from star_kit.config import redact_argv  # noqa: E402


def run_variant(extra: list[str], out: Path) -> dict:
    cmd = star_kit_run(out, *extra)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    phases: dict[str, float] = defaultdict(float)
    for row in rows:
        for phase, s in row["seconds"].items():
            phases[phase] += s
    total = sum(phases.values())
    return {"args": " ".join(redact_argv(extra)), "wall_s": round(wall, 1),
            "accuracy": [round(r["accuracy"], 4) for r in rows],
            # what STaR kept per iteration: sampled right and verified, rescued by rationalization (of attempts),
            # right answers the verifier rejected; verified share = kept / (kept + rejected)
            "kept": [r["kept"] for r in rows], "rationalized": [r["rationalized"] for r in rows],
            "rationalization_attempts": [r["rationalization_attempts"] for r in rows],
            "unverified": [r["unverified"] for r in rows],
            # the iteration whose evaluation pass also sampled this one (--merge-passes); None: sampled on its own
            "sampled_ahead_in": [r.get("sampled_ahead_in") for r in rows],
            "verified_share": [round((r["kept"] + r["rationalized"]) / (r["kept"] + r["rationalized"] + r["unverified"]), 3)
                               if r["kept"] + r["rationalized"] + r["unverified"] else None for r in rows],
            "phase_s": {k: round(v, 1) for k, v in phases.items()},
            "phase_share": {k: round(v / total, 3) for k, v in phases.items()},
            "outside_phases_s": round(wall - total, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS")
    p.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR (default: a temporary folder)")
    args = p.parse_args()
    variants = parse_variants(p, args.variant)
    os.environ.setdefault("TQDM_DISABLE", "1")
    results = {}
    with tempfile.TemporaryDirectory(prefix="star-kit-default-job-") as tmp:
        for name, extra in variants.items():
            results[name] = run_variant(shlex.split(extra), Path(args.keep or tmp) / name)
            print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
    report = {"variants": results}
    if len(results) > 1:
        first, last = list(results.values())[0], list(results.values())[-1]
        report["speedup"] = round(first["wall_s"] / last["wall_s"], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
