"""Built-in logger: ``RUN/metrics.csv``, one row per iteration (0 = the few-shot baseline).

On every ``star_kit_iteration_end`` event the row of that iteration is added (or replaced, when a resumed run
records an iteration again), with every iteration ``metrics.jsonl`` records (a run killed between recording an
iteration and logging it loses no row), and the file is rewritten atomically. Columns: the fields of
:class:`star_kit.records.IterationResult`, with ``seconds`` flattened to ``seconds_sample``, ``seconds_rationalize``,
``seconds_train``, ``seconds_evaluate`` (+ any other phase); a field holding counts (``eval_labels``,
``train_labels``) is one JSON cell. Iteration 0 (the base model, nothing sampled or trained) leaves the sampling
and training columns empty, as the results table and TensorBoard do. A failure to write prints a warning and never
stops the run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

import star_kit
from star_kit.errors import one_line
from star_kit.records import PHASES, IterationResult

FILENAME = "metrics.csv"
#: every field of the record, in its order, but ``seconds`` (flattened into one column per phase)
FIELDS = [f.name for f in dataclasses.fields(IterationResult) if f.name != "seconds"]
#: counts of sampling, rationalization and training: empty at iteration 0, where none of them ran (``no_answer`` is
#: kept: at iteration 0 it counts the base model's evaluation answers that named none)
NOT_AT_BASE = ("sampled", "kept", "unverified", "rationalization_attempts", "rationalized", "train_examples", "steps")


def row_of(result: Any) -> dict[str, Any]:
    """One CSV row from an IterationResult (or its dict)."""
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    row = {key: data.get(key) for key in FIELDS}
    if row.get("iteration") == 0:  # the base model: its sample and train counts are not zeros measured
        row.update(dict.fromkeys(NOT_AT_BASE))
    for key, value in row.items():  # a count per label (eval_labels, train_labels) as one JSON cell
        if isinstance(value, dict):
            row[key] = json.dumps(value, separators=(",", ":"))
    for phase, seconds in (data.get("seconds") or {}).items():
        row[f"seconds_{phase}"] = seconds
    return row


def _iteration(row: dict[str, Any]) -> int:
    try:
        return int(row.get("iteration"))
    except (TypeError, ValueError):
        return -1


def update_csv(path: Path, *new: dict[str, Any]) -> None:
    """Add or replace rows (by iteration; a later one wins) in the CSV at ``path``; rewrite it atomically."""
    from star_kit.store import _atomic_write_bytes

    by_iteration: dict[int, dict[str, Any]] = {}
    if path.exists():
        with open(path, newline="", encoding="utf-8") as fh:
            by_iteration = {_iteration(r): r for r in csv.DictReader(fh)}
    by_iteration.update({_iteration(r): r for r in new})
    rows = [by_iteration[k] for k in sorted(by_iteration)]
    extra = sorted({k for r in rows for k in r if k and k not in FIELDS} - {f"seconds_{p}" for p in PHASES})
    columns = FIELDS + [f"seconds_{p}" for p in PHASES] + extra
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in r.items()})
    _atomic_write_bytes(path, out.getvalue().encode("utf-8"))


@star_kit.hookimpl
def star_kit_iteration_end(iteration, result, run_dir):
    try:  # every recorded iteration too: one whose event a kill cut off (recorded, not yet logged) is not lost
        from star_kit.store import read_jsonl

        recorded = Path(run_dir) / "metrics.jsonl"
        rows = read_jsonl(recorded, skip_bad=True) if recorded.is_file() else []
        update_csv(Path(run_dir) / FILENAME, *(row_of(r) for r in rows if isinstance(r.get("iteration"), int)),
                   row_of(result))
    except Exception as exc:  # a logger never stops a run
        print(f"warning: csv logger: could not update {Path(run_dir) / FILENAME}: {one_line(exc, whole=True)}",
              file=sys.stderr)
