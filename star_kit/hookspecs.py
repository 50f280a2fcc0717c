"""Every hook a star-kit plugin can implement, in one place.

A plugin is a module (or object) exposed through the ``star_kit`` entry-point group::

    [project.entry-points.star_kit]
    my_plugin = "my_package.my_module"

and implements any of the hooks below with the ``@star_kit.hookimpl`` marker. The five ``register_*`` hooks
receive a ``register(name, obj)`` callback, so one plugin can register several things and star-kit controls
naming and duplicates (a second registration of a taken name is refused with a message naming both
distributions). The built-in plugins register through exactly the same entry-point group.

A hook implementation whose name matches no hook below (``register_task``, ``star_kit_iteration_ended``) is
reported when the plugin loads (what pluggy's ``check_pending`` finds), never silently ignored. What the
registered objects must satisfy, how options reach a factory and how errors are reported:
:mod:`star_kit.protocols`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:
    from .config import RunConfig
    from .records import IterationResult

hookspec = pluggy.HookspecMarker("star_kit")

#: The callback every ``register_*`` hook receives: ``register(name, obj)``.
Register = Callable[[str, Any], None]


@hookspec
def register_tasks(register: Register) -> None:
    """Register task factories.

    When: once, when the plugin registry is built (first use of any plugin kind).
    Arguments: ``register(name, factory)``; ``factory(**options)`` returns an object satisfying
    :class:`star_kit.protocols.Task` (subclassing :class:`star_kit.task.FewShotTask` gives all of it).
    ``options`` are the run's ``task_options`` (``--task-opt KEY=VALUE``) as keyword arguments, checked against
    the factory's parameters and their annotations; star-kit also offers ``data_dir`` (``--data-dir``) and
    ``skip_bad_rows`` (``--skip-bad-rows``), each passed only when it is given and the factory declares it (else
    the factory's own default applies).
    The task may also define the optional methods ``answer_label`` and ``augment`` (documented on
    :class:`star_kit.protocols.Task`); star-kit uses them where they exist.
    Checked at creation: the Task protocol, and the task's ``lm_eval_config`` (its required keys, the
    ``star_kit_extract`` filter naming a registered extractor, and ``generation_kwargs``' ``until`` and
    ``max_gen_toks`` equal to the task's ``stop`` and ``max_new_tokens``); a problem is one line naming the plugin.
    ``data_dir`` and ``skip_bad_rows`` are never task options of the user's.
    Return: nothing.
    """


@hookspec
def register_extractors(register: Register) -> None:
    """Register answer extractors.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, extractor)``; ``extractor(text: str) -> str | None`` returns the answer in
    canonical form, or None when the text holds no answer. It must never raise, on any string (a raise
    counts as no answer and is warned about once, naming the extractor).
    Return: nothing.
    """


@hookspec
def register_samplers(register: Register) -> None:
    """Register model backends that generate completions.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, factory)``; ``factory(model: str, **options)`` returns an object satisfying
    :class:`star_kit.protocols.Sampler` with ``model`` (a local folder or hub id) loaded. ``options`` are
    ``--sampler-opt KEY=VALUE`` as keyword arguments, checked against the factory's annotations before any
    model loads (a factory may check their values too, in its own ``check_options(registry, model, **options)``,
    given the options set, which ``--print-config`` runs as well: a value that no machine would take, such as
    ``batch_size=-4``; a factory taking ``**options`` to pass on checks them there). Options that only decide
    where or how fast it runs (a batch size, a device) may be declared with
    ``outcome_options = star_kit.protocols.placement_options("batch_size", ...)`` on the factory: a resumed run
    may change them; any other option (credentials, commands and addresses aside) is refused if it differs from
    the run's config.yaml.
    Return: nothing.
    """


@hookspec
def register_trainers(register: Register) -> None:
    """Register fine-tuning backends.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, factory)``; ``factory(**options)`` returns an object satisfying
    :class:`star_kit.protocols.Trainer` (its docstring says what ``train`` gets and must leave). ``options``
    are ``--trainer-opt KEY=VALUE`` as keyword arguments; the trainer is built before the run directory is
    written, so a bad option fails before anything is. Once an iteration has trained, a resumed run must keep
    the options, except those the factory's ``outcome_options(registry, options) -> dict`` leaves out (``trl-sft``:
    the process count, with the global batch kept; see :func:`star_kit.protocols.placement_options`).
    Return: nothing.
    """


@hookspec
def register_verifiers(register: Register) -> None:
    """Register rationale verifiers: they decide whether a rationale that reached the right answer is
    acceptable to train on (its steps hold, it did not skip the reasoning).

    When: once, when the plugin registry is built. A verifier is called by the STaR loop for every sampled or
    rationalized completion whose answer is correct, before the training set is built.
    Arguments: ``register(name, verifier)``; ``verifier(example: Example, rationale: str) -> str | None``
    receives the problem (:class:`star_kit.records.Example`) and the rationale (the completion before its final
    answer phrase); it returns None to accept, else a short reason ("step 2: 500 + 120 is 620, not 632"). It
    must never raise (a raise is counted as a rejection, with the exception as the reason).
    A task names its own verifier in its ``verifier`` attribute; ``--verifier`` overrides it.
    Return: nothing.
    """


@hookspec
def star_kit_iteration_start(iteration: int, config: "RunConfig", run_dir: Path) -> None:
    """Called when iteration ``iteration`` (1, 2, ...; not the baseline, 0) starts its own steps, on a fresh run
    and on a resumed one: before its sampling, or, when that sampling rode along with the previous iteration's
    evaluation pass (``--merge-passes``, the default; ``sampled_ahead_in`` in its result), before its
    rationalization.

    Arguments: ``iteration`` (int, 1-based), ``config`` (:class:`star_kit.config.RunConfig`, credentials
    redacted), ``run_dir`` (:class:`pathlib.Path`). An implementation may take any subset of them.
    Return: ignored. Every implementation is called (loggers, notifiers).
    """


@hookspec
def star_kit_iteration_end(iteration: int, result: "IterationResult", config: "RunConfig", run_dir: Path) -> None:
    """Called after each iteration's metrics are recorded (iteration 0 is the few-shot baseline).

    Arguments: ``iteration`` (int), ``result`` (:class:`star_kit.records.IterationResult`),
    ``config`` (:class:`star_kit.config.RunConfig`, credentials redacted), ``run_dir`` (:class:`pathlib.Path`).
    An implementation may take any subset of them. A raise is a warning naming the plugin; the run goes on.
    ``star-kit plugins`` lists the plugins that implement an event hook.
    Return: ignored. Every implementation is called (loggers: TensorBoard, W&B, CSV ...).
    """
