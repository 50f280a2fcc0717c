"""Built-in logger: Weights & Biases, only when ``wandb`` is importable AND ``$WANDB_PROJECT`` is set.

Otherwise it does nothing (``wandb`` is not even imported; with ``WANDB_PROJECT`` set but no ``wandb``, one note
says so). On the first ``star_kit_iteration_end`` event of a run directory it starts a W&B run in that project
(named after the directory, the run's config as W&B config and the command line wandb records, both with
credentials redacted; ``WANDB_ENTITY``, ``WANDB_MODE=offline`` etc. are read by wandb itself), then logs each iteration's metrics with the iteration as the
step: ``accuracy``, ``accuracy_stderr``, ``samples/*``, ``train/*``, ``seconds/*`` (the same tags as the TensorBoard
logger). Any failure prints one warning and never stops the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import star_kit
from star_kit_plugins.tensorboard_logger import scalars

_state: dict[str, Any] = {"run": None, "dir": None}
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        print(f"warning: wandb logger: {message}", file=sys.stderr)


def _wandb():
    """The wandb module when W&B logging is on, else None."""
    if not os.environ.get("WANDB_PROJECT"):
        return None
    if "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        _warn_once("missing", "WANDB_PROJECT is set but wandb is not installed; W&B logging is off")
        return None
    try:
        import wandb
    except Exception as exc:
        _warn_once("import", f"wandb failed to import ({type(exc).__name__}: {exc}); W&B logging is off")
        return None
    return wandb


@star_kit.hookimpl
def star_kit_iteration_end(iteration, result, config, run_dir):
    wandb = _wandb()
    if wandb is None:
        return
    try:
        run_dir = str(Path(run_dir))
        if _state["dir"] != run_dir:
            if _state["run"] is not None:
                _state["run"].finish()
            _state["run"], _state["dir"] = None, None
            from star_kit.config import public_config, redact_argv

            cfg = public_config(config)
            # wandb records the command line (sys.argv) as run metadata, in the run directory and on sync: it
            # reads it during init, so the credentials given as options are redacted there for that call
            argv, sys.argv = sys.argv, redact_argv(sys.argv)
            try:
                _state["run"] = wandb.init(project=os.environ["WANDB_PROJECT"], name=Path(run_dir).name,
                                           config=cfg, dir=run_dir)
            finally:
                sys.argv = argv
            _state["dir"] = run_dir
        _state["run"].log(scalars(result), step=int(iteration))
    except Exception as exc:  # a logger never stops a run
        _warn_once(f"log:{run_dir}", f"could not log to W&B: {type(exc).__name__}: {exc}")
