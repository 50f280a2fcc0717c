"""The ``star-kit`` command line: ``run``, ``plugins`` (and more subcommands as they land)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from typing import Any, Sequence

from rich.markup import escape
from rich.table import Table

from . import bench, report
from .cli_common import OneLineParser, key_value, optional_int, quiet_libraries
from .config import OPTION_FLAGS, RunConfig, code_from_saved, drop_redacted, load_config_file, predated
from .console import console, err_console
from .errors import StarKitError
from .labels import format_counts
from .store import dump_yaml
from .report.data import prompt_cell, sampled_ahead_cell


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="star-kit", description="STaR: a language model teaches itself to reason.")
    sub = parser.add_subparsers(dest="command", required=True)

    S = argparse.SUPPRESS
    run = sub.add_parser("run", help="run STaR iterations (sample, rationalize, fine-tune, evaluate)",
                         description="Run STaR: sample rationales few-shot, keep the right ones, rationalize the "
                                     "failures with the answer as a hint, fine-tune the base model on what was kept, "
                                     "evaluate with lm-eval; repeat. Writes a run directory (--out) that --resume "
                                     "continues.", argument_default=S)
    run.add_argument("--config", help="YAML file with any of the run keys; flags override it")
    run.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its first unfinished step")
    add_config_flags(run)
    run.add_argument("--task-opt", dest="task_options", type=key_value, action="append", metavar="KEY=VALUE",
                     help="task option, e.g. digits=1-3 (repeatable)")
    run.add_argument("--sampler-opt", dest="sampler_options", type=key_value, action="append",
                     metavar="KEY=VALUE", help="sampler option, e.g. batch_size=64 (repeatable)")
    run.add_argument("--trainer-opt", dest="trainer_options", type=key_value, action="append",
                     metavar="KEY=VALUE", help="trainer option, e.g. learning_rate=2e-5 (repeatable)")
    run.add_argument("--plugin", dest="plugins", action="append", metavar="MODULE[:OBJECT]",
                     help="load a plugin without installing it (repeatable)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")

    listing = "list the installed tasks, extractors, samplers, trainers, verifiers and event plugins (loggers)"
    plugins = sub.add_parser("plugins", help=listing, description=listing[0].upper() + listing[1:] + ".")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE[:OBJECT]",
                         help="also load a plugin without installing it (repeatable)")

    bench.add_parser(sub)
    report.add_parser(sub)
    parser.subcommands = sub.choices  # name -> its parser
    return parser


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`RunConfig` field (``train_size`` -> ``--train-size``), its help and choices from the
    field's metadata, its default from the field; booleans as ``--x/--no-x`` (so a flag can undo a YAML value).
    The ``*_options`` and ``plugins`` fields have their repeatable flags (``--task-opt K=V``, ``--plugin M``)."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if "help" not in f.metadata:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        hint = hints[f.name]
        if hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
            continue
        if hint == int | None:
            kind = optional_int
        else:
            kind = next((t for t in (int, float, str) if hint in (t, t | None)), str)
        parser.add_argument(flag, type=kind, choices=f.metadata.get("choices"), help=help_text,
                            metavar=f.name.upper() if not f.metadata.get("choices") else None)


def local_paths_absolute(data: dict[str, Any]) -> dict[str, Any]:
    """``data_dir`` and a ``model`` that is a local path (not an alias), made absolute: config.yaml records them
    so, and ``--resume`` from another working directory reads the same files."""
    from .models import ALIASES

    out = dict(data)
    for key in ("data_dir", "model"):
        value = out.get(key)
        if not isinstance(value, str) or not value or (key == "model" and (
                value in ALIASES or not os.path.exists(os.path.expanduser(value)))):
            continue
        out[key] = os.path.abspath(os.path.expanduser(value))
    return out


def merged_config(args: argparse.Namespace) -> RunConfig:
    """Defaults < --resume DIR's config.yaml < --config FILE < flags.

    The run directory is data: its redacted secrets are dropped (they come from the flags or the environment
    again) and the keys that name code (plugins, ``*_command`` options) are used only when the command line
    names them again (:func:`star_kit.config.code_from_saved`)."""
    saved: dict[str, Any] = {}
    if getattr(args, "resume", None):
        path = os.path.join(args.resume, "config.yaml")
        if not os.path.isfile(path):
            raise StarKitError(f"--resume {args.resume}: no config.yaml there, nothing to resume", 2)
        saved = predated(drop_redacted(load_config_file(path)))
        RunConfig.from_dict(saved, source=path)  # a damaged or edited file: named in its one line
    given: dict[str, Any] = {}
    file_data: dict[str, Any] = {}
    if getattr(args, "config", None):
        file_data = load_config_file(args.config)
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
            if key in given and saved.get(key) not in (None, given[key]):
                raise StarKitError(f"--resume {args.resume}: config key {key!r} differs ({saved[key]!r} in "
                                   f"config.yaml, {given[key]!r} now)", 2)
    data = dict(saved)
    for key, value in given.items():
        if key in OPTION_FLAGS and isinstance(value, dict) and isinstance(data.get(key), dict):
            value = {**data[key], **value}
        data[key] = value
    if getattr(args, "resume", None):
        data["out"] = args.resume
    config = RunConfig.from_dict(data)
    # where each value came from, for range errors: the flag, else the file that set it
    config.origin = {**{k: os.path.join(args.resume, "config.yaml") for k in saved},
                     **{k: args.config for k in file_data}}
    for key in flags:
        config.origin.pop(key, None)
    return config


def cmd_run(args: argparse.Namespace) -> int:
    config = merged_config(args)
    if getattr(args, "print_config", False):  # checked as a run checks it first; printed as config.yaml records it
        from .loop import StarRun
        from .registry import load_registry

        quiet_libraries()
        from .models import resolve_model

        StarRun(config, load_registry(config.plugins), phases=None,
                log=lambda m: err_console.print(m, markup=False, highlight=False)).check()
        resolve_model(config.model, convert=False)  # the model's name, as a run checks it (nothing converted)
        console.print(dump_yaml(config.public_dict()), end="", markup=False,
                      highlight=False)
        return 0
    execute(config, resume=bool(getattr(args, "resume", None)), progress=getattr(args, "progress", True))
    return 0


def execute(config: RunConfig, resume: bool = False, progress: bool = True) -> list:
    """The run of a merged config, as `star-kit run` and :func:`star_kit.run` do it: checks, the STaR loop with its
    progress bars, the results table, the report; returns the history (an ``IterationResult`` per iteration)."""
    config.validate()
    quiet_libraries()
    from .loop import StarRun
    from .progress import Phases
    from .registry import load_registry

    registry = load_registry(config.plugins)
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False)
    with Phases(err_console, enabled=progress) as phases:
        live = lambda history: phases.progress.console.print(results_table(history))  # noqa: E731
        star = StarRun(config, registry, phases, log=lambda m: phases.progress.console.print(m, highlight=False),
                       on_record=live if sys.stderr.isatty() else None)
        history = star.run(resume=resume)
    console.print(results_table(history))
    if star.skipped_rows:
        err_console.print(f"[yellow]skipped {len(star.skipped_rows)} malformed data rows[/] "
                          f"(see {config.out}/skipped_rows.json)", highlight=False)
    console.print(f"run directory: {config.out} (metrics.jsonl, iter_NN/)", highlight=False)
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
        s = r.seconds
        table.add_row(
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
        )
    return table


def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import load_registry

    registry = load_registry(args.plugins)
    if args.json:
        print(json.dumps({**registry.as_json(), "problems": registry.problems}, indent=2))
        return 0
    table = Table(title="star-kit plugins")
    for col in ("kind", "name", "plugin", "distribution"):
        table.add_column(col)
    for kind, entries in registry.as_json().items():
        for e in entries:
            name = f"{e['name']} ({', '.join(e['hooks'])})" if "hooks" in e else e["name"]
            table.add_row(kind[:-1], name, e["plugin"], e["distribution"])
    console.print(table)
    for problem in registry.problems:
        err_console.print(f"[yellow]warning:[/] {problem}", highlight=False)
    return 0


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "bench": bench.cmd_bench, "report": report.cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, so the hint names its --help (argparse names the top one)
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return COMMANDS[args.command](args)
    except StarKitError as exc:
        if os.environ.get("STAR_KIT_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        where = getattr(args, "resume", None) or getattr(args, "out", None) or "DIR"
        err_console.print(f"interrupted; continue with `star-kit run --resume {where}`", highlight=False)
        return 130
    except BrokenPipeError:  # the reader went away (`star-kit plugins --json | head`): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit does not fail again
        return 141


if __name__ == "__main__":
    sys.exit(main())
