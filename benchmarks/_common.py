"""What several benchmark scripts share: the `star-kit run` command line of one run, and `--variant NAME=ARGS`."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def star_kit_run(out: Path, *args: str) -> list[str]:
    """The command of one `star-kit run` into ``out``, without a progress bar (this Python's star-kit)."""
    return [sys.executable, "-m", "star_kit", "run", "--out", str(out), "--no-progress", *args]


def redacted(args: list[str]) -> list[str]:
    """``args`` as a result or a log may keep them: the value of every ``KEY=VALUE`` whose KEY names a credential
    (``--sampler-opt api_key=...``; :func:`star_kit.config.is_secret_key`) is ``<redacted>``."""
    from star_kit.config import REDACTED, is_secret_key

    out = []
    for arg in args:
        key, sep, _ = arg.partition("=")
        out.append(f"{key}={REDACTED}" if sep and is_secret_key(key.lstrip("-")) else arg)
    return out


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
