"""Pieces shared by the CLI's subcommands: argument types and quieting the libraries' own output."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import warnings
from typing import Any, Iterator

from .config import is_all, parse_scalar
from .errors import did_you_mean


def loaded_registry(plugins: Any = ()) -> Any:
    """The registry of the installed plugins and ``plugins`` (``--plugin``), each plugin that failed to load a
    warning line on stderr: ``run``, ``run --print-config``, ``bench`` and ``plugins`` say the same."""
    from rich.markup import escape

    from .console import err_console
    from .registry import load_registry

    registry = load_registry(plugins)
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {escape(problem)}", highlight=False, soft_wrap=True)
    return registry


#: the environment :func:`quiet_libraries` sets where unset (TQDM_DISABLE: library bars; star-kit shows its own)
QUIET_ENVIRONMENT = {"TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
                     "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1"}


def quiet_libraries() -> None:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


@contextlib.contextmanager
def library_settings_kept() -> Iterator[None]:
    """For the Python API (``star_kit.run``, ``star_kit.bench``): what :func:`quiet_libraries` changes for the
    process (the environment variables it sets, the warning filters, transformers' and datasets' verbosity and
    progress bars) is put back when the call returns or raises, so that a notebook's own warnings, logs and bars
    come back after it; and tqdm's bars (lm-eval's, transformers') are off during the call even where tqdm was
    imported before (``TQDM_DISABLE`` is read when tqdm is imported): star-kit shows its own progress."""
    saved_env = {key: os.environ.get(key) for key in QUIET_ENVIRONMENT}
    restore: list[Any] = []
    try:
        import transformers

        verbosity, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
        restore.append(lambda: (transformers.logging.set_verbosity(verbosity),
                                transformers.logging.enable_progress_bar() if bars
                                else transformers.logging.disable_progress_bar()))
    except ImportError:
        pass
    try:
        import datasets

        d_verbosity, d_bars = datasets.logging.get_verbosity(), datasets.is_progress_bar_enabled()
        restore.append(lambda: (datasets.logging.set_verbosity(d_verbosity),
                                datasets.enable_progress_bars() if d_bars else datasets.disable_progress_bars()))
    except ImportError:
        pass
    try:
        from tqdm import std as tqdm_std

        original = tqdm_std.tqdm.__init__

        @functools.wraps(original)
        def quiet_init(self: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            original(self, *args, **kwargs)

        tqdm_std.tqdm.__init__ = quiet_init
        restore.append(lambda: setattr(tqdm_std.tqdm, "__init__", original))
    except ImportError:
        pass
    try:
        with warnings.catch_warnings():  # the filters as they were, after
            yield
    finally:
        for undo in restore:
            undo()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--task-opt`` and friends; VALUE read by :func:`star_kit.config.parse_scalar`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.replace("-", "_"), parse_scalar(value)


def optional_int(text: str) -> int | None:
    """An integer, or 'all' / 'none' for None (``--train-size all``)."""
    if is_all(text):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'all', got {text!r}") from None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what was wrong, and where to read more), exit code 2, instead of
    the whole usage block first. Subcommands' parsers are made of the same class."""

    def error(self, message: str):  # type: ignore[override]
        unknown = re.match(r"unrecognized arguments: (?:\S+ )*?(--[\w-]+)", message)
        if unknown:  # a misspelt flag: the nearest one ("--itrations" -> "--iterations")
            flags = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            message += did_you_mean(unknown.group(1).split("=")[0], flags, quote=False)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
