"""Built-in logger: Weights & Biases, only when ``wandb`` is importable AND ``$WANDB_PROJECT`` is set.

Otherwise it does nothing (``wandb`` is not even imported; with ``WANDB_PROJECT`` set but no ``wandb``, one note
says so). On the first ``star_kit_iteration_end`` event of a run directory it starts a W&B run in that project
(named after the directory, the run's config as W&B config and the command line wandb records, both with
credentials redacted; W&B's files in ``RUN/wandb/``, or under ``$WANDB_DIR``; ``WANDB_ENTITY``,
``WANDB_MODE=offline`` etc. are read by wandb itself). Then it logs each
iteration's metrics against the x-axis ``iteration``: ``accuracy``, ``accuracy_stderr``, ``samples/*``, ``train/*``,
``seconds/*`` (the same tags as the TensorBoard logger); and each fine-tune's curve against ``train_step``:
``train_loss/iter_NN``, ``train_grad_norm/iter_NN`` (from the checkpoint's ``train_log.jsonl``). The axes are W&B
custom step metrics (``define_metric``), so W&B's own step only counts log calls. Any failure prints one warning and
never stops the run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import star_kit
from star_kit.errors import one_line, warn_once
from star_kit_plugins.tensorboard_logger import scalars, train_curve

_state: dict[str, Any] = {"run": None, "dir": None, "defined": set()}  # defined: the metrics given their axis



def _wandb():
    """The wandb module when W&B logging is on, else None."""
    if not os.environ.get("WANDB_PROJECT"):
        return None
    if "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        warn_once(("wandb logger", "missing"),
                  "wandb logger: WANDB_PROJECT is set but wandb is not installed; W&B logging is off")
        return None
    try:
        import wandb
    except Exception as exc:
        warn_once(("wandb logger", "import"),
                  f"wandb logger: wandb failed to import ({one_line(exc, whole=True)}); W&B logging is off")
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
                                           config=cfg, dir=os.environ.get("WANDB_DIR") or run_dir)
            finally:
                sys.argv = argv
            _state["dir"], _state["defined"] = run_dir, set()
            run = _state["run"]
            run.define_metric("iteration")  # the x-axes (W&B's own step must grow by one per log call)
            run.define_metric("train_step")
            for curve in ("train_loss/*", "train_grad_norm/*"):
                run.define_metric(curve, step_metric="train_step")
        run = _state["run"]
        values = scalars(result)
        for key in values.keys() - _state["defined"]:
            run.define_metric(key, step_metric="iteration")
            _state["defined"].add(key)
        run.log({"iteration": int(iteration), **values})
        for step, point in train_curve(result):  # the fine-tune's logged steps: one curve per iteration
            run.log({"train_step": step, **{f"train_{k}/iter_{int(iteration):02d}": v for k, v in point.items()}})
    except Exception as exc:  # a logger never stops a run
        warn_once(("wandb logger", f"log:{run_dir}"),
                  f"wandb logger: could not log to W&B: {one_line(exc, whole=True)}")
