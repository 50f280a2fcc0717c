"""star-kit from Python: ``star_kit.run(...)`` is ``star-kit run`` without the command line."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .config import RunConfig


def run(config: RunConfig | dict[str, Any] | str | os.PathLike | None = None, /, *, resume: str | os.PathLike |
        None = None, progress: bool = True, **options: Any) -> list:
    """Run STaR as ``star-kit run`` does and return its history: one ``star_kit.records.IterationResult`` per
    iteration (0 = the base model), with ``accuracy``, ``kept``, ``checkpoint`` ...

    ``config``: a config file's path (YAML or JSON, as ``--config``), a dict of :class:`~star_kit.config.RunConfig`
    keys, or a ``RunConfig`` (the keys it sets to other than their defaults); ``options``: keys that override it,
    as flags override a config file (``train_size=256``, ``task_options={"digits": "1-3"}``). ``resume``: a run
    directory to continue, as ``--resume DIR`` (its ``config.yaml`` first, then ``config``, then ``options``).
    ``progress=False`` hides the progress bars. The merge, the checks and their one-line errors are the
    command's: bad input raises :class:`star_kit.errors.StarKitError` (``exit_code`` 2) before any model loads (a
    keyword ``run`` does not take: :class:`star_kit.errors.ArgumentError`, also a ``TypeError``)."""
    from .cli_common import library_settings_kept
    from .errors import ArgumentError, StarKitError, did_you_mean
    from .runner import execute, merged_config

    reserved = sorted(set(options) & {"config", "resume", "progress", "command", "print_config"})
    if reserved:
        raise ArgumentError(f"star_kit.run: {reserved[0]!r} is not a config key (config is the first argument, "
                            f"passed by position)")
    unknown = sorted(set(options) - set(RunConfig.keys()))
    if unknown:  # a keyword run does not take (a key of a config dict or file is the config's error)
        raise ArgumentError(f"star_kit.run: {unknown[0]!r} is not a config key"
                            f"{did_you_mean(unknown[0], RunConfig.keys()) or ' (see star_kit.config.RunConfig)'}")
    args = argparse.Namespace(command="run", print_config=False, progress=progress,
                              resume=None if resume is None else os.fspath(resume))
    if isinstance(config, (str, os.PathLike)):
        args.config = os.fspath(config)
    elif isinstance(config, RunConfig):  # the keys it sets (those that differ from RunConfig's defaults)
        defaults = RunConfig().to_dict()
        options = {**{k: v for k, v in config.to_dict().items() if v != defaults[k]}, **options}
    elif isinstance(config, dict):
        options = {**config, **options}
    elif config is not None:
        raise ArgumentError(f"star_kit.run: config must be a path, a dict or a RunConfig, not {type(config).__name__}")
    for key, value in options.items():
        if isinstance(value, os.PathLike):  # out=Path(...), data_dir=..., model=...
            value = os.fspath(value)
        if key in ("task_options", "sampler_options", "trainer_options") and not isinstance(value, dict):
            raise StarKitError(f"star_kit.run: {key} must be a dict of option names and values, got "
                               f"{type(value).__name__}", 2)
        setattr(args, key, value)
    with library_settings_kept():
        config = merged_config(args)
        # a range error names a keyword by its key here, not by the command's flag ("--train-size")
        config.origin.update({key: "star_kit.run" for key in options if key not in config.origin})
        return execute(config, resume=resume is not None, progress=progress)


def bench(models: str | os.PathLike | list | tuple = (), tasks: str | list | tuple | None = None, *,
          run: str | os.PathLike | None = None, progress: bool = True, **options: Any) -> list[dict[str, Any]]:
    """Bench models on tasks as ``star-kit bench`` does and return its result rows, one dict per (model, task):
    ``model``, ``task``, ``accuracy``, ``stderr``, ``n``, ``prompt`` ... (the rows ``--json`` writes).

    ``models``: a model (alias, local folder, ``.gguf`` file or hub id) or a list of them (``--model``);
    ``tasks``: a task name or a list of them (``--tasks``); ``run``: a run directory whose iterations to bench
    (``--run``). ``options`` are the command's other flags by their names: ``limit`` (an int, or ``None``/``"all"``
    for every question), ``seed``, ``data_dir``, ``json``, ``out``, ``sampler``, ``sampler_options`` and
    ``task_options`` (dicts), ``eval_samples``, ``eval_temperature``, ``eval_prompt``, ``plugins``,
    ``skip_bad_rows`` (a bool).
    ``progress=False`` hides the progress bars; the table is printed as the command prints it. Bad input raises
    :class:`star_kit.errors.StarKitError` (``exit_code`` 2) before any model loads (an option bench does not take:
    :class:`star_kit.errors.ArgumentError`, also a ``TypeError``)."""
    from .benching import add_parser, run_bench
    from .cli_common import library_settings_kept
    from .errors import ArgumentError, StarKitError, did_you_mean

    parser = argparse.ArgumentParser(prog="star_kit.bench")
    command = add_parser(parser.add_subparsers())
    args = command.parse_args([])
    actions = {a.dest: a for a in command._actions if a.dest not in ("help", "models", "run", "tasks", "progress")}
    unknown = sorted(set(options) - set(actions))
    if unknown:
        close = did_you_mean(unknown[0], actions)
        raise ArgumentError(f"star_kit.bench: {unknown[0]!r} is not an option of bench"
                        + (close or f"; options: {', '.join(sorted(actions))}"))

    def paths(value, what: str) -> list[str]:
        items = [value] if isinstance(value, (str, os.PathLike)) else list(value or ())
        if not all(isinstance(v, (str, os.PathLike)) for v in items):
            raise StarKitError(f"star_kit.bench: {what} must be a name or a list of names, got {value!r}", 2)
        return [os.fspath(v) for v in items]

    args.models = paths(models, "models")
    args.tasks = ",".join(paths(tasks, "tasks")) or None
    args.run = None if run is None else [os.fspath(run)]
    args.progress = progress
    for key, value in options.items():
        action = actions[key]
        if key in ("sampler_options", "task_options"):
            if not isinstance(value, dict):
                raise StarKitError(f"star_kit.bench: {key} must be a dict of option names and values, got "
                                   f"{type(value).__name__}", 2)
        elif key == "plugins":
            value = paths(value, "plugins")
        elif key == "limit":
            if value == "all":
                value = None
            elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise StarKitError(f"star_kit.bench: limit must be an int, None or 'all', got {value!r}", 2)
        elif isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise StarKitError(f"star_kit.bench: {key} must be a bool, got {value!r}", 2)
        elif value is not None:
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            kind = action.type if action.type in (int, float) else str
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                raise StarKitError(f"star_kit.bench: {key} must be {kind.__name__}, got {value!r}", 2)
            if action.choices and value not in action.choices:
                raise StarKitError(f"star_kit.bench: {key} must be one of {', '.join(action.choices)}, got "
                                   f"{value!r}", 2)
        setattr(args, key, value)
    with library_settings_kept():
        return run_bench(args)
