"""``star-kit bench``: accuracy of one or more models on one or more tasks, side by side.

Each (model, task) pair is evaluated through lm-eval exactly as a STaR run evaluates its checkpoints
(:func:`star_kit.evaluation.evaluate`: the task's own prompt, few-shot unless ``--eval-prompt question``, its
extractor as an lm-eval filter, the task's ``is_correct``), with a sampler built from the plugin registry.
``--run DIR`` benches every iteration's checkpoint of a run (the base model as iteration 0) on the run's task and
evaluation questions.

A task name that star-kit does not provide but lm-eval knows (``arc_easy``, ``hellaswag`` ...; force lm-eval's
own with the prefix ``lm-eval:``, e.g. ``lm-eval:gsm8k``) is evaluated by lm-eval's own ``HFLM`` and task
definition; its dataset comes from the Hugging Face hub.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from rich.markup import escape

from .cli_common import key_value, loaded_registry, optional_int, quiet_libraries
from .errors import StarKitError, UnknownNameError, one_line
from .records import PROMPT_NAMES

LM_EVAL_PREFIX = "lm-eval:"
ALL_NOTE_AT = 500  # benching every question of a task larger than this is said (no --limit given)
UNSET = object()  # --limit not given (not a string: argparse would run a string default through optional_int)
# Preferred headline metric of an lm-eval-native task (the first one present wins).
_METRIC_PREFERENCE = ("exact_match", "acc", "acc_norm", "f1", "em", "bleu")


@dataclass
class Target:
    """One model to bench: a label for the table, the name the user gave, and what ``from_pretrained`` loads."""

    label: str
    name: str
    path: str = ""
    iteration: int | None = None
    fewshot: bool = True  # prompted with the task's few-shot prompt, else with the question alone
    trained_task: str | None = None  # a run's checkpoint: the task it was fine-tuned on (``fewshot`` applies to it)

    def fewshot_on(self, task: str) -> bool:
        """Few-shot on ``task``: as ``fewshot`` says, but always on a task other than the one a run's checkpoint
        was fine-tuned on (it never learned to answer that task's questions alone)."""
        return self.fewshot or (self.trained_task is not None and task != self.trained_task)


@dataclass
class TaskSpec:
    name: str
    kind: str  # "star-kit" or "lm-eval"
    lm_eval_name: str = ""
    task: Any = None
    examples: list = field(default_factory=list)
    manager: Any = None  # lm-eval's TaskManager (built once: indexing its ~15k task configs takes seconds)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``star-kit bench`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "bench", help="accuracy of models on tasks, side by side (through lm-eval)",
        description="Evaluate each --model (and/or each iteration of a --run) on each task through lm-eval. "
                    "Tasks: star-kit tasks (see `star-kit plugins`) or any lm-eval task name; the prefix lm-eval: "
                    "picks lm-eval's task where star-kit has one of that name (lm-eval:gsm8k).")
    p.add_argument("--model", dest="models", action="append", default=[], metavar="MODEL",
                   help="model alias, local folder, .gguf file or hub id (repeatable)")
    p.add_argument("--run", metavar="DIR", action="append", help="bench every iteration's checkpoint of a star-kit "
                   "run directory (iteration 0 = its base model) on the run's task and evaluation questions, with "
                   "its sampler unless --sampler names one (one run per bench)")
    p.add_argument("--tasks", help="comma-separated task names (default: the run's task with --run)")
    p.add_argument("--limit", type=optional_int, metavar="N", default=UNSET,  # 'all' is None: not the same as unset
                   help="evaluate the first N examples of each task's eval split after a seeded shuffle "
                        "(default: all; with --run: the run's eval size)")
    p.add_argument("--data-dir", help="local data folder (else $STAR_KIT_DATA_DIR, else the hub)")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="drop (and count) malformed data rows instead of stopping at the first (as a run made with "
                        "--skip-bad-rows does; bench --run of such a run does it anyway)")
    p.add_argument("--json", metavar="FILE", help="write the results as a JSON list of objects")
    p.add_argument("--out", metavar="DIR", help="keep each evaluation's prompts and samples under DIR/<model>/<task>")
    p.add_argument("--sampler", help="sampler (model backend) for star-kit tasks; default auto (vllm on a GPU where "
                                     "installed, else hf)")
    p.add_argument("--sampler-opt", dest="sampler_options", type=key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="sampler option, e.g. batch_size=64 (repeatable)")
    p.add_argument("--task-opt", dest="task_options", type=key_value, action="append", default=[],
                   metavar="[TASK.]KEY=VALUE",
                   help="task option, e.g. arithmetic.digits=1-3 (repeatable; without TASK. it goes to every task)")
    p.add_argument("--seed", type=int, help="seed of the example shuffle (default 0; with --run: the run's "
                                             "eval_seed, else its seed)")
    p.add_argument("--eval-samples", type=int, metavar="K",
                   help="maj@K beside the greedy accuracy: K sampled rationales per question, majority vote over "
                        "their answers (star-kit tasks; default 0 = greedy only; with --run: the run's)")
    p.add_argument("--eval-temperature", type=float, metavar="T",
                   help="sampling temperature of the maj@K rationales (default 0.7; with --run: the run's)")
    p.add_argument("--eval-prompt", choices=("trained", *PROMPT_NAMES),
                   help="star-kit tasks: trained = as `star-kit run` evaluates (the base model few-shot, a run's "
                        "M(n) as that run evaluated it on the run's task and few-shot on others, also when its "
                        "iter_NN/checkpoint is given as --model; the default), fewshot = every model with the "
                        "task's few-shot prompt, question = every model with the question alone (as `star-kit run` "
                        "fine-tunes)")
    p.add_argument("--plugin", dest="plugins", action="append", default=[], metavar="MODULE[:OBJECT]",
                   help="load a plugin without installing it (repeatable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    return p


# -- what to bench ---------------------------------------------------------------------------------------------
def run_targets(run_dir: Path, note=None) -> tuple[dict[str, Any], list[Target]]:
    """A run's config and its models: the base model (iteration 0), then each finished checkpoint; ``note`` is told
    of each iteration folder left out for want of one."""
    from .config import load_config_file
    from .store import RunStore

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise StarKitError(f"--run {run_dir}: no config.yaml there (not a star-kit run directory)", 2)
    RunStore(run_dir).check_entries(f"--run {run_dir}")
    config = load_config_file(config_path)
    if not config.get("model"):  # a cut file: its iterations would be labelled as the default model's
        raise StarKitError(f"--run {run_dir}: {config_path} names no model (damaged or cut short?)", 2)
    from .config import RunConfig

    base = str(config.get("model") or RunConfig().model)
    targets = [Target(f"iter 0 ({base})", base, iteration=0)]
    store = RunStore(run_dir)
    for n in store.iterations():
        ckpt = store.artifact(n, "checkpoint")
        if n > 0 and (ckpt / "config.json").is_file():  # a model folder (an adapter folder alone: not loadable here)
            targets.append(Target(f"iter {n}", str(ckpt), iteration=n))
        elif n > 0 and note is not None:
            note(f"--run {run_dir}: {store.iter_dir(n).name} has no checkpoint (its training has not finished, or "
                 "there was nothing to train on): left out")
    return config, targets


def _lm_eval_task_manager():
    import logging

    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    return TaskManager()


def options_for(task: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of one task: unscoped ``key`` options plus its own ``task.key`` ones (which win)."""
    mine = {k: v for k, v in options.items() if "." not in k}
    mine.update({k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(task + ".")})
    return mine


def with_run_task_options(given: dict[str, Any], run_task: str, saved: dict[str, Any]) -> dict[str, Any]:
    """``--task-opt`` options with ``bench --run``'s task given its recorded options first and the ones given now
    over them, with or without the task's prefix (``eval_digits=6-8`` or ``arithmetic.eval_digits=6-8``)."""
    out = dict(given)
    if run_task:
        out.update({f"{run_task}.{k}": v for k, v in {**saved, **options_for(run_task, given)}.items()})
    return out


def resolve_tasks(names: list[str], registry, data_dir, task_options, limit, seed,
                  skip_bad_rows: Collection[str] = ()) -> list[TaskSpec]:
    """Check every name first (an unknown one exits 2 before any work), then build the star-kit tasks and load
    their examples (data errors surface before any model loads; the tasks named in ``skip_bad_rows`` drop their bad
    rows: --skip-bad-rows, or the --run they belong to made with it)."""
    from .loop import checked_examples  # the check a run makes of a task's examples

    specs: list[TaskSpec] = []
    manager = None
    for name in names:
        if not name.startswith(LM_EVAL_PREFIX) and name in registry.names("tasks"):
            specs.append(TaskSpec(name, "star-kit"))
            continue
        lm_name = name[len(LM_EVAL_PREFIX):] if name.startswith(LM_EVAL_PREFIX) else name
        manager = manager or _lm_eval_task_manager()
        if lm_name not in manager.task_index:
            raise UnknownNameError(
                "task", name, registry.names("tasks"),
                hint=f"star-kit's tasks; or any of lm-eval's {len(manager.all_tasks)} task names, "
                     f"listed by `lm-eval ls tasks`")
        specs.append(TaskSpec(name, "lm-eval", lm_eval_name=lm_name, manager=manager))
    for spec in specs:
        if spec.kind == "star-kit":
            core = {"data_dir": data_dir, "skip_bad_rows": spec.name in skip_bad_rows}
            task = registry.create("tasks", spec.name, _core=core,
                                   **options_for(spec.name, task_options))
            spec.task = registry.guarded("tasks", spec.name, task)  # every call into it names its plugin
            spec.examples = checked_examples(registry.where("tasks", spec.name), "eval",
                                             spec.task.examples("eval", limit, seed), limit, lambda m: None)
            if not spec.examples:
                raise StarKitError(f"task {spec.name!r} has no evaluation examples")
    return specs


# -- evaluating ------------------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_") or "model"


def model_folders(labels: list[str]) -> dict[str, str]:
    """Each model's folder under ``--out``: its label made a file name; labels that make the same name
    (``a/b`` and ``a_b``) get ``-2``, ``-3`` ... in the order given, so no model's samples overwrite another's."""
    folders: dict[str, str] = {}
    for label in labels:
        base = name = _slug(label)
        k = 1
        while name in folders.values():
            k += 1
            name = f"{base}-{k}"
        folders[label] = name
    return folders


def bench_star_kit(spec: TaskSpec, sampler, sampler_name: str, out_dir: Path, registry, phases,
                   label: str, maj_k: int = 0, maj_temperature: float = 0.7, seed: int = 0,
                   fewshot: bool = True) -> dict[str, Any]:
    from .evaluation import evaluate

    t0 = time.perf_counter()
    total = len(spec.examples) * (2 if maj_k > 1 else 1)
    with phases.phase(f"{label} · {spec.name}", total, "q") as advance, \
            registry.guard("tasks", spec.name):  # the sampler's own calls name it already (Registry.create)
        ev = evaluate(spec.task, sampler, spec.examples, out_dir, registry, advance, maj_k=maj_k,
                      maj_temperature=maj_temperature, seed=seed, fewshot=fewshot, sampler_name=sampler_name,
                      star_task=spec.name)
    row = {"accuracy": ev.accuracy, "stderr": ev.stderr, "n": ev.n, "no_answer": ev.no_answer,
           "metric": "task.is_correct", "prompt": ev.raw["prompt"],
           "seconds": round(time.perf_counter() - t0, 2)}
    if ev.maj is not None:  # maj@K beside the greedy accuracy
        row.update(maj_k=ev.maj["k"], maj_accuracy=ev.maj["accuracy"], maj_stderr=ev.maj["stderr"],
                   maj_no_answer=ev.maj["no_answer"], maj_temperature=ev.maj["temperature"])
    return row


def _dataset_of(manager, name: str) -> str:
    entry = manager.task_index.get(name)
    cfg = getattr(entry, "cfg", None) or {}
    path = cfg.get("dataset_path")
    if path:
        return f"{path}" + (f" ({cfg['dataset_name']})" if cfg.get("dataset_name") else "")
    return f"the datasets of {name!r}"


def bench_lm_eval(spec: TaskSpec, model_path: str, limit, seed, phases, label: str) -> dict[str, Any]:
    """Evaluate with lm-eval's own task definition and HFLM; a missing dataset is one StarKitError line."""
    import lm_eval

    from .data import hub_offline_mode, hub_reachable

    manager = spec.manager or _lm_eval_task_manager()
    dataset = _dataset_of(manager, spec.lm_eval_name)
    if not hub_offline_mode() and not hub_reachable():
        raise StarKitError(f"lm-eval task {spec.lm_eval_name!r} needs the dataset {dataset} from the Hugging Face "
                           f"hub, which is not reachable (offline?)")
    try:
        manager.load([spec.lm_eval_name])  # downloads/loads the dataset before the model is loaded
    except Exception as exc:
        raise StarKitError(f"lm-eval task {spec.lm_eval_name!r}: cannot load the dataset {dataset} "
                           f"({one_line(exc)})") from None
    from lm_eval.models.huggingface import HFLM

    t0 = time.perf_counter()
    with phases.phase(f"{label} · {spec.name}", limit or 0, "q") as advance:
        try:
            lm = HFLM(pretrained=model_path, trust_remote_code=False)
            results = lm_eval.simple_evaluate(model=lm, tasks=[spec.lm_eval_name], limit=limit, task_manager=manager,
                                              log_samples=False, random_seed=seed, numpy_random_seed=seed,
                                              torch_random_seed=seed, fewshot_random_seed=seed)
        except StarKitError:
            raise
        except Exception as exc:
            raise StarKitError(f"lm-eval task {spec.lm_eval_name!r} on {model_path}: {one_line(exc)}") from None
        n = int((results.get("n-samples") or {}).get(spec.lm_eval_name, {}).get("effective", limit or 0))
        advance(n)
    metrics = results["results"].get(spec.lm_eval_name) or next(iter(results["results"].values()))
    metric, accuracy, stderr = headline_metric(metrics)
    return {"accuracy": accuracy, "stderr": stderr, "n": n, "no_answer": None, "metric": metric,
            "seconds": round(time.perf_counter() - t0, 2)}


def headline_metric(metrics: dict[str, Any]) -> tuple[str, float | None, float | None]:
    """('acc,none', value, stderr) for the preferred metric of an lm-eval result row."""
    numeric = {k: v for k, v in metrics.items()
               if isinstance(v, (int, float)) and "," in k and "_stderr," not in k}
    if not numeric:
        return "", None, None
    ranked = sorted(numeric, key=lambda k: next(
        (i for i, m in enumerate(_METRIC_PREFERENCE) if k.split(",")[0] == m), len(_METRIC_PREFERENCE)))
    key = ranked[0]
    metric, _, filt = key.partition(",")
    stderr = metrics.get(f"{metric}_stderr,{filt}")
    return key, float(numeric[key]), float(stderr) if isinstance(stderr, (int, float)) else None


# -- the command -----------------------------------------------------------------------------------------------
def run_of_checkpoint(model: str) -> tuple[Path, int] | None:
    """(the run directory, the iteration) when ``model`` is a star-kit run's ``iter_NN/checkpoint`` (N > 0, beside
    the run's config.yaml), else None."""
    path = Path(model).expanduser()
    if path.name != "checkpoint" or not (path / "config.json").is_file():
        return None
    it, run_dir = path.resolve().parent, path.resolve().parent.parent
    prefix, _, number = it.name.partition("_")
    if prefix != "iter" or not number.isdigit() or int(number) < 1 or not (run_dir / "config.yaml").is_file():
        return None
    return run_dir, int(number)


def results_table(results: list[dict[str, Any]], targets: list[Target], tasks: list[TaskSpec]):
    from rich.table import Table
    from rich.text import Text

    table = Table(title="star-kit bench (accuracy)")
    table.add_column("model")
    for spec in tasks:
        table.add_column(spec.name, justify="right")
    by_key = {(r["model"], r["task"]): r for r in results}
    for t in targets:
        cells = []
        for spec in tasks:
            r = by_key.get((t.label, spec.name))
            if r is None or r["accuracy"] is None:
                cells.append("—")
                continue
            err = f" ± {100 * r['stderr']:.1f}" if r.get("stderr") is not None else ""
            maj = ""
            if r.get("maj_accuracy") is not None:
                maj_err = f" ± {100 * r['maj_stderr']:.1f}" if r.get("maj_stderr") is not None else ""
                maj = f"\nmaj@{r['maj_k']} {100 * r['maj_accuracy']:.1f}{maj_err}%"
            prompt = {"question": " · question alone", "fewshot": " · few-shot"}.get(r.get("prompt"), "")
            missing = f" · no answer {r['no_answer']}" if r.get("no_answer") else ""
            cells.append(f"{100 * r['accuracy']:.1f}{err}%{maj}\nn={r['n']}{missing}{prompt} · {r['seconds']:.0f} s")
        table.add_row(Text(t.label), *cells)
    return table


def saved_run(saved: dict[str, Any], source: str):
    """A run directory's recorded config as a :class:`~star_kit.config.RunConfig`: its types checked, a key the run
    predates given RunConfig's default, a key RunConfig no longer has dropped; a bad value is one line naming
    ``source``."""
    from .config import RunConfig, predated

    return RunConfig.from_dict({k: v for k, v in predated(saved).items() if k in RunConfig.keys()}, source=source)


def cmd_bench(args: argparse.Namespace) -> int:
    run_bench(args)
    return 0


def run_bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``star-kit bench`` of parsed arguments (the command and :func:`star_kit.bench`): the table on stdout, the
    JSON file with ``--json``; returns the result rows (one per model and task)."""
    from .console import console, err_console
    from .models import resolve_model
    from .progress import Phases
    from .data import rows_count
    from .store import RunLock, check_folder_writable, check_writable, write_json

    targets = [Target(m, m) for m in args.models]
    run_config: dict[str, Any] = {}
    if args.run and len(args.run) > 1:
        raise StarKitError(f"bench: --run takes one run directory, given {len(args.run)} ({', '.join(args.run)}): "
                           f"bench them one at a time (each with its own --json)", 2)
    args.run = args.run[0] if args.run else None
    if args.run:
        from .config import code_from_saved, drop_redacted

        run_config, run_models = run_targets(
            Path(args.run), note=lambda m: err_console.print(f"[yellow]note:[/] {escape(m)}", highlight=False))
        going = RunLock.busy(Path(args.run))
        if going:
            err_console.print("[yellow]note:[/] " + escape(
                f"--run {args.run} is still going ({going}): the iterations it has finished are benched"),
                highlight=False)
        targets = run_models + targets
        # The run directory is data: its redacted credentials come from the flags or the environment again, and
        # its plugins and *_command options are used only when the command line names them again.
        run_config = drop_redacted({k: v for k, v in run_config.items() if k != "trainer_options"})
        run_task = str(run_config.get("task") or "")
        given = {"plugins": args.plugins, "sampler": args.sampler, "sampler_options": dict(args.sampler_options),
                 "task_options": options_for(run_task, dict(args.task_options))}
        run_config = code_from_saved(run_config, given, f"--run {args.run}")
        from .config import check_eval_prompt

        run = saved_run(run_config, f"--run {args.run}: config.yaml")
        check_eval_prompt(run.eval_prompt, f"--run {args.run}: config.yaml: eval_prompt")
        run_config = run.to_dict()
        for t in run_models:  # as the run evaluated it: M0 few-shot, M(n) as it was fine-tuned (--eval-prompt)
            t.fewshot, t.trained_task = run.eval_fewshot(t.iteration or 0), run.task
    if not targets:
        raise StarKitError("bench: pass at least one --model (or --run DIR)", 2)
    if args.eval_prompt in (None, "trained"):  # a run's checkpoint given as --model: prompted as its run did
        from .config import load_config_file

        for t in targets[len(targets) - len(args.models):]:
            found = run_of_checkpoint(t.name)
            if found is None:
                continue
            run_dir, n = found
            try:
                run = saved_run(load_config_file(run_dir / "config.yaml"), f"{run_dir / 'config.yaml'}")
            except StarKitError:
                continue  # not readable as a run's config: benched as any model (few-shot)
            t.fewshot, t.trained_task = run.eval_fewshot(n), run.task
            if not t.fewshot:
                err_console.print("[yellow]note:[/] " + escape(
                    f"--model {t.name} is iteration {n} of the run in {run_dir}: prompted on {run.task} with the "
                    f"question alone, as that run evaluated it, and few-shot on other tasks (--eval-prompt fewshot "
                    f"prompts it few-shot everywhere; the run's task options apply with --run {run_dir})"),
                    highlight=False)
    if args.eval_prompt not in (None, "trained"):
        for t in targets:
            t.fewshot, t.trained_task = args.eval_prompt == "fewshot", None
    task_names = [t.strip() for t in (args.tasks or "").split(",") if t.strip()]
    tasks_of_run = not task_names and bool(run_config.get("task"))
    if tasks_of_run:
        task_names = [str(run_config["task"])]
    if not task_names:
        raise StarKitError("bench: pass --tasks NAME[,NAME...] (see `star-kit plugins`)", 2)
    for key in dict(args.task_options):  # a TASK. prefix that names no benched task would be dropped silently
        prefix = key.split(".", 1)[0] if "." in key else None
        if prefix is not None and prefix not in task_names:
            raise StarKitError(f"--task-opt {key}: {prefix!r} is not one of the benched tasks "
                               f"({', '.join(task_names)})", 2)
    labels = [t.label for t in targets]
    if len(set(labels)) != len(labels):
        raise StarKitError(f"bench: a model is named twice: {labels}", 2)
    if args.limit not in (None, UNSET) and args.limit <= 0:
        raise StarKitError(f"--limit must be positive (or 'all'), got {args.limit}", 2)
    # --limit all: every question, also with --run (whose own eval size is the default)
    limit = args.limit if args.limit is not UNSET else (run_config.get("eval_size") if args.run else None)
    seed = args.seed if args.seed is not None else int(run_config.get("seed", 0) or 0)
    draw_seed = seed if args.seed is not None or run_config.get("eval_seed") is None else int(run_config["eval_seed"])
    from .config import RunConfig, check_eval_samples

    maj_k = args.eval_samples if args.eval_samples is not None else run_config.get("eval_samples",
                                                                                   RunConfig.eval_samples)
    maj_temperature = args.eval_temperature if args.eval_temperature is not None else \
        run_config.get("eval_temperature", RunConfig.eval_temperature)
    check_eval_samples(maj_k, maj_temperature)
    data_dir = args.data_dir or run_config.get("data_dir")
    run_task = str(run_config.get("task") or "")
    task_options = with_run_task_options(dict(args.task_options), run_task, run_config.get("task_options") or {})
    sampler_name = args.sampler or run_config.get("sampler") or "auto"
    sampler_options = {**(run_config.get("sampler_options") or {}), **dict(args.sampler_options)}

    quiet_libraries()
    registry = loaded_registry([*(run_config.get("plugins") or []), *args.plugins])
    if args.run and not args.sampler and run_config.get("sampler") not in (None, "auto"):
        err_console.print("[yellow]note:[/] " + escape(f"sampler {run_config['sampler']!r} as --run {args.run} "
                          "used it (for every model of this bench; --sampler chooses another)"), highlight=False)
    if tasks_of_run and task_names[0] not in registry.names("tasks"):  # not an lm-eval task (and its hub data)
        from .store import RunStore

        used = RunStore(args.run).plugin_used("task", task_names[0])
        raise StarKitError(f"--run {args.run}: config.yaml names task {task_names[0]!r}, which no installed plugin "
                           f"provides (installed: {', '.join(registry.names('tasks'))})"
                           + (f"; {used}" if used else "; a run's task is star-kit's (built in or a plugin's), never "
                              "one of lm-eval's: name what to bench with --tasks"), 2)
    sampler_name = registry.resolve_sampler(sampler_name)
    if maj_k > 1 and any(not n.startswith(LM_EVAL_PREFIX) and n not in registry.names("tasks") for n in task_names):
        err_console.print(f"[yellow]warning:[/] --eval-samples {maj_k}: maj@K is computed for star-kit tasks only, "
                          f"not for lm-eval's own", highlight=False)
    # a run made with --skip-bad-rows drew its questions without the bad rows: bench --run draws them so
    skip = set(task_names) if args.skip_bad_rows else {run_task} if run_config.get("skip_bad_rows") else set()
    specs = resolve_tasks(task_names, registry, data_dir, task_options, limit, draw_seed, skip_bad_rows=skip)
    for spec in specs:
        skipped = getattr(spec.task, "skipped_rows", None) if spec.task is not None else None
        if skipped:
            why = "--skip-bad-rows" if args.skip_bad_rows else "as the run did"
            err_console.print("[yellow]note:[/] " + escape(f"task {spec.name!r}: {rows_count(len(skipped))} "
                                                           f"skipped ({why}); first: {skipped[0]}"),
                              highlight=False)
        if args.limit is UNSET and not args.run and spec.examples and len(spec.examples) > ALL_NOTE_AT:
            err_console.print("[yellow]note:[/] " + escape(  # lm-eval's default too; on a CPU that may be hours
                f"task {spec.name!r}: all its {len(spec.examples)} questions, for each of {len(targets)} "
                f"model{'s' if len(targets) > 1 else ''} (--limit N benches N of them)"), highlight=False)
    # The run's own task, drawn as the run drew it (no --seed, --task-opt or other --data-dir asked for others):
    # the questions it recorded, or none at all (the same ids holding other questions would join wrong rows).
    same_draw = (args.seed is None and not options_for(run_task, dict(args.task_options))
                 and (args.data_dir is None or args.data_dir == run_config.get("data_dir")))
    if args.run and same_draw:
        from .loop import questions_changed, recorded_questions_problem

        fewer = limit is not None and (run_config.get("eval_size") is None or limit < run_config["eval_size"])
        for spec in specs:
            changed = spec.name == run_task and recorded_questions_problem(Path(args.run), spec.task, None,
                                                                           spec.examples, subset=fewer)
            if changed:
                raise StarKitError(f"--run {args.run}: task {spec.name!r}: {questions_changed(changed)}", 2)
    if any(s.kind == "star-kit" for s in specs):  # unknown sampler or options: exit 2 before loading anything
        registry.check_options("samplers", sampler_name, targets[0].name, **sampler_options)
    if args.json:  # a path that cannot be written fails now, in one line, not after the whole bench has run
        check_writable(Path(args.json), "--json")
    if args.out:  # likewise a folder for the samples
        check_folder_writable(Path(args.out), "--out")
    for t in targets:
        t.path = resolve_model(t.name)

    folders = model_folders([t.label for t in targets])
    keep = Path(args.out) if args.out else None
    scratch = tempfile.TemporaryDirectory(prefix="star-kit-bench-") if keep is None else None
    registry.samples_discarded = scratch is not None
    root = keep or Path(scratch.name)
    results: list[dict[str, Any]] = []
    sampler = None
    try:
        with Phases(err_console, enabled=args.progress) as phases:
            for t in targets:
                for spec in specs:
                    if spec.kind == "star-kit":
                        if sampler is None:
                            sampler = registry.create("samplers", sampler_name, t.path, **sampler_options)
                        elif sampler.model != t.path:
                            with registry.guard("samplers", sampler_name):
                                sampler.load(t.path)
                        out_dir = root / folders[t.label] / _slug(spec.name)
                        row = bench_star_kit(spec, sampler, sampler_name, out_dir, registry, phases, t.label,
                                             maj_k, maj_temperature, seed, t.fewshot_on(spec.name))
                    else:
                        row = bench_lm_eval(spec, t.path, limit, seed, phases, t.label)
                    result = {"model": t.label, "model_path": t.path, "task": spec.name, "source": spec.kind, **row}
                    if t.iteration is not None:
                        result["iteration"], result["run"] = t.iteration, str(args.run)
                    results.append(result)
                    if args.json:  # rewritten after each pair: a long bench that dies keeps what it measured
                        write_json(Path(args.json), results)
                        args.json_written = True
    finally:
        if sampler is not None:
            sampler.close()
        if scratch is not None:
            scratch.cleanup()
    console.print(results_table(results, targets, specs))
    if args.json:
        console.print(f"results: {args.json}", highlight=False, markup=False)
    if keep is not None:
        console.print(f"prompts and samples: {keep}/<model>/<task>/", highlight=False, markup=False)
    return results
