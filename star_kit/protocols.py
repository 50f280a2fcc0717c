"""The contracts a plugin's objects satisfy (one protocol per plugin kind).

How a plugin's objects are made and called:

* **Factories.** ``register_tasks`` / ``register_samplers`` / ``register_trainers`` register a factory (a class
  or a function). star-kit calls it with the user's options as keyword arguments: ``--task-opt digits=1-3`` is
  ``factory(digits="1-3")``. A value on the command line is read by one rule: ``true``/``false`` (any case) are
  booleans, an integer or decimal number (``8``, ``2e-5``, ``.5``) is an int or a float, everything else is a
  string. Declare each option as a keyword parameter with a type annotation: an unknown option, or a value that
  does not match the annotation (``batch_size: int`` given ``x``), is refused in one line naming your plugin,
  before any model loads. ``**options`` accepts anything (then check it yourself).
  A task factory is also offered star-kit's own ``data_dir`` (``--data-dir``) and ``skip_bad_rows``
  (``--skip-bad-rows``): each is passed only when it is given and the factory declares it.
* **Checked at creation.** What a factory returns is checked against the protocol below (every attribute and
  method); one line names the plugin and what is missing. A task's ``lm_eval_config`` is checked too
  (:func:`star_kit.task.lm_eval_config_problems`).
* **Resuming elsewhere.** A run directory records the options given (a task's and a trainer's defaults too), and
  ``--resume`` refuses one given another value (credentials, commands and addresses aside). Options that only
  decide where or how fast the work runs (a batch size, a device, a process count) may be declared so:
  ``outcome_options = placement_options("batch_size", "device")`` on the factory (or any
  ``outcome_options(registry, options) -> dict``: the options as they decide what is computed, recorded in the
  run's ``outcome.json``); a resumed run may then change them. (A sampler that seeds each batch draws other
  samples at another batch size when sampling at a temperature: the same distribution, not the same draws.)
* **Errors.** Any exception raised inside a plugin's method is reported as one line naming the plugin and its
  distribution (``STAR_KIT_DEBUG=1`` shows the traceback); raise :class:`star_kit.errors.StarKitError` for a
  message shown as is.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from .records import Example, Exemplar, GenerationParams, TrainExample


def placement_options(*names: str) -> staticmethod:
    """A factory's ``outcome_options`` for options ``names`` that decide where or how fast the work runs, not what
    it computes: every other option counts when a run is resumed (:meth:`star_kit.registry.Registry.outcome`)."""

    def outcome_options(registry: Any, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k not in names}

    return staticmethod(outcome_options)


#: Progress callback: ``advance(k)`` reports k more units of work done.
Advance = Callable[[int], None]

#: An answer extractor: text -> canonical answer, or None. Never raises (a raise counts as no answer, with a
#: warning naming the extractor, once).
AnswerExtractor = Callable[[str], "str | None"]

#: A rationale verifier: (example, rationale) -> None when acceptable, else the reason. Never raises.
Verifier = Callable[[Example, str], "str | None"]


@runtime_checkable
class Task(Protocol):
    """A reasoning task: data, few-shot prompt, hint format, answer check and its lm-eval config.

    :class:`star_kit.task.FewShotTask` implements all of it; a subclass sets ``name``, ``lm_eval_yaml`` and
    ``fewshot_file`` and implements ``examples`` (or ``load_split``). Its customisation points:
    ``format_question(question, fields)`` (how a question is shown), ``hint_text(answer, fields)`` (the hint
    appended to a question, in the exemplars too), ``hint(example)`` (the hint of one example),
    ``quotes_hint(example, text)`` (a rationalized completion that repeats the hint is not trained on),
    ``rationale_of`` / ``target`` / ``answer_phrase`` (the answer format) and ``is_correct`` (the one notion of
    "right": filtering, the verifier gate and the lm-eval evaluation all use it).

    Optional methods (not part of the protocol: a task without them is complete; star-kit looks them up with
    ``getattr`` and skips what is missing):

    * ``answer_label(example, answer) -> str | None``: the label of an answer (a choice letter), for the
      answer-label counts of each iteration (:mod:`star_kit.labels`) and maj@K's vote: answers with the same label
      are one answer, and one without a label (None: it names no choice) abstains
      (:class:`star_kit.evaluation.VoteKey`). A label must therefore say which answer it is, not only its kind.
    * ``augment(example, rationale) -> list[tuple[Example, str]]``: extra training copies of one kept pair
      (right answer, verifier passed, hint not quoted), each an (example', rationale') trained as
      ``prompt(example', hint=False)`` + ``target(rationale', example'.answer)`` beside the original pair, with the
      original's ``example_id`` and ``source`` (:func:`star_kit.loop.training_pairs`). Return ``[]`` for none;
      anything but a list of (Example, str) pairs stops the run with one line naming the task. Keep it
      deterministic (seed it from the example's id). CommonsenseQA's ``train_permutations`` uses it to add
      choice-permuted copies.
    """

    name: str
    extractor: str  # name of the registered answer extractor
    verifier: str | None  # name of the registered rationale verifier, or None
    # generation stops at the first of these; sampling and the evaluation decode alike, so both must equal the lm-eval
    # config's generation_kwargs ``until`` and ``max_gen_toks`` (lm-eval's "\n\n" and 256 where it has none; checked
    # when the task is created)
    stop: tuple[str, ...]
    max_new_tokens: int
    #: the lm-eval task config (the YAML under tasks/); it must hold ``task``, ``dataset_path: json``,
    #: ``test_split``, ``output_type: generate_until``, ``doc_to_text: "{{prompt}}"``,
    #: ``doc_to_target: "{{answer}}"`` and a ``filter_list`` with a ``star_kit_extract`` step naming the
    #: extractor (see tasks/arithmetic/arithmetic.yaml); star-kit fills in ``data_files``, and scores with the
    #: task's ``is_correct`` in place of the config's ``metric_list`` (which serves running the YAML with lm-eval).
    lm_eval_config: dict

    def examples(self, split: str, n: int | None, seed: int) -> list[Example]:
        """Problems of ``split`` ("train" or "eval"); the first ``n`` after a seeded shuffle (all if None). The two
        splits never share a problem, whatever the seeds (a run draws "eval" with ``--eval-seed``)."""

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
        """Whether an extracted answer (None: no answer) matches the gold answer. The only notion of "right":
        it filters the sampled rationales and scores the lm-eval evaluation."""


@runtime_checkable
class Sampler(Protocol):
    """A model backend. It owns one loaded model at a time.

    The factory is ``factory(model, **options)`` and loads ``model`` (a local folder, or a hub id) before it
    returns; ``model`` (the attribute) is the name of what is loaded now.
    """

    model: str

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        """``params.n`` completions per prompt, in prompt order, each cut before the first stop string
        (``params.stop``; the stop string itself is not included). Call ``advance(k)`` as prompts finish."""

    def load(self, model: str) -> None:
        """Replace the loaded model; called with each new checkpoint (a local folder) before it is sampled."""

    def close(self) -> None:
        """Release the model and any server or device memory."""


@runtime_checkable
class Trainer(Protocol):
    """Fine-tunes a base model on prompt/completion pairs.

    What ``train`` gets: ``base_model`` is a local Hugging Face model folder: the base model M0, the same in every
    iteration (STaR restarts from M0, never from the previous checkpoint). ``examples`` are the SFT pairs;
    ``prompt`` never holds a hint and ``completion`` already ends with the task's stop string (train the loss on
    the completion only). ``steps`` is the number of optimizer steps. ``output_dir`` does not exist yet: save the
    fine-tuned model there as a folder that ``from_pretrained`` (and the sampler's ``load``) can read, the
    tokenizer included. star-kit moves the folder into ``iter_NN/checkpoint`` when ``train`` returns; call
    ``advance(k)`` as steps finish.

    What it must leave: the saved folder at ``output_dir``, and nothing else that star-kit relies on; return
    ``output_dir``. Raise on failure (the iteration is retrained on ``--resume``).
    """

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


def missing_members(obj: Any, protocol: type) -> list[str]:
    """The attributes and methods of ``protocol`` that ``obj`` lacks (a method must be callable): [] when it
    satisfies it."""
    members = [n for n in getattr(protocol, "__protocol_attrs__", ()) if not n.startswith("_")]
    if not members:  # Python < 3.12
        members = [n for n in dir(protocol) if not n.startswith("_")] + list(protocol.__annotations__)
    missing = []
    for name in sorted(set(members)):
        declared = inspect.getattr_static(protocol, name, None)
        if not hasattr(obj, name):
            missing.append(f"method {name}()" if callable(declared) else f"attribute {name!r}")
        elif callable(declared) and not callable(getattr(obj, name)):
            missing.append(f"method {name}() (it is not callable)")
    return missing
