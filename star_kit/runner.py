"""A run of ``star-kit run`` below the command line: the merge of a run directory's config, a config file and the
given keys (:func:`merged_config`), the run itself with its progress, table and report (:func:`execute`), and the
results table. The command (:mod:`star_kit.cli`) and :func:`star_kit.run` both call these."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from rich.markup import escape
from rich.table import Table

from . import report
from .cli_common import loaded_registry, quiet_libraries
from .config import (OPTION_FLAGS, REDACTED, RunConfig, changed_key, check_saved_keys, code_from_saved, drop_redacted,
                     load_config_file, local_paths_absolute, nothing_to_resume, predated)
from .console import console, err_console, plain
from .data import rows_count
from .errors import StarKitError
from .labels import format_counts
from .registry import Registry
from .report.data import prompt_cell, sampled_ahead_cell


def merged_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --resume DIR's config.yaml < --config FILE < flags.

    The run directory is data: its redacted secrets are dropped (they come from the flags or the environment
    again) and the keys that name code (plugins, ``*_command`` options) are used only when the command line
    names them again (:func:`star_kit.config.code_from_saved`)."""
    saved: dict[str, Any] = {}
    if getattr(args, "resume", None):
        path = os.path.join(args.resume, "config.yaml")
        if not os.path.isfile(path):
            raise nothing_to_resume(args.resume)
        # paths an older run recorded relative are read from here, as that run's command did from its directory
        raw = load_config_file(path)
        check_saved_keys(raw, path)
        saved = local_paths_absolute(predated(drop_redacted(raw)))
        RunConfig.from_dict(saved, source=path)  # a damaged or edited file: named in its one line
    given: dict[str, Any] = {}
    file_data: dict[str, Any] = {}
    if getattr(args, "config", None):
        file_data = load_config_file(args.config, pipe=True)  # the user's: --config <(...) too
        RunConfig.from_dict(file_data, source=args.config)  # validates the keys and their types
        given.update(file_data)
    flags = {k: v for k, v in vars(args).items()
             if k not in ("command", "config", "print_config", "resume", "progress")}
    for key in OPTION_FLAGS:
        if key in flags:
            flags[key] = {**(given.get(key) or {}), **dict(flags[key])}
    given.update(flags)
    given = local_paths_absolute(given)
    if getattr(args, "resume", None):
        if "out" in flags and os.path.realpath(flags["out"]) != os.path.realpath(args.resume):
            raise StarKitError(f"--resume {args.resume} continues the run in that directory; --out {flags['out']} "
                               f"names another (drop --out)", 2)
        saved = code_from_saved(saved, given, f"--resume {args.resume}")
        for key in ("task", "sampler", "trainer"):  # before the old plugin's options are merged into the new one's
            if key in given and saved.get(key) not in (None, given[key]) \
                    and not (key == "sampler" and Registry.auto_named(saved[key], given[key])):
                raise changed_key(args.resume, key, repr(saved[key]), repr(given[key]))
    data = dict(saved)
    for key, value in given.items():
        if key in OPTION_FLAGS and isinstance(value, dict) and isinstance(data.get(key), dict):
            value = {**data[key], **value}
        data[key] = value
    if getattr(args, "resume", None):
        data["out"] = args.resume
        for key, flag in OPTION_FLAGS.items():  # a credential is never on disk: say so when it is not given again
            withheld = [k for k, v in (raw.get(key) or {}).items() if v == REDACTED
                        and k not in (data.get(key) or {})] if isinstance(raw.get(key), dict) else []
            for name in withheld:
                print(f"note: {flag} {name} was given to this run and is not kept in config.yaml; pass it again "
                      f"({flag} {name}=...) if the rest of the run needs it", file=sys.stderr)
    config = RunConfig.from_dict(data)
    # where each value came from, for range errors: the flag, else the file that set it
    config.origin = {**{k: os.path.join(args.resume, "config.yaml") for k in saved},
                     **{k: args.config for k in file_data}}
    for key in flags:
        config.origin.pop(key, None)
    return config


def execute(config: RunConfig, resume: bool = False, progress: bool = True) -> list:
    """The run of a merged config, as `star-kit run` and :func:`star_kit.run` do it: checks, the STaR loop with its
    progress bars, the results table, the report; returns the history (an ``IterationResult`` per iteration)."""
    config.validate()
    quiet_libraries()
    from .loop import StarRun
    from .progress import Phases
    registry = loaded_registry(config.plugins)
    with Phases(err_console, enabled=progress) as phases:
        live = lambda history: phases.progress.console.print(results_table(history))  # noqa: E731
        log = lambda m: phases.progress.console.print(m, highlight=False, markup=False)  # noqa: E731 - text, not markup
        star = StarRun(config, registry, phases, log=log, on_record=live if sys.stderr.isatty() else None)
        history = star.run(resume=resume)
    console.print(results_table(history))
    if star.skipped_rows:
        err_console.print(f"[yellow]skipped {rows_count(len(star.skipped_rows))}[/] "
                          f"(see {escape(str(config.out))}/skipped_rows.json)", highlight=False)
    console.print(f"run directory: {config.out} (metrics.jsonl, iter_NN/)", highlight=False, markup=False)
    report.after_run(config.out)  # report.html + accuracy.png; a failure only prints a warning
    return history


def results_table(history) -> Table:
    table = Table(title="STaR iterations")
    ks = sorted({r.maj_k for r in history if r.maj_k})  # maj@K beside the greedy accuracy, when it was on
    maj = [f"maj@{ks[0]}" if len(ks) == 1 else "maj@K"] if ks else []
    labels = ["eval answers", "train answers"] if any(r.eval_labels or r.train_labels for r in history) else []
    for col in ("iter", "accuracy", "±", "prompt", *maj, *labels, "kept", "no answer", "rejected", "rationalized",
                "train ex", "steps", "sample s", "ration. s", "train s", "eval s"):
        table.add_column(col, justify="right")
    for r in sorted(history, key=lambda r: r.iteration):
        s = r.seconds if isinstance(r.seconds, dict) else {}  # a damaged row of an old metrics.jsonl: blank cells
        table.add_row(*map(plain, (
            str(r.iteration),
            "n/a" if r.accuracy is None else f"{100 * r.accuracy:.1f}%",
            "" if r.accuracy_stderr is None else f"{100 * r.accuracy_stderr:.1f}",
            prompt_cell(r.iteration, r.eval_prompt),
            *(["" if r.maj_accuracy is None else f"{100 * r.maj_accuracy:.1f}%"
               + ("" if len(ks) == 1 else f" (K={r.maj_k})")] if maj else []),
            *([format_counts(r.eval_labels, top=3, compact=True), format_counts(r.train_labels, top=3, compact=True)]
              if labels else []),
            f"{r.kept}/{r.sampled}" if r.iteration else "",
            str(r.no_answer) if r.iteration else "",
            str(r.unverified) if r.iteration else "",
            f"{r.rationalized}/{r.rationalization_attempts}" if r.iteration else "",
            str(r.train_examples) if r.iteration else "",
            str(r.steps) if r.iteration else "",
            sampled_ahead_cell(r.sampled_ahead_in) or (f"{s['sample']:.0f}" if "sample" in s else ""),
            *(f"{s[k]:.0f}" if k in s else "" for k in ("rationalize", "train", "evaluate")),
        )))
    return table
