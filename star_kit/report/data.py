"""Reading a run directory into what the report shows: one JSON-serialisable dict, and typed metrics for the charts.

Everything comes from ``metrics.jsonl``, ``config.yaml``, ``iter_NN/samples.jsonl``, ``iter_NN/rationalized.jsonl``
and ``iter_NN/eval_samples.jsonl`` (+ ``eval_docs.jsonl`` for the held-out questions), read through
:class:`star_kit.store.RunStore` and :class:`star_kit.records.Sample`. A run may be old, unfinished or edited by
hand: torn lines, rows that are not objects, missing keys and NaN are tolerated, and whatever a sample's text fields
hold is shown as text.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from ..errors import StarKitError, shown_value
from ..records import PHASES, PROMPT_NAMES, IterationResult, Sample
from ..store import RunStore, read_json, read_jsonl

_SAMPLE_FIELDS = {f.name: f for f in dataclasses.fields(Sample)}


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as one JSON-serialisable dict: ``run`` (the folder's name), ``path``,
    ``config`` (redacted), ``metrics`` (the rows of ``metrics.jsonl``), ``phases`` (timed phases, in loop order),
    ``questions`` (``{set: {id: [question, gold]}}``) and ``samples`` (``{set: {iteration: [{"id", "s": status,
    "a": [attempt, ...]}]}}``, each attempt as :func:`attempt` writes it), for the sets ``train`` and ``eval``."""
    from ..config import load_config_file, redact

    root = Path(run_dir)
    if not root.is_dir():
        raise StarKitError(f"report: {root} is not a directory", 2)
    store = RunStore(root)
    if not store.metrics_path.is_file():  # first: a folder that is no run is said so (and not walked)
        raise StarKitError(f"report: {root} has no metrics.jsonl (not a star-kit run directory, or no iteration "
                           f"has finished yet)", 2)
    store.check_entries("report")
    def warn(message: str) -> None:
        print(f"warning: {store.metrics_path}: {message}", file=sys.stderr)

    # each row as the record reads it: a value of the wrong type (an edited file) left out, with a warning; a row
    # without an integer iteration is left out whole, with one
    rows = []
    for r in _rows(store.metrics_path):
        if isinstance(r.get("iteration"), int) and not isinstance(r.get("iteration"), bool):
            rows.append(r)
        else:
            warn(f"a row whose iteration is {shown_value(r.get('iteration'))}, not an integer, is left out")
    metrics = sorted((IterationResult.from_row(r, warn).to_dict() for r in rows), key=lambda r: r["iteration"])
    recorded = {r["iteration"] for r in metrics}
    for r in metrics:  # a row written before ``eval_prompt`` was recorded: eval.json's ``prompt``, when it has one
        if r.get("eval_prompt") is None:
            r["eval_prompt"] = _eval_prompt(store.iter_dir(r["iteration"]) / "eval.json")
    config: dict[str, Any] = {}
    if store.config_path.is_file():
        try:
            config = redact(load_config_file(store.config_path))  # a run made before redaction may hold secrets
        except StarKitError:
            config = {}
    if "out" in config:  # where the run is now: a folder that was moved or copied records where it was made
        config["out"] = str(root)

    iterations = store.iterations()
    questions: dict[str, dict[str, list[str]]] = {"train": {}, "eval": {}}
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {"train": {}, "eval": {}}
    for n in iterations:
        d = store.iter_dir(n)
        # Training samples: the hint-free attempt(s) and the hinted rationalization attempt(s).
        by_id: dict[str, list[list[Any]]] = {}
        for name in ("samples.jsonl", "rationalized.jsonl"):
            for s in map(sample, _rows(d / name)):
                by_id.setdefault(s.example_id, []).append(attempt(s))
                questions["train"].setdefault(s.example_id, [s.question, s.gold])
        if by_id:
            samples["train"][str(n)] = [{"id": qid, "s": status(a), "a": a} for qid, a in by_id.items()]
        # Held-out evaluation: what M(n) answered (iteration 0 = the few-shot base model), never with a hint.
        docs = {_text(doc.get("id")): doc for doc in _rows(d / "eval_docs.jsonl")}
        rows = []
        for s in map(sample, _rows(d / "eval_samples.jsonl")):
            s.hinted = False
            questions["eval"].setdefault(s.example_id, [eval_question(docs.get(s.example_id, {})), s.gold])
            attempts = [attempt(s)]
            rows.append({"id": s.example_id, "s": status(attempts), "a": attempts})
        if rows:
            samples["eval"][str(n)] = rows
    return _finite({
        "run": root.resolve().name,
        "path": str(root),
        "config": config,
        "metrics": metrics,
        "phases": _phases(metrics),
        "questions": questions,
        "samples": samples,
        # iterations begun and not recorded (a run stopped mid-way): their finished steps' files
        "unfinished": {str(n): store.finished_steps(n) for n in sorted(set(iterations) - recorded)},
    })


def results(data: dict[str, Any]) -> list[IterationResult]:
    """The metrics rows of :func:`load_run` as records (unknown keys dropped, missing ones at their defaults)."""
    return [IterationResult.from_row(row, accuracy=None) for row in data["metrics"]]


