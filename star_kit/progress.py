"""Rich progress bars: phase, done/total, rate and ETA."""

from __future__ import annotations

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


class Phases:
    """One rich ``Progress`` for a whole run; ``phase(name, total, unit)`` yields an ``advance(k)`` callback."""

    def __init__(self, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
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
            disable=not enabled,
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

        def advance(k: int = 1) -> None:
            self.progress.advance(task_id, k)
            task = self.progress.tasks[task_id]
            speed = task.speed
            self.progress.update(task_id, rate=f"{speed:.2f} {unit}/s" if speed else "")

        try:
            yield advance
        finally:
            task = self.progress.tasks[task_id]
            elapsed = task.elapsed or 0.0
            if task.completed and elapsed:
                self.progress.update(task_id, rate=f"{task.completed / elapsed:.2f} {unit}/s")
            self.progress.stop_task(task_id)
