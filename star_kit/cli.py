"""The ``star-kit`` command line: ``run``, ``plugins`` (and more subcommands as they land)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import typing
from typing import Any, Sequence

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import benching, report
from .cli_common import OneLineParser, key_value, loaded_registry, optional_int, quiet_libraries
from .config import RunConfig
from .console import console, err_console
from .errors import StarKitError, did_you_mean, one_line
from .registry import OPTION_KINDS, SINGULAR
from .runner import execute, merged_config, results_table  # noqa: F401 - results_table: star_kit.cli's, as before
from .store import dump_yaml


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="star-kit", description="STaR: a language model teaches itself to reason.")
    parser.add_argument("--version", action=VersionAction,
                        help="print star-kit's version and those of the libraries that make its numbers, and exit")
    sub = parser.add_subparsers(dest="command", required=True)

    S = argparse.SUPPRESS
    run = sub.add_parser("run", help="run STaR iterations (sample, rationalize, fine-tune, evaluate)",
                         description="Run STaR: sample rationales few-shot, keep the right ones, rationalize the "
                                     "failures with the answer as a hint, fine-tune the base model on what was kept, "
                                     "evaluate with lm-eval; repeat. Writes a run directory (--out) that --resume "
                                     "continues.", argument_default=S)
    run.add_argument("--config", help="YAML file with any of the run keys; flags override it")
    run.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its first unfinished step (a key "
                     "that changes results is refused; options that only place the work may change: a sampler's "
                     "batch size or device, the trainer's process count with the same global batch)")
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
    plugins.add_argument("name", nargs="?", help="a plugin's name: list the options its --task-opt, --sampler-opt "
                         "or --trainer-opt takes (type, default)")
    plugins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    plugins.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE[:OBJECT]",
                         help="also load a plugin without installing it (repeatable)")

    benching.add_parser(sub)
    report.add_parser(sub)
    parser.subcommands = sub.choices  # name -> its parser
    return parser


class VersionAction(argparse.Action):
    """``star-kit --version``: star-kit's version, then torch, transformers, TRL, lm-eval ... (what ``eval.json``
    records as ``versions``; an absent optional library is left out)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from .evaluation import versions

        found = versions()
        own = found.pop("star-kit") or "unknown"
        print(f"star-kit {own} (" + ", ".join(f"{k} {v}" for k, v in found.items() if v) + ")")
        parser.exit()


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


def cmd_run(args: argparse.Namespace) -> int:
    config = merged_config(args)
    args.run_dir = config.out  # for the line an interruption prints
    if getattr(args, "print_config", False):  # checked as a run checks it first; printed as config.yaml records it
        from .loop import StarRun

        quiet_libraries()
        from .models import resolve_model

        star = StarRun(config, loaded_registry(config.plugins), phases=None,
                       log=lambda m: err_console.print(m, markup=False, highlight=False))
        task, _ = star.check()
        resume = bool(getattr(args, "resume", None))
        star.check_out(resume)  # the run directory: what the run would refuse, refused here (nothing is written)
        star.data_from_environment(resume)
        star.draw(task)  # the data's rows and the task's questions, as a run draws them
        if resume:
            star.compare_saved_config()
        resolve_model(config.model, convert=False)  # the model's name, as a run checks it (nothing converted)
        console.print(dump_yaml(config.public_dict()), end="", markup=False,
                      highlight=False)
        return 0
    args.had_run = os.path.isfile(os.path.join(config.out, "config.yaml"))  # (a failure's line says if this made it)
    execute(config, resume=bool(getattr(args, "resume", None)), progress=getattr(args, "progress", True))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .registry import load_registry

    if args.json:  # JSON on stdout, even when a --plugin fails to import
        try:
            registry = load_registry(args.plugins)
        except StarKitError as exc:
            print(json.dumps({"error": str(exc)}, indent=2))
            return exc.exit_code
        if args.name:
            try:
                return _plugin_options(registry, args.name, as_json=True)
            except StarKitError as exc:
                print(json.dumps({"error": str(exc)}, indent=2))
                return exc.exit_code

        print(json.dumps({**registry.as_json(), "problems": registry.problems}, indent=2))
        return 0
    registry = loaded_registry(args.plugins)
    if args.name:
        return _plugin_options(registry, args.name)
    table = Table(title="star-kit plugins")
    for col in ("kind", "name", "plugin", "distribution"):
        table.add_column(col)
    for kind, entries in registry.as_json().items():
        for e in entries:
            name = f"{e['name']} ({', '.join(e['hooks'])})" if "hooks" in e else e["name"]
            table.add_row(*(Text(str(v)) for v in (kind[:-1], name, e["plugin"], e["distribution"])))
    console.print(table)
    return 0


