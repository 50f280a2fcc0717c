"""Rich progress bars: phase, done/total, rate and ETA. Where stderr is not a terminal (a log file, a batch
job's output) a bar cannot redraw: each phase is a plain line at its start, one every ``LOG_EVERY`` seconds while it
runs, and one at its end."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .protocols import Advance


LOG_EVERY = 30.0  # seconds between a phase's lines where stderr is not a terminal


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Phases:
    """One rich ``Progress`` for a whole run; ``phase(name, total, unit)`` yields an ``advance(k)`` callback."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        # plain lines instead of a bar that cannot redraw (a notebook redraws it, though not a terminal)
        self.lines = enabled and not self.console.is_terminal and not self.console.is_jupyter
        self.progress = Progress(
            TextColumn("[bold]{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled or self.lines,
            transient=False,
        )
        # None outside a ``with`` block (phases never start the display); False until the first phase starts it
        # (an error before any work prints no blank line); True while it runs
        self.started: bool | None = None

    def __enter__(self) -> "Phases":
        self.started = False
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.progress.stop()

    @contextmanager
    def phase(self, description: str, total: int, unit: str = "it") -> Iterator[Advance]:
        if self.started is False:
            self.progress.start()
            self.started = True
        task_id = self.progress.add_task(escape(description), total=total, rate="")  # a model path is text

        if self.lines:
            self.progress.start_task(task_id)  # a disabled Progress still keeps each task's count and clock
        said = [time.monotonic()]

        def line(end: str = "") -> None:
            task = self.progress.tasks[task_id]
            elapsed = task.elapsed or 0.0
            done = f"{task.completed:g}/{task.total:g} ({task.completed / task.total:.0%}), " if task.total else ""
            rate = f"{task.completed / elapsed:.2f} {unit}/s, " if task.completed and elapsed else ""
            eta = "" if end or not task.completed or not task.total else \
                f", eta {_clock(elapsed * (task.total - task.completed) / task.completed)}"
            when = f"{end} {_clock(elapsed)}" if end else f"elapsed {_clock(elapsed)}{eta}"
            self.console.print(f"{description}: {done}{rate}{when}", markup=False, highlight=False,
                               soft_wrap=True)

        def advance(k: int = 1) -> None:
            self.progress.advance(task_id, k)
            task = self.progress.tasks[task_id]
            speed = task.speed
            self.progress.update(task_id, rate=f"{speed:.2f} {unit}/s" if speed else "")
            if self.lines and time.monotonic() - said[0] >= LOG_EVERY:
                said[0] = time.monotonic()
                line()

        if self.lines:
            line()
        finished = False
        try:
            yield advance
            finished = True
        finally:
            task = self.progress.tasks[task_id]
            elapsed = task.elapsed or 0.0
            if task.completed and elapsed:
                self.progress.update(task_id, rate=f"{task.completed / elapsed:.2f} {unit}/s")
            if self.lines:
                line(end="done in" if finished else "stopped after")
            self.progress.stop_task(task_id)
