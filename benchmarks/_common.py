"""What several benchmark scripts share: the `star-kit run` command line of one run, and `--variant NAME=ARGS`.
(A command line a result or a log keeps goes through `star_kit.config.redact_argv`.)"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def star_kit_run(out: Path, *args: str) -> list[str]:
    """The command of one `star-kit run` into ``out``, without a progress bar (this Python's star-kit)."""
    return [sys.executable, "-m", "star_kit", "run", "--out", str(out), "--no-progress", *args]


def parse_variants(parser: argparse.ArgumentParser, values: list[str], default: str = "default") -> dict[str, str]:
    """``--variant NAME=ARGS`` values (in order) as {NAME: ARGS}; none given: {default: ""}. A variant without a
    name, or a name given twice, stops the script with a one-line usage error. ARGS are checked by shlex."""
    variants: dict[str, str] = {}
    for value in values or [f"{default}="]:
        name, _, extra = value.partition("=")
        if not name or name in variants:
            parser.error(f"--variant {value!r}: each variant needs a name of its own (NAME=ARGS)")
        try:
            shlex.split(extra)
        except ValueError as exc:
            parser.error(f"--variant {name}: {exc}")
        variants[name] = extra
    return variants
