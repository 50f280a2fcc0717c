"""The command line's two consoles: results on stdout, progress, warnings and errors on stderr (160 columns when
not a terminal, so logs and captured output do not wrap at 80)."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
