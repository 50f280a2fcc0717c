"""The contracts a plugin's objects satisfy (one protocol per plugin kind)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

from .records import Example, Exemplar, GenerationParams, TrainExample

#: Progress callback: ``advance(k)`` reports k more units of work done.
Advance = Callable[[int], None]

#: An answer extractor: text -> canonical answer, or None. Never raises.
AnswerExtractor = Callable[[str], "str | None"]

#: A rationale verifier: (example, rationale) -> None when acceptable, else the reason. Never raises.
Verifier = Callable[[Example, str], "str | None"]


@runtime_checkable
class Task(Protocol):
    """A reasoning task: data, few-shot prompt, hint format, answer check and its lm-eval config."""

    name: str
    extractor: str  # name of the registered answer extractor
    verifier: str | None  # name of the registered rationale verifier, or None
    stop: tuple[str, ...]  # generation stops at the first of these
    max_new_tokens: int
    lm_eval_config: dict  # the lm-eval task config (from the YAML under tasks/)

    def examples(self, split: str, n: int | None, seed: int) -> list[Example]:
        """Problems of ``split`` ("train" or "eval"); the first ``n`` after a seeded shuffle (all if None)."""

    def fewshot(self) -> list[Exemplar]:
        """The few-shot exemplars with hand-written rationales."""

    def hint(self, example: Example) -> str:
        """The rationalization hint for ``example`` (it reveals the gold answer)."""

    def prompt(self, example: Example, hint: bool = False, fewshot: bool = True) -> str:
        """The prompt for ``example``: with ``hint=True`` it carries :meth:`hint` (rationalization); with
        ``fewshot=False`` it is the question alone, without the exemplars (the fine-tuning format)."""

    def quotes_hint(self, example: Example, text: str) -> bool:
        """Whether a rationalized completion repeats the hint (then it is not trained on)."""

    def rationale_of(self, completion: str) -> str:
        """The rationale part of a completion (the text before the final answer phrase)."""

    def target(self, rationale: str, answer: str) -> str:
        """The training completion for a rationale and an answer, ending with the task's stop sequence."""

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        """Whether an extracted answer matches the gold answer."""


@runtime_checkable
class Sampler(Protocol):
    """A model backend. It owns one loaded model at a time."""

    model: str

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        """``params.n`` completions per prompt, in prompt order, each cut before the first stop string."""

    def load(self, model: str) -> None:
        """Replace the loaded model (called with each new checkpoint)."""

    def close(self) -> None:
        """Release the model and any server or device memory."""


@runtime_checkable
class Trainer(Protocol):
    """Fine-tunes a base model on prompt/completion pairs."""

    def train(
        self,
        base_model: str,
        examples: Sequence[TrainExample],
        steps: int,
        output_dir: Path,
        seed: int = 0,
        advance: Advance | None = None,
    ) -> Path:
        """Train ``base_model`` for ``steps`` optimizer steps; save a loadable model folder in ``output_dir``."""
