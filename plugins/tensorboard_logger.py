"""Built-in logger: TensorBoard scalars in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``).

On every ``star_kit_iteration_end`` event, with the iteration as the step, every numeric field of
:class:`star_kit.records.IterationResult`: ``accuracy``, ``accuracy_stderr``, ``eval_examples`` (and ``maj_k``,
``maj_accuracy``, ``maj_accuracy_stderr`` with ``--eval-samples``), the training
phase's counts as ``samples/<field>`` (``sampled``, ``kept``, ``no_answer``, ``unverified`` ...; iterations >= 1),
``train/{examples,steps}`` and ``seconds/<phase>``; the fine-tune's curve by optimizer step as
``train_loss/iter_NN`` and ``train_grad_norm/iter_NN`` (from the checkpoint's ``train_log.jsonl``); the run's
config as text (credentials redacted) at the first event of a process. Written through
``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package). Any failure, a missing package
included, prints one warning and never stops the run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import star_kit
from star_kit.errors import one_line, warn_once
from star_kit.records import IterationResult

SUBDIR = "tensorboard"
# tagged by their names, iteration 0 too (maj_*: maj@K beside the greedy accuracy, only when --eval-samples is on)
EVAL_FIELDS = ("accuracy", "accuracy_stderr", "eval_examples", "eval_no_answer", "maj_k", "maj_accuracy",
               "maj_accuracy_stderr")
TRAIN_TAGS = {"train_examples": "train/examples", "steps": "train/steps"}
#: every other numeric field of the record (derived from it, so a new field is logged too) -> samples/<field>
SAMPLE_FIELDS = tuple(f.name for f in dataclasses.fields(IterationResult)
                      if f.name not in (*EVAL_FIELDS, *TRAIN_TAGS, "iteration", "checkpoint", "seconds",
                                        "sampled_ahead_in"))  # an iteration number, not a measurement
_config_logged: set[str] = set()  # run directories whose config this process has logged (once per process)


def scalars(result: Any) -> dict[str, float]:
    """The tag -> value pairs of one IterationResult (or its dict); None values are left out."""
    data = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    tags = {key: data.get(key) for key in EVAL_FIELDS}
    if data.get("iteration", 0) > 0:
        tags.update({f"samples/{key}": data.get(key) for key in SAMPLE_FIELDS})
        tags.update({tag: data.get(key) for key, tag in TRAIN_TAGS.items()})
    for phase, seconds in (data.get("seconds") or {}).items():
        tags[f"seconds/{phase}"] = seconds
    return {k: float(v) for k, v in tags.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def train_curve(result: Any) -> list[tuple[int, dict[str, float]]]:
    """(step, {"loss", "grad_norm"}) of each logged step of the iteration's fine-tune, read from its checkpoint's
    ``train_log.jsonl``; [] when there is none (iteration 0, nothing trained). A damaged line is left out with a
    warning naming it."""
    from star_kit.store import read_jsonl

    checkpoint = getattr(result, "checkpoint", None) or (result.get("checkpoint") if isinstance(result, dict) else None)
    path = Path(checkpoint) / "train_log.jsonl" if checkpoint else None
    if path is None or not path.is_file():
        return []
    curve = []
    for row in read_jsonl(path, skip_bad=True):
        if isinstance(row.get("step"), int):
            values = {k: float(row[k]) for k in ("loss", "grad_norm")
                      if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)}
            if values:
                curve.append((row["step"], values))
    return curve



@star_kit.hookimpl
def star_kit_iteration_end(iteration, result, config, run_dir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # tensorboard not installed (torch raises ImportError), or broken
        warn_once(("tensorboard logger", "import"),
                  f"tensorboard logger: disabled ({one_line(exc, whole=True)}); pip install tensorboard")
        return
    log_dir = Path(run_dir) / SUBDIR
    try:
        with SummaryWriter(log_dir=str(log_dir)) as writer:
            for tag, value in scalars(result).items():
                writer.add_scalar(tag, value, global_step=int(iteration))
            for step, values in train_curve(result):  # the fine-tune's logged steps: one curve per iteration
                for key, value in values.items():
                    writer.add_scalar(f"train_{key}/iter_{int(iteration):02d}", value, global_step=step)
            if config is not None and str(log_dir) not in _config_logged:
                import yaml

                from star_kit.config import public_config

                text = yaml.safe_dump(public_config(config), sort_keys=False)
                writer.add_text("config", "```\n" + text + "```", global_step=int(iteration))
                _config_logged.add(str(log_dir))
    except Exception as exc:  # a logger never stops a run
        warn_once(("tensorboard logger", str(log_dir)),
                  f"tensorboard logger: could not write {log_dir}: {one_line(exc, whole=True)}")
