"""``star-kit report DIR``: one self-contained HTML page and one PNG that show a run.

``DIR/report.html`` needs nothing but a browser: style, script, charts and the run's data are inline, nothing is
fetched. It shows the four charts (held-out accuracy with stderr bars, kept / rationalized / not kept training
samples, training steps, seconds per phase), the metrics and config as tables (with the answer letters predicted on
the held-out split and kept for training per iteration, for tasks with choices), and a rationale browser: pick a set
(training samples or held-out evaluation) and an iteration, filter correct / rationalized / failed, search the
text, click a question to see what it got in every iteration side by side. ``DIR/accuracy.png`` holds the same
four charts: they are drawn once (matplotlib) and saved twice, as PNG and as the page's SVG.

The parts: :mod:`.data` reads the run, :mod:`.charts` draws, :mod:`.page` fills ``report.html`` with
``report.css`` and ``report.js`` (package files); this module writes the files and holds the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..console import console, err_console
from ..store import _atomic_write_bytes
from . import charts
from .data import load_run
from .page import render_html

__all__ = ["load_run", "write_report", "add_parser", "cmd_report", "after_run"]


def write_report(run_dir: str | Path, data: dict | None = None) -> tuple[Path, Path]:
    """Write ``RUN/report.html`` and ``RUN/accuracy.png`` (from ``data``, :func:`load_run`'s, when given); return
    their paths."""
    root = Path(run_dir)
    data = load_run(root) if data is None else data
    figure = charts.figure(data)
    html_path, png_path = root / "report.html", root / "accuracy.png"
    _atomic_write_bytes(html_path, render_html(data, charts.image(figure, "svg")).encode("utf-8"))
    _atomic_write_bytes(png_path, charts.image(figure, "png"))
    return html_path, png_path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``star-kit report`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "report", help="write DIR/report.html (charts + rationale browser) and DIR/accuracy.png for a run",
        description="Write a self-contained HTML report (charts and a rationale browser; no network) and a PNG "
                    "of the accuracy, counts, steps and timings of the star-kit run in DIR.")
    p.add_argument("run_dir", metavar="DIR", help="a star-kit run directory (holds metrics.jsonl)")
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from ..runner import results_table
    from .data import results

    data = load_run(args.run_dir)
    html_path, png_path = write_report(args.run_dir, data)
    console.print(results_table(results(data)))  # the run's table, as `star-kit run` printed it
    console.print(f"report: {html_path}\nchart:  {png_path}", highlight=False, markup=False)
    return 0


def after_run(run_dir: str | Path) -> None:
    """The report at the end of ``star-kit run``: a failure prints a warning and never fails the run."""
    from rich.markup import escape

    try:
        html_path, _ = write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; the report is a bonus
        err_console.print(f"[yellow]warning:[/] report not written: {escape(type(exc).__name__)}: "
                          f"{escape(str(exc))}", highlight=False)
        return
    console.print(f"report: {html_path}", highlight=False, markup=False)
