"""star-kit's answer extraction and grading for lm-eval run on its own (``lm_eval --include_path``).

Inside star-kit, an evaluation hands lm-eval the task's YAML with star-kit's filter (``star_kit_extract``) and its
``is_correct`` as the metric, both registered in-process. The stock ``lm_eval`` command knows neither, so each
built-in task also ships ``lm_eval_standalone.yaml``: the same config (``include:``) whose filter is lm-eval's
``custom`` one calling :data:`extract_arithmetic` (etc.) and whose metric is :data:`is_correct_arithmetic` (etc.),
referenced with lm-eval's ``!function``. Both run the task's registered extractor and ``is_correct`` with the task's
default options, so lm-eval alone grades a run's ``eval_docs.jsonl`` as star-kit does::

    cd RUN/iter_02
    lm_eval --model hf --model_args pretrained=checkpoint --tasks star_kit_arithmetic_standalone \\
            --include_path "$(python -m star_kit_tasks)"
"""

from __future__ import annotations

from typing import Any, Sequence

from .evaluation import NO_ANSWER, TaskMetric


class _TaskHooks:
    """The task (default options) and its extractor, built on first use (lm-eval imports this module while it
    indexes task configs)."""

    def __init__(self, task: str) -> None:
        self.name, self._built = task, None

    def built(self):
        if self._built is None:
            from .registry import default_registry

            registry = default_registry()
            task = registry.create("tasks", self.name, _core={})
            self._built = task, registry.extractor(task.extractor)
        return self._built


class Extract:
    """lm-eval ``custom`` filter function: each response -> the task's extracted answer ('[no answer]' for none)."""

    def __init__(self, hooks: _TaskHooks) -> None:
        self.hooks = hooks

    def __call__(self, resps: Sequence[Sequence[str]], docs: Sequence[dict[str, Any]]) -> list[list[str]]:
        _, extract = self.hooks.built()
        return [[extract(r) or NO_ANSWER for r in inst] for inst in resps]


class IsCorrect:
    """lm-eval metric function: the task's ``is_correct`` of the filtered answer against the doc's gold answer
    (:class:`star_kit.evaluation.TaskMetric`); lm-eval names it ``is_correct``, as in star-kit's ``eval.json``."""

    __name__ = "is_correct"

    def __init__(self, hooks: _TaskHooks) -> None:
        self.hooks = hooks

    def __call__(self, references: Sequence[str], predictions: Sequence[str], **kwargs: Any) -> float:
        task, _ = self.hooks.built()
        return TaskMetric(task)(references, predictions)


def standalone(task: str) -> tuple[Extract, IsCorrect]:
    """The filter function and the metric of a registered task (default options) for its standalone lm-eval YAML.
    A plugin's own task gets them the way the built-ins do: in one of its modules
    ``extract_mytask, is_correct_mytask = standalone("mytask")``, then in the YAML ``filter_fn: !function
    mypackage.module.extract_mytask`` and ``metric: !function mypackage.module.is_correct_mytask``."""
    hooks = _TaskHooks(task)
    return Extract(hooks), IsCorrect(hooks)


extract_arithmetic, is_correct_arithmetic = standalone("arithmetic")
extract_commonsense_qa, is_correct_commonsense_qa = standalone("commonsense_qa")
extract_gsm8k, is_correct_gsm8k = standalone("gsm8k")