def _plugin_options(registry: Any, name: str, as_json: bool = False) -> int:
    """``star-kit plugins NAME``: the options of each plugin kind named NAME (a table each, or JSON)."""
    kinds = [kind for kind in ("tasks", "samplers", "trainers", "extractors", "verifiers")
             if name in registry.items[kind]]
    events = [e for e in registry.events() if e["name"] == name]
    if not kinds and not events:
        known = sorted({n for kind in registry.items.values() for n in kind} | {e["name"] for e in registry.events()})
        raise StarKitError(f"no plugin named {name!r}{did_you_mean(name, known)} (star-kit plugins lists them)", 2)
    if events and not kinds:  # a logger: called on events, with no options of its own
        event = events[0]
        if as_json:
            print(json.dumps({"events": {**event, "options": [], "more": None}}, indent=2))
        else:
            console.print(f"event plugin {name!r} ({', '.join(event['hooks'])}), {event['distribution']}: takes no "
                          f"options", highlight=False)
        return 0
    if as_json:
        print(json.dumps({kind: {"name": name, "provenance": registry.provenance(kind, name),
                                 **registry.options(kind, name)} for kind in kinds}, indent=2))
        return 0
    for kind in kinds:
        found = registry.options(kind, name)
        title = f"{SINGULAR[kind]} {name!r}, {registry.provenance(kind, name)}"
        if kind not in OPTION_KINDS:
            console.print(f"{title}: takes no options", highlight=False)
            continue
        console.print(f"{title}: --{SINGULAR[kind]}-opt KEY=VALUE", highlight=False)
        table = Table()
        for col in ("option", "type", "default"):
            table.add_column(col)
        for row in found["options"]:
            default = "(required)" if row["required"] else json.dumps(row["default"])
            table.add_row(Text(row["name"]), Text(row["type"]), Text(default))
        if found["options"]:
            console.print(table)
        if found["more"]:
            console.print(f"  and {found['more']}" if found["options"] else f"  {found['more']}", highlight=False)
        elif not found["options"]:
            console.print("  none", highlight=False)
    return 0


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "bench": benching.cmd_bench, "report": report.cmd_report}


class Terminated(KeyboardInterrupt):
    """SIGTERM (``docker stop``, Kubernetes, SLURM's ``scancel``, systemd), raised where the command is, as Ctrl-C
    is: the same clean-up on the way out (the run directory's lock released, worker processes taken down) and the
    same one line; exit code 143."""


def _raise_terminated(signum, frame):
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM raises :class:`Terminated` while the command runs (in the main thread, where nobody else has set a
    handler); the handler before is restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_interrupted_finalizers() -> None:
    """A second Ctrl-C while objects are finalized ("Exception ignored in: <function Dataset.__del__> ...
    KeyboardInterrupt") prints no traceback fragment under the one line; other unraisable errors still print."""
    default = sys.unraisablehook
    if getattr(default, "star_kit_quiet", False):
        return

    def hook(unraisable):
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            default(unraisable)

    hook.star_kit_quiet = True
    sys.unraisablehook = hook


def _given_again(run_dir: str) -> str:
    """' --sampler ray --plugin m ...': what a resume of the run in ``run_dir`` must be given again (a run
    directory is data: its plugins, a sampler that sends the prompts out, its commands), or ''."""
    from .config import flags_to_give_again, load_config_file

    try:
        flags = flags_to_give_again(load_config_file(os.path.join(run_dir, "config.yaml")))
    except StarKitError:
        return ""
    return "".join(f" {f}" for f in flags)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the subcommand's parser, so the hint names its --help (argparse names the top one)
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        with sigterm_as_interrupt():
            return COMMANDS[args.command](args)
    except StarKitError as exc:
        if os.environ.get("STAR_KIT_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        where = getattr(args, "run_dir", None)
        if args.command == "run" and getattr(args, "had_run", True) is False and where \
                and os.path.isfile(os.path.join(where, "config.yaml")):  # this run wrote it, then failed
            err_console.print(f"{where} keeps what this run did; once mended, continue with `star-kit run --resume "
                              f"{where}{_given_again(where)}`", highlight=False, markup=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (Terminated): the clean-up ran on the way here
        if argv is None:  # the console command (its process ends next), not a caller's main([...])
            _quiet_interrupted_finalizers()
        how, code = ("terminated (SIGTERM)", 143) if isinstance(exc, Terminated) else ("interrupted", 130)
        where = getattr(args, "run_dir", None)
        if args.command == "run" and where and os.path.isfile(os.path.join(where, "config.yaml")):
            err_console.print(f"{how}; continue with `star-kit run --resume {where}{_given_again(where)}`",
                              highlight=False, markup=False)
        elif args.command == "run":  # a start that is cut short removes what it wrote: nothing to resume
            err_console.print(f"{how} before anything was computed; run the same command again", highlight=False)
        elif args.command == "bench" and getattr(args, "json_written", False):
            err_console.print(f"{how}; the pairs benched so far are in {args.json}", highlight=False, markup=False)
        else:
            err_console.print(how, highlight=False)
        return code
    except BrokenPipeError:  # the reader went away (`star-kit plugins --json | head`): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's own flush at exit does not fail again
        return 141
    except OSError as exc:  # the machine's, not a plugin's (those are named by the registry): a full disk, a
        if os.environ.get("STAR_KIT_DEBUG"):  # cache or run directory it may not write ...
            raise
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        err_console.print(f"error: {where + ': ' if where else ''}{exc.strerror or one_line(exc)} (run with "
                          "STAR_KIT_DEBUG=1 for the traceback; a killed run resumes with --resume)",
                          highlight=False, markup=False, soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
