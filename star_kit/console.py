"""The command line's two consoles: results on stdout, progress, warnings and errors on stderr (240 columns when
not a terminal, so logs and captured output do not wrap at 80, and the results table of a run with maj@K and answer
counts, ~190 columns, keeps its headers whole in a file)."""

from __future__ import annotations

import sys

from rich.console import Console

WIDTH = 240  # columns when not a terminal
console = Console(width=None if sys.stdout.isatty() else WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH)
