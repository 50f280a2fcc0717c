"""The command line's two consoles: results on stdout, progress, warnings and errors on stderr (240 columns when
not a terminal, so logs and captured output do not wrap at 80, and the results table of a run with maj@K and answer
counts, ~190 columns, keeps its headers whole in a file)."""

from __future__ import annotations

import re
import sys

from rich.console import Console
from rich.text import Text

WIDTH = 240  # columns when not a terminal
console = Console(width=None if sys.stdout.isatty() else WIDTH)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else WIDTH)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL, C1: escape sequences, bells, carriage returns


def plain(value: object) -> Text:
    """Text read from a file (a run's labels, names) for a table cell: never rich markup ('[link=...]' shown as
    written) and without control characters (an escape sequence in an edited metrics.jsonl would drive the
    terminal: its title, colours, a hyperlink)."""
    return Text(_CONTROL.sub("", str(value)))
