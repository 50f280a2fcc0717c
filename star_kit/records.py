"""Typed records that flow through the STaR loop (all JSON-serialisable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any, Callable, Sequence, get_args, get_origin, get_type_hints

from . import arith
from .typecheck import type_name, type_ok, union_members


@dataclass(frozen=True)
class Example:
    """One problem without a rationale.

    ``id`` is stable across runs (it keys samples, resume and the report); ``question`` is the text the task
    puts into its prompt; ``answer`` is the gold answer in the extractor's canonical form; ``fields`` holds
    task-specific data (e.g. multiple-choice options).
    """

    id: str
    question: str
    answer: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Exemplar:
    """A few-shot exemplar: a question with a hand-written rationale and its answer."""

    question: str
    rationale: str
    answer: str


@dataclass(frozen=True)
class GenerationParams:
    """How a sampler should generate. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class Sample:
    """One completion for one example, with what was extracted from it.

    ``predicted`` is None when the extractor found no answer ("no answer" is counted, never raised).
    ``hinted`` is True for rationalization samples (the prompt carried the gold answer as a hint).
    ``verified`` is the rationale verifier's verdict on a correct sample (None: not checked), ``rejected`` its
    reason when False.
    """

    example_id: str
    question: str
    completion: str
    predicted: str | None
    gold: str
    correct: bool
    hinted: bool = False
    verified: bool | None = None
    rejected: str | None = None

    @property
    def accepted(self) -> bool:
        """Kept for training: the answer is right and the verifier (if any) accepts the rationale."""
        return self.correct and self.verified is not False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrainExample:
    """One supervised fine-tuning pair. ``prompt`` never contains a rationalization hint."""

    example_id: str
    prompt: str
    completion: str
    source: str  # "sampled" or "rationalized"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: how an evaluation prompted the model, as ``eval.json``'s ``prompt`` and ``metrics.jsonl``'s ``eval_prompt``
#: record it: the task's exemplars then the question, or the question alone
PROMPT_NAMES = ("fewshot", "question")


#: the timed phases of an iteration, in loop order (``IterationResult.seconds``' keys; a plugin may add others)
PHASES = ("sample", "rationalize", "train", "evaluate")


@dataclass
class IterationResult:
    """What one STaR iteration produced; one line of ``metrics.jsonl``."""

    iteration: int
    accuracy: float | None
    accuracy_stderr: float | None = None
    eval_examples: int = 0
    sampled: int = 0
    kept: int = 0
    no_answer: int = 0
    unverified: int = 0  # right answers whose rationale the verifier rejected (sampled and rationalized)
    rationalization_attempts: int = 0
    rationalized: int = 0
    train_examples: int = 0
    steps: int = 0
    checkpoint: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    # maj@K (``--eval-samples K``): K sampled rationales per held-out question, majority vote; None when off
    maj_k: int | None = None
    maj_accuracy: float | None = None
    maj_accuracy_stderr: float | None = None
    # answer labels (tasks with choices, :mod:`star_kit.labels`): {label: count} of the held-out predictions and of
    # the kept training pairs' answers ("no_choice": an answer naming no choice, "none": no answer); None for tasks
    # without ``answer_label``
    eval_labels: dict[str, int] | None = None
    train_labels: dict[str, int] | None = None
    # the iteration whose evaluation pass also generated this iteration's samples (``--merge-passes``): their
    # seconds are in that iteration's ``evaluate``, and ``seconds["sample"]`` is 0 here; None: sampled here
    sampled_ahead_in: int | None = None
    # how M(n) was prompted in its evaluation (``eval.json``'s ``prompt``): "fewshot" (always M0; M(n) with
    # ``--eval-prompt fewshot`` or ``--train-fewshot``, and an M(n) that trained nothing) or "question" (the question
    # alone, as M(n) was fine-tuned);
    # None in a metrics.jsonl written before the field
    eval_prompt: str | None = None
    # held-out questions M(n) gave no answer to (``eval.json``'s ``no_answer``); ``no_answer`` above counts the
    # sampling's (at iteration 0, where nothing is sampled, it is this count too); None in rows written before
    eval_no_answer: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any], warn: Callable[[str], None] | None = None,
                 **defaults: Any) -> "IterationResult":
        """A ``metrics.jsonl`` row as a record: keys it does not know are dropped (a newer release's), and
        ``defaults`` fill the keys the row lacks or holds as null (an older release's: ``eval_prompt``). A value
        of the wrong type (an edited or crafted file: ``"kept": "many"``, a phase's seconds ``"fast"``) is left
        out, as if the row lacked it, and named to ``warn``: the tables and charts get the types they format."""
        hints = _result_hints()
        known: dict[str, Any] = {}
        for key, value in row.items():
            if key not in hints:
                continue
            typed = _as_type(value, hints[key])
            if typed is _WRONG or (key == "iteration" and typed is None):
                if warn is not None:
                    warn(f"iteration {row.get('iteration')!r}: {key} holds {arith.short(repr(value), 40)}, not "
                         f"{type_name(hints[key])}; left out")
                continue
            known[key] = typed
        data = {**defaults, **{k: v for k, v in known.items() if v is not None or k not in defaults}}
        data.setdefault("accuracy", None)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WRONG = object()


@cache
def _result_hints() -> dict[str, Any]:
    return get_type_hints(IterationResult)


def _as_type(value: Any, hint: Any) -> Any:
    """``value`` when it fits ``hint`` (:func:`star_kit.typecheck.type_ok`), else ``_WRONG``; a dict field (a
    phase's seconds, a label's count) keeps its well-typed entries and drops the others, so one bad entry does not
    cost the rest."""
    if isinstance(value, dict):
        for option in union_members(hint):
            if get_origin(option) is dict:
                key_type, value_type = get_args(option) or (Any, Any)
                return {k: v for k, v in value.items() if type_ok(k, key_type) and type_ok(v, value_type)}
    return value if type_ok(value, hint) else _WRONG


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string (``GenerationParams.stop``; empty ones ignored)."""
    end = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                end = min(end, i)
    return text[:end]