def prompt_cell(iteration: int, eval_prompt: str | None) -> str:
    """How M(n) was prompted in its evaluation, for the results tables: "few-shot" or "question" (M0 is always
    few-shot; "" for M(n) in a metrics.jsonl written before ``eval_prompt`` was recorded)."""
    if eval_prompt == "question":
        return "question"
    return "few-shot" if eval_prompt == "fewshot" or iteration == 0 else ""


def sampled_ahead_cell(sampled_ahead_in: Any) -> str | None:
    """The results tables' sampling-seconds cell of an iteration sampled in the previous iteration's evaluation
    pass (``--merge-passes``: its seconds are that evaluation's): "in eval N"; None for one sampled on its own."""
    return f"in eval {sampled_ahead_in}" if isinstance(sampled_ahead_in, int) else None


def summary(data: dict[str, Any], unfinished: bool = True) -> str:
    """One line: task, model, iterations recorded, the few-shot baseline and the best accuracy; ``unfinished``:
    and the iterations begun but not recorded, with their finished steps."""
    config, metrics = data["config"], results(data)
    accs = [(r.iteration, r.accuracy) for r in metrics if isinstance(r.accuracy, (int, float))]
    parts = [f"task {config.get('task', '?')}", f"model {config.get('model', '?')}",
             f"{len([r for r in metrics if r.iteration > 0])} STaR iteration(s) recorded"]
    if accs:
        base = next((a for n, a in accs if n == 0), None)
        best_n, best = max(accs, key=lambda t: (t[1], -t[0]))
        if base is not None:
            parts.append(f"few-shot baseline {pct(base)}")
        parts.append(f"best {pct(best)} at iteration {best_n}")
    for n, steps in (data.get("unfinished") or {}).items() if unfinished else ():
        parts.append(f"iteration {n} unfinished (" + (f"has {', '.join(steps)}" if steps else "no step finished")
                     + "; star-kit run --resume goes on)")
    return " · ".join(parts)


def maj_label(metrics: list[dict[str, Any]]) -> str:
    """``maj@K`` when the run recorded maj@K (``--eval-samples K``; ``maj@K`` when K varied), else ''."""
    ks = sorted({r["maj_k"] for r in metrics if isinstance(r.get("maj_k"), int) and r["maj_k"] > 1})
    return "" if not ks else f"maj@{ks[0]}" if len(ks) == 1 else "maj@K"


def pct(value: Any) -> str:
    return "n/a" if not isinstance(value, (int, float)) else f"{100 * value:.1f}%"


def sample(row: dict[str, Any]) -> Sample:
    """A row of ``samples.jsonl``, ``rationalized.jsonl`` or ``eval_samples.jsonl`` as a :class:`Sample`: missing
    fields at their defaults (an evaluation row has no ``question`` nor ``hinted``), text fields as text."""
    values = {}
    for name, f in _SAMPLE_FIELDS.items():
        value = row.get(name, None if f.default is dataclasses.MISSING else f.default)
        if name in ("example_id", "question", "completion", "gold"):
            value = _text(value)
        elif name in ("predicted", "rejected"):
            value = None if value is None else _text(value)
        elif name in ("correct", "hinted"):
            value = bool(value)
        values[name] = value
    return Sample(**values)


def attempt(s: Sample) -> list[Any]:
    """``[completion, predicted, accepted, hinted, rejected]`` of one sample (accepted: :attr:`Sample.accepted`,
    the answer is right and the rationale verifier, if any, did not reject it; rejected: the verifier's reason, or
    None)."""
    return [s.completion, s.predicted, s.accepted, s.hinted, s.rejected if s.verified is False else None]


def status(attempts: list[list[Any]]) -> str:
    """correct: a hint-free sample was accepted; rationalized: only a hinted one was; failed: none was."""
    if any(a[2] and not a[3] for a in attempts):
        return "correct"
    if any(a[2] and a[3] for a in attempts):
        return "rationalized"
    return "failed"


def eval_question(doc: dict[str, Any]) -> str:
    """The last question of an lm-eval doc's few-shot prompt (the one being asked)."""
    prompt = _text(doc.get("prompt")).rstrip()
    last = prompt.rsplit("\n\n", 1)[-1]
    if last.endswith("A:"):
        last = last[:-2].rstrip()
    return last


def _phases(metrics: list[dict[str, Any]]) -> list[str]:
    seconds = [r.get("seconds") if isinstance(r.get("seconds"), dict) else {} for r in metrics]
    seen = [p for p in PHASES if any(p in s for s in seconds)]
    return seen + sorted({k for s in seconds for k in s} - set(PHASES))


def _eval_prompt(path: Path) -> str | None:
    """``eval.json``'s ``prompt`` ("fewshot" or "question"); None when the file, or the key, is missing or bad."""
    try:
        prompt = read_json(path).get("prompt") if path.is_file() else None
    except StarKitError:
        return None
    return prompt if prompt in PROMPT_NAMES else None


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return read_jsonl(path, skip_bad=True)  # the report shows what it can read of a damaged run


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _finite(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None (``JSON.parse`` rejects them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
