"""The answer-label distribution of an iteration, for tasks whose answers are choices.

A task may define ``answer_label(example, answer) -> str | None``: the label of an answer to ``example`` (for
CommonsenseQA the choice letter "a".."e"; None when the answer is no choice of the example). Tasks without it
(arithmetic, GSM8K) have no distribution and their records leave the fields at None. Each iteration's record
(``metrics.jsonl``) then holds two counts, ``{label: count}`` in label order, then ``no_choice`` (an answer that
names none of the question's choices: "weasel" for tree, bush, coop, ship, warren) and ``none`` (no answer at all,
``eval.json``'s ``no_answer``; rows written before ``no_choice`` existed count both as ``none``):

* ``eval_labels``: what the evaluated model answered on the held-out split (``eval_samples.jsonl``);
* ``train_labels``: the gold answers of the kept training pairs (``train.jsonl``): what fine-tuning teaches.

A model that answers "(c)" to everything shows as ``c`` holding nearly all the eval count.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping

NONE = "none"  # the key of "no answer" (the extractor found none)
NO_CHOICE = "no_choice"  # the key of an answer that is no label of the question
_LAST = {NO_CHOICE: 1, NONE: 2}


def label_counts(task: Any, pairs: Iterable[tuple[Any, str | None]]) -> dict[str, int] | None:
    """``{label: count}`` of the answers in ``pairs`` of (example, answer), sorted by label, then ``no_choice``
    and ``none``; None when the task has no ``answer_label``."""
    label_of = getattr(task, "answer_label", None)
    if not callable(label_of):
        return None
    counts = Counter(NONE if answer is None else label_of(example, answer) or NO_CHOICE for example, answer in pairs)
    return {k: counts[k] for k in sorted(counts, key=lambda k: (_LAST.get(k, 0), k))}


def eval_label_counts(task: Any, examples: Iterable[Any], rows: Iterable[Mapping[str, Any]]) -> dict[str, int] | None:
    """The distribution of the predicted answers in evaluation rows (``eval_samples.jsonl``: ``example_id``,
    ``predicted``); rows of unknown examples are skipped."""
    by_id = {e.id: e for e in examples}
    return label_counts(task, ((by_id[r["example_id"]], r.get("predicted")) for r in rows
                               if isinstance(r, Mapping) and r.get("example_id") in by_id))


def format_counts(counts: Mapping[str, int] | None, top: int = 0, compact: bool = False) -> str:
    """'c 173 · d 14 · e 9 · b 2 · none 2' (largest first; ``top`` > 0 keeps that many and sums the rest as
    'other'); ``compact`` (table cells): 'c173 d14 e9 +4'; '' when there is none."""
    if not isinstance(counts, Mapping) or not counts:
        return ""
    items = sorted(((str(k), v) for k, v in counts.items() if isinstance(v, int) and v > 0),
                   key=lambda kv: (-kv[1], _LAST.get(kv[0], 0), kv[0]))
    rest = sum(v for _, v in items[top:]) if top and len(items) > top else 0
    if rest:
        items = items[:top]
    if compact:
        return " ".join([f"{k}{v}" for k, v in items] + ([f"+{rest}"] if rest else []))
    return " · ".join(f"{k} {v}" for k, v in items + ([("other", rest)] if rest else []))
