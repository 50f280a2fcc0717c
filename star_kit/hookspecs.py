"""Every hook a star-kit plugin can implement, in one place.

A plugin is a module (or object) exposed through the ``star_kit`` entry-point group::

    [project.entry-points.star_kit]
    my_plugin = "my_package.my_module"

and implements any of the hooks below with the ``@star_kit.hookimpl`` marker. The five ``register_*`` hooks
receive a ``register(name, obj)`` callback, so one plugin can register several things and star-kit controls
naming and duplicates (a second registration of a taken name is refused with a message naming both
distributions). The built-in plugins register through exactly the same entry-point group.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("star_kit")


@hookspec
def register_tasks(register):
    """Register task factories.

    When: once, when the plugin registry is built (first use of any plugin kind).
    Arguments: ``register(name, factory)``; ``factory(**options)`` returns an object satisfying
    :class:`star_kit.protocols.Task`. ``options`` come from the run config's ``task_options`` plus
    ``data_dir`` (may be None).
    Return: nothing.
    """


@hookspec
def register_extractors(register):
    """Register answer extractors.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, extractor)``; ``extractor(text: str) -> str | None`` returns the answer in
    canonical form, or None when the text holds no answer. It must never raise, on any string.
    Return: nothing.
    """


@hookspec
def register_samplers(register):
    """Register model backends that generate completions.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, factory)``; ``factory(model: str, **options)`` returns an object satisfying
    :class:`star_kit.protocols.Sampler` with ``model`` (a local folder or hub id) loaded.
    Return: nothing.
    """


@hookspec
def register_trainers(register):
    """Register fine-tuning backends.

    When: once, when the plugin registry is built.
    Arguments: ``register(name, factory)``; ``factory(**options)`` returns an object satisfying
    :class:`star_kit.protocols.Trainer`.
    Return: nothing.
    """


@hookspec
def register_verifiers(register):
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
def star_kit_iteration_start(iteration, config, run_dir):
    """Called at the start of each STaR iteration (before sampling).

    Arguments: ``iteration`` (int, 1-based), ``config`` (:class:`star_kit.config.RunConfig`),
    ``run_dir`` (:class:`pathlib.Path`).
    Return: ignored. Every implementation is called (loggers, notifiers).
    """


@hookspec
def star_kit_iteration_end(iteration, result, config, run_dir):
    """Called after each iteration's metrics are recorded (iteration 0 is the few-shot baseline).

    Arguments: ``iteration`` (int), ``result`` (:class:`star_kit.records.IterationResult`),
    ``config`` (:class:`star_kit.config.RunConfig`), ``run_dir`` (:class:`pathlib.Path`).
    Return: ignored. Every implementation is called (loggers: TensorBoard, W&B, CSV ...).
    """
