"""Worst-case time of every registered answer extractor and rationale verifier on hostile model output.

    .venv/bin/python benchmarks/redos.py [--size 100000] [--timeout 20] [--plugin MODULE[:OBJ] ...] [--quick]

Each extractor and verifier the registry knows (``load_registry()``: the built-ins plus anything installed or
named with ``--plugin``), plus the calculation-chain finder ``arith.chains``, is called on each family of
adversarial text (``families()``: looping "1 = ", "24 = ", spaces after "answer:", "1 " repeated, digits,
nested parentheses, mixed Unicode, ...), ``--size`` characters each. Every case runs in a worker process, so a
case that backtracks for minutes is killed after ``--timeout`` seconds and shown as ``>20 s``. A case that
finishes in under a second is repeated 3 times and the fastest is shown. Prints a table (milliseconds) and, as
its last line, one JSON object (``slowest_ms`` is null when some case timed out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import subprocess
import sys
import time

FAMILIES = (
    "1 = ", "24 = ", "answer: spaces", "answer is spaces", "1 ", "digits", "parens", "unicode", "1+1=2",
    "9^9", "1e9", "1,000", "1,", "-1.", "answers", "long left", "long right", "12 + 34 steps", "answer is 1!",
    "answer is 1 1!",
)


def _fill(unit: str, size: int, prefix: str = "", suffix: str = "") -> str:
    n = max(1, (size - len(prefix) - len(suffix)) // max(1, len(unit)))
    return prefix + unit * n + suffix


def families(size: int = 100_000) -> dict[str, str]:
    """Adversarial texts of about ``size`` characters, by family name (deterministic)."""
    rng = random.Random(0)
    alphabet = ("0123456789 =+-*/x()$.,:^e\n\u2212\u00d7\u00f7\uff10\uff11\uff17\uff12\u0661\u0662\u0967"
                "\u00b2\u00e9\u4e2d\U0001f600\u0301ab")
    half = size // 2
    return {
        "1 = ": _fill("1 = ", size),
        "24 = ": _fill("24 = ", size, "She sold 48 / 2 = 24 = ", "The answer is 72."),
        "answer: spaces": "answer:" + " " * (size - 8) + "x",
        "answer is spaces": "The answer is" + " " * (size - 14) + "x",
        "1 ": _fill("1 ", size),
        "digits": "7" * size,
        "parens": "(" * half + "1 = 1" + ")" * half,
        "unicode": "".join(rng.choice(alphabet) for _ in range(size)),
        "1+1=2": _fill("1+1=2 ", size),
        "9^9": _fill("9^", size, "The answer is ", "9"),
        "1e9": _fill("1e9", size, "The answer is "),
        "1,000": _fill("1,000", size, "The answer is "),
        "1,": _fill("1,", size),
        "-1.": _fill("-1.", size),
        "answers": _fill("The answer is (", size),
        "long left": _fill("1 + ", size, "", "1 = 2"),
        "long right": _fill("1 + ", size, "2 + 2 = ", "1"),
        "12 + 34 steps": _fill("46 = ", size, "12 + 34 = "),
        # digits (or digits and spaces) that a pattern like (\d+\s*)+\. fails to end: nested repetition backtracks
        "answer is 1!": _fill("1", size, "The answer is ", "!"),
        "answer is 1 1!": _fill("1 ", size, "The answer is ", "!"),
    }


def _example():
    from star_kit.records import Example

    return Example("redos", "12 + 34 = ?", "46", {"a": 12, "b": 34, "digits": 2})


def _callables(plugins: list[str]) -> dict[str, object]:
    """'extractor NAME' / 'verifier NAME' / 'arith.chains' -> a one-argument function of the text."""
    from star_kit import arith
    from star_kit.registry import load_registry

    registry = load_registry(plugins)
    example = _example()
    out: dict[str, object] = {}
    for name in registry.names("extractors"):
        out[f"extractor {name}"] = registry.get("extractors", name).obj
    for name in registry.names("verifiers"):
        fn = registry.get("verifiers", name).obj
        out[f"verifier {name}"] = lambda text, fn=fn: fn(example, text)
    out["arith.chains"] = arith.chains
    return out


def _worker(size: int, plugins: list[str]) -> None:
    texts = families(size)
    fns = _callables(plugins)
    print(json.dumps(list(fns)), flush=True)
    for line in sys.stdin:
        key, family = line.rstrip("\n").split("\t")
        fn, text = fns[key], texts[family]
        error = None
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                fn(text)
            except Exception as exc:  # reported, not fatal: extractors and verifiers must never raise
                error = f"{type(exc).__name__}: {exc}"[:200]
            times.append(time.perf_counter() - t0)
            if times[-1] > 1.0:
                break
        print(json.dumps({"ms": min(times) * 1000, "error": error}), flush=True)


class _Worker:
    def __init__(self, size: int, plugins: list[str]) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--size", str(size)]
        for spec in plugins:
            cmd += ["--plugin", spec]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.names = json.loads(self.proc.stdout.readline())

    def run(self, key: str, family: str, timeout: float) -> dict | None:
        self.proc.stdin.write(f"{key}\t{family}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=100_000, help="characters per adversarial text")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds before a case is killed")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE[:OBJ]")
    p.add_argument("--quick", action="store_true", help="10,000 characters, 5 s timeout")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.size, args.timeout = 10_000, 5.0
    if args.worker:
        _worker(args.size, args.plugin)
        return

    worker = _Worker(args.size, args.plugin)
    keys = worker.names
    results: dict[str, dict[str, float | None]] = {k: {} for k in keys}
    errors: list[str] = []
    for key in keys:
        for family in FAMILIES:
            got = worker.run(key, family, args.timeout)
            if got is None:
                worker.stop()
                worker = _Worker(args.size, args.plugin)
                results[key][family] = None
                continue
            results[key][family] = round(got["ms"], 2)
            if got["error"]:
                errors.append(f"{key} on {family!r}: {got['error']}")
    worker.stop()

    cell = lambda v: f">{args.timeout:g} s" if v is None else f"{v:.1f}"  # noqa: E731
    width = max(len(k) for k in keys)
    print(f"ms per call, {args.size:,} characters of adversarial text (timeout {args.timeout:g} s)")
    header = f"{'':{width}}  " + "  ".join(f"{f:>{max(9, len(f))}}" for f in FAMILIES)
    print(header)
    for key in keys:
        print(f"{key:{width}}  " + "  ".join(f"{cell(results[key][f]):>{max(9, len(f))}}" for f in FAMILIES))
    for err in errors:
        print(f"raised: {err}")
    values = [v for row in results.values() for v in row.values()]
    slowest = None if None in values else max(values)
    worst = max(((k, f) for k in keys for f in FAMILIES),
                key=lambda kf: float("inf") if results[kf[0]][kf[1]] is None else results[kf[0]][kf[1]])
    print(f"slowest: {worst[0]} on {worst[1]!r}: {cell(results[worst[0]][worst[1]])}"
          + ("" if results[worst[0]][worst[1]] is None else " ms"))
    print(json.dumps({"size": args.size, "timeout_s": args.timeout, "slowest_ms": slowest,
                      "slowest_case": list(worst), "raised": errors, "ms": results}))


if __name__ == "__main__":
    main()
