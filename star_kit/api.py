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
    command's: bad input raises :class:`star_kit.errors.StarKitError` (``exit_code`` 2) before any model loads."""
    from .errors import StarKitError
    from .runner import execute, merged_config

    reserved = sorted(set(options) & {"config", "resume", "progress", "command", "print_config"})
    if reserved:
        raise TypeError(f"star_kit.run: {reserved[0]!r} is not a config key (config is the first argument, "
                        f"passed by position)")
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
        raise TypeError(f"star_kit.run: config must be a path, a dict or a RunConfig, not {type(config).__name__}")
    for key, value in options.items():
        if isinstance(value, os.PathLike):  # out=Path(...), data_dir=..., model=...
            value = os.fspath(value)
        if key in ("task_options", "sampler_options", "trainer_options") and not isinstance(value, dict):
            raise StarKitError(f"star_kit.run: {key} must be a dict of option names and values, got "
                               f"{type(value).__name__}", 2)
        setattr(args, key, value)
    return execute(merged_config(args), resume=resume is not None, progress=progress)
