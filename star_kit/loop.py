"""The STaR loop (Zelikman et al. 2022, Algorithm 1), one function per step.

    for n in 1..N:
        1. sample      rationales from M(n-1) with the few-shot prompt, for every training question
        2. filter      keep those whose extracted answer is correct (and whose rationale the task's verifier
                       accepts: its steps hold, it does not skip the reasoning)
        3. rationalize each failure: prompt again with the gold answer as a hint; keep it if it now reaches the
                       answer, and train on it WITHOUT the hint
        4. fine-tune   the base model M0 (not M(n-1)) on everything kept, for 40·1.2^(n-1) steps
        5. evaluate    M(n) with lm-eval on the held-out split, prompted as it was fine-tuned (the question
                       alone; M0, the base model, with the few-shot prompt; ``--eval-prompt fewshot``: all few-shot)
        6. repeat      until n = N or accuracy has not improved for `patience` iterations

Every step writes its artifact atomically into the run directory; a resumed run skips finished steps.

Steps 5 (of n) and 1 (of n+1) run on the same model M(n). When n+1 is certain to run whatever M(n) scores and its
sampling is greedy with the evaluation's parameters, its prompts ride along with the evaluation: one batched
generate call decodes both sets, and iteration n+1 reads its samples back like a resumed step (``--merge-passes``).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .config import RESERVED_OPTIONS, RunConfig, steps_for
from .data import data_root, rows_count
from .errors import PluginError, StarKitError, UnknownNameError
from .evaluation import RideAlong, evaluate, greedy_params, prompt_name, same_generation
from .labels import eval_label_counts, format_counts, label_counts
from .models import resolve_model
from .progress import Phases
from .protocols import Sampler, Task, Verifier
from .records import Example, GenerationParams, IterationResult, Sample, TrainExample
from .registry import Registry
from .store import AppendLog, RunLock, RunStore, read_json, read_jsonl, write_json, write_jsonl, write_yaml

Log = Callable[[str], None]
AHEAD_MARKER = "sampled_ahead.json"  # in iter_NN/: its samples.jsonl came from iteration NN-1's evaluation pass


# -- the steps -----------------------------------------------------------------------------------------------
def sample_rationales(
    task: Task,
    sampler: Sampler,
    extract: Callable[[str], str | None],
    examples: Sequence[Example],
    params: GenerationParams,
    hint: bool,
    advance=None,
    verify: Verifier | None = None,
) -> list[Sample]:
    """Steps 1 and 3: prompt the model (with or without the hint), grade every completion and, when it is
    right, have ``verify`` check its rationale."""
    prompts = rationale_prompts(task, examples, hint)
    completions = sampler.generate(prompts, params, advance) if prompts else []
    return grade_rationales(task, extract, examples, completions, hint, verify)


def rationale_prompts(task: Task, examples: Sequence[Example], hint: bool) -> list[str]:
    """The few-shot prompts of steps 1 (``hint`` False) and 3 (the gold answer as a hint), one per example."""
    return [task.prompt(e, hint=hint) for e in examples]


def grade_rationales(
    task: Task,
    extract: Callable[[str], str | None],
    examples: Sequence[Example],
    completions: Sequence[Sequence[str]],
    hint: bool,
    verify: Verifier | None = None,
) -> list[Sample]:
    """Steps 2 and 3's check: each completion of each example graded (extracted answer vs gold) and, when
    right, its rationale checked by ``verify``."""
    samples = []
    for example, outs in zip(examples, completions):
        for completion in outs:
            predicted = extract(completion)
            correct = task.is_correct(predicted, example.answer)
            checked = correct and verify is not None
            rejected = verify(example, task.rationale_of(completion)) if checked else None
            samples.append(Sample(
                example_id=example.id,
                question=example.question,
                completion=completion,
                predicted=predicted,
                gold=example.answer,
                correct=correct,
                hinted=hint,
                verified=(rejected is None) if checked else None,
                rejected=rejected,
            ))
    return samples


def build_training_set(
    task: Task,
    examples: Sequence[Example],
    kept: Sequence[Sample],
    rationalized: Sequence[Sample],
    fewshot: bool = False,
) -> tuple[list[TrainExample], int]:
    """The SFT set: the hint-free prompt (the question alone unless ``fewshot``) + the kept rationale and the
    gold answer.

    Rationalized rationales are trained *as if the model found them itself*: the prompt is built without the
    hint, and a rationale that quotes the hint is dropped (returned count). Identical pairs are deduplicated.
    A task with the optional ``augment(example, rationale)`` hook adds the copies it returns after each pair
    (:func:`training_pairs`).
    """
    pairs, dropped = training_pairs(task, examples, kept, rationalized, fewshot)
    return [pair for _, pair in pairs], dropped


def training_pairs(
    task: Task,
    examples: Sequence[Example],
    kept: Sequence[Sample],
    rationalized: Sequence[Sample],
    fewshot: bool = False,
    counts: dict[str, int] | None = None,
) -> tuple[list[tuple[Example, TrainExample]], int]:
    """:func:`build_training_set` with the question each pair was built from: the example itself, or the copy
    the task's ``augment`` returned (its answer is what the pair teaches; ``train_labels`` counts it).

    ``augment(example, rationale) -> [(example', rationale'), ...]`` (optional, :class:`star_kit.protocols.Task`)
    gives extra training copies of one kept pair; each is trained as ``prompt(example')`` +
    ``target(rationale', example'.answer)``, after the original pair, with the original's ``example_id`` and
    ``source``. Identical pairs (the same prompt and completion: a question drawn twice, or K samples that agree)
    are trained once; ``counts["merged"]``, when ``counts`` is given, says how many were merged.
    """
    by_id = {e.id: e for e in examples}
    augment = getattr(task, "augment", None)
    seen, out, dropped = set(), [], 0
    for source, samples in (("sampled", kept), ("rationalized", rationalized)):
        for s in samples:
            example = by_id[s.example_id]
            rationale = task.rationale_of(s.completion)
            if s.hinted and task.quotes_hint(example, s.completion):
                dropped += 1
                continue
            variants = [(example, rationale)]
            if callable(augment):
                variants += _checked_copies(task, augment(example, rationale))
            for ex, rat in variants:
                pair = TrainExample(example.id, task.prompt(ex, hint=False, fewshot=fewshot),
                                    task.target(rat, ex.answer), source)
                key = (pair.prompt, pair.completion)
                if key not in seen:
                    seen.add(key)
                    out.append((ex, pair))
                elif counts is not None:
                    counts["merged"] = counts.get("merged", 0) + 1
    return out, dropped


def _checked_copies(task: Task, copies: object) -> list[tuple[Example, str]]:
    """What a task's ``augment`` returned, checked: a list of (Example, rationale str) pairs."""
    if copies is None:
        return []
    ok = isinstance(copies, (list, tuple)) and all(
        isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], Example) and isinstance(c[1], str) for c in copies)
    if not ok:
        raise StarKitError(f"task {getattr(task, 'name', '?')!r}: augment() must return a list of (Example, "
                           f"rationale) pairs, got {type(copies).__name__}: {' '.join(repr(copies)[:80].split())}")
    return list(copies)


def should_stop(history: Sequence[IterationResult], patience: int) -> bool:
    """True when none of the last ``patience`` accuracies beat the best one before them."""
    accs = [r.accuracy for r in history if r.accuracy is not None]
    if patience <= 0 or len(accs) <= patience:
        return False
    return max(accs[-patience:]) <= max(accs[:-patience])


@dataclass
class SampleAhead:
    """Iteration ``iteration``'s step-1 prompts (its training questions ``examples``), riding along with the
    previous iteration's evaluation."""

    iteration: int
    examples: Sequence[Example]
    ride: RideAlong


def recorded_questions_problem(root: Path, task: Task, train_set: Sequence[Example] | None,
                               eval_set: Sequence[Example], subset: bool = False) -> str | None:
    """Whether the questions drawn now are those a run directory recorded: each held-out question of every
    ``iter_NN/eval_docs.jsonl`` (its id, gold answer and question; in a file written before the question was
    recorded there, its prompt against ``task``'s prompt for it) and, with ``train_set``, each training question of
    ``samples.jsonl`` / ``rationalized.jsonl``. A task whose data or code changed since draws others under the same
    ids: the finished iterations' numbers would then be compared with numbers on other questions. None when they
    match, else the first difference, as a phrase naming the file. ``subset``: the sets drawn now may be smaller
    (``bench --run --limit``): recorded questions they do not hold are not compared."""
    now = {"eval": {e.id: e for e in eval_set}, "train": {e.id: e for e in train_set or ()}}
    store = RunStore(root)
    for d in map(store.iter_dir, store.iterations()):
        files = [("eval", d / "eval_docs.jsonl")]
        if train_set is not None:
            files += [("train", d / "samples.jsonl"), ("train", d / "rationalized.jsonl")]
        for split, path in files:
            if not path.is_file():
                continue
            for row in read_jsonl(path, skip_bad=True):
                ident = row.get("id", row.get("example_id"))
                if not isinstance(ident, str):
                    return f"{path} holds a {split} question whose id is {str(ident)[:40]!r}, not a string"
                example = now[split].get(ident)
                if example is None and subset:
                    continue
                if example is None:
                    return f"{path} holds {split} question {ident!r}, which the task no longer draws"
                gold = row.get("answer" if split == "eval" else "gold")
                if split == "eval" and "question" not in row:  # written before eval_docs.jsonl held the question
                    prompts = (task.prompt(example, fewshot=True), task.prompt(example, fewshot=False))
                    if row.get("prompt") not in prompts or gold != example.answer:
                        return (f"{path}: the recorded prompt of eval question {ident!r} (answer {gold!r}) is not the "
                                f"task's prompt for it now (answer {example.answer!r})")
                elif row.get("question") != example.question or gold != example.answer:
                    shown = str(row.get("question")).strip().splitlines()[0][:60] if row.get("question") else None
                    return (f"{path}: {split} question {ident!r} was {shown!r} (answer {gold!r}), now "
                            f"{example.question.strip().splitlines()[0][:60]!r} (answer {example.answer!r})")
    return None


def questions_changed(difference: str) -> str:
    """The one wording of a refusal for :func:`recorded_questions_problem`'s ``difference``."""
    return (f"the task now draws other questions than the run recorded ({difference}): its data or code changed "
            f"since, so numbers now would be on other questions than the run's")


def read_samples(path: Path, partial: bool = False) -> list[Sample]:
    """``samples.jsonl`` / ``rationalized.jsonl`` (or their ``.partial`` work log) read back for a resume; a row
    that is not a Sample (edited: a key renamed or missing) stops with one line naming the file and row."""
    out = []
    for i, row in enumerate(read_jsonl(path, partial=partial), 1):
        try:
            out.append(Sample(**row))
        except TypeError as exc:
            raise StarKitError(f"{path}: row {i}: {str(exc).replace('Sample.__init__() ', '')}; star-kit writes "
                               "this file whole, so it was edited or damaged", 2) from exc
    return out


class Timings(dict):
    """Seconds per phase of one iteration, saved on every update so a resumed iteration keeps the phases it
    does not redo."""

    def __init__(self, path: Path) -> None:
        super().__init__(read_json(path) if path.exists() else {})
        self.path = path

    def __setitem__(self, phase: str, value: float) -> None:
        super().__setitem__(phase, value)
        write_json(self.path, dict(self))


def checked_examples(where: str, split: str, examples: Any, asked: int | None, log: Log) -> list[Example]:
    """A task's ``examples(split, n, seed)``, checked before any work: a list of :class:`Example` with string ids
    that are unique (they key samples, resume and the report) and a non-empty string answer; anything else is one
    line naming the task's plugin and the first bad item, and so is more examples than asked (the protocol's "the
    first ``n``": a run would train or evaluate on more than its config says). Fewer than asked is a note."""
    if not isinstance(examples, (list, tuple)):
        raise PluginError(f"{where} returned {type(examples).__name__} from examples({split!r}, ...), not a list of "
                          f"star_kit.records.Example")
    if asked is not None and len(examples) > asked:
        raise PluginError(f"{where} returned {len(examples)} examples from examples({split!r}, {asked}, ...), more "
                          f"than the {asked} asked for (see star_kit.protocols.Task.examples)")
    seen: set[str] = set()
    for i, ex in enumerate(examples):
        if not isinstance(ex, Example):
            raise PluginError(f"{where}: examples({split!r}, ...) item {i} is a {type(ex).__name__}, not a "
                              f"star_kit.records.Example")
        if not isinstance(ex.id, str) or not ex.id:
            raise PluginError(f"{where}: examples({split!r}, ...) item {i} has id {ex.id!r}: ids are non-empty "
                              f"strings")
        if ex.id in seen:
            raise PluginError(f"{where}: examples({split!r}, ...) repeats the id {ex.id!r} (item {i}): ids key "
                              f"the samples, resume and the report, so each must be unique")
        seen.add(ex.id)
        if not isinstance(ex.answer, str) or not ex.answer.strip():
            raise PluginError(f"{where}: example {ex.id!r} ({split}) has the gold answer {ex.answer!r}: a "
                              f"non-empty string is needed to grade against")
        if not isinstance(ex.question, str):
            raise PluginError(f"{where}: example {ex.id!r} ({split}) has a question of type "
                              f"{type(ex.question).__name__}, not a string")
    if asked is not None and 0 < len(examples) < asked:
        log(f"note: {where} gave {len(examples)} {split} examples of the {asked} asked for (all it has)")
    return list(examples)


def check_splits_apart(where: str, train_set: Sequence[Example], eval_set: Sequence[Example], log: Log) -> None:
    """The held-out questions are not training questions (``Task.examples``: the splits never share a problem):
    an example in both splits (the same id and question) is one line naming the task's plugin (the accuracy would
    count what was trained on); the same question text under other ids (a dataset's own duplicates) is a note with
    the count."""
    train = {(ex.id, ex.question) for ex in train_set}
    shared = [ex.id for ex in eval_set if (ex.id, ex.question) in train]
    if shared:
        raise PluginError(f"{where}: examples('eval', ...) returned {len(shared)} of the training examples (first "
                          f"{shared[0]!r}, same id and question): the held-out split must not share a problem with "
                          f"'train'")
    train_questions = {question for _, question in train}
    same = sum(1 for ex in eval_set if ex.question in train_questions)
    if same:
        log(f"note: {where}: {same} of {len(eval_set)} held-out questions are also training questions (same text, "
            f"other ids)")


_MISSING = object()


def _compared(options: dict[str, Any]) -> dict[str, Any]:
    """A plugin's options as a resume compares them: no credential, command or address (the user's, now)."""
    from .config import is_environment_key, without_secrets

    return {k: v for k, v in without_secrets(options).items() if not is_environment_key(k)}


def _as_recorded(value: Any, where: str) -> Any:
    """``value`` (options, or what they decide) as outcome.json holds it: in JSON's types (a tuple is a list),
    redacted (a credential that a file an option names might hold is never written, nor compared). A value JSON
    cannot hold is one line naming the plugin ``where``."""
    import json

    from .config import redact

    try:
        return redact(json.loads(json.dumps(value, allow_nan=True)))
    except (TypeError, ValueError) as exc:
        raise PluginError(f"{where}: its options or outcome_options hold a value outcome.json cannot record "
                          f"({exc})") from exc


def _shown_value(value: Any) -> str:
    """An option's value in a resume's message: its repr, 'unset' where config.yaml or the command has none."""
    return "unset" if value is _MISSING else repr(value)


# The plugin options config.yaml records with their factory's defaults (one that a later release changes does not
# change what a run does on resume or in bench --run): config key -> (plugin kind, the config key naming the plugin,
# the factory's parameters star-kit passes itself). Not the sampler's: ``--sampler auto`` may pick another sampler
# on another machine, whose options differ.
RECORDED_DEFAULTS = {"task_options": ("tasks", "task", tuple(RESERVED_OPTIONS)),
                     "trainer_options": ("trainers", "trainer", ())}


def with_option_defaults(registry: Registry, config: RunConfig) -> dict[str, dict[str, Any]]:
    """Complete ``config.task_options`` and ``config.trainer_options`` with their factories' option defaults, as
    config.yaml records them (what the task did, and what trained: ``learning_rate``, the batch, the schedule ...);
    returns the defaults by config key."""
    recorded = {}
    for key, (kind, plugin, exclude) in RECORDED_DEFAULTS.items():
        recorded[key] = registry.option_defaults(kind, getattr(config, plugin), exclude=exclude)
        setattr(config, key, {**recorded[key], **getattr(config, key)})
    return recorded


# The options of each plugin a run names: config key -> (plugin kind, the config key naming the plugin).
PLUGIN_OPTIONS = {"task_options": ("tasks", "task"), "trainer_options": ("trainers", "trainer"),
                  "sampler_options": ("samplers", "sampler")}


# -- the run -------------------------------------------------------------------------------------------------
@dataclass
class StarRun:
    """Everything a run needs, built from a config and a plugin registry."""

    config: RunConfig
    registry: Registry
    phases: Phases
    log: Log = print
    on_record: Callable[[list[IterationResult]], None] | None = None  # e.g. a live summary table
    store: RunStore = field(init=False)
    lock: RunLock | None = field(default=None, init=False)  # held from prepare() to the end of run()
    created_root: bool = field(default=False, init=False)  # prepare() made the run directory (removed if left empty)
    option_defaults: dict[str, dict[str, Any]] = field(default_factory=dict, init=False)  # with_option_defaults's
    reads_data: bool = field(default=False, init=False)  # the task reads a data folder (build_task says)

    def __post_init__(self) -> None:
        self.store = RunStore(Path(self.config.out))

    # Bookkeeping -------------------------------------------------------------------------------------------
    def prepare(self, resume: bool, recorded: Callable[[], str | None] | None = None) -> None:
        """Lock the run directory (one run at a time), then write ``config.yaml`` with credentials redacted, or on
        resume check that it matches (a mismatch names the key; a redacted credential never counts) and that
        ``recorded()`` finds no recorded question changed (:func:`recorded_questions_problem`) before writing it."""
        config, store = self.config, self.store
        self.created_root = not store.root.exists()
        try:
            store.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StarKitError(f"cannot create run directory {store.root}: {exc.strerror or exc}", 2) from exc
        self.lock = RunLock(store.root).acquire()
        self.check_out(resume, locked=True)  # again, under the lock: another start may have filled it meanwhile
        if store.config_path.exists():
            self.compare_saved_config()
            changed = recorded() if recorded is not None else None
            if changed:  # a refused resume writes nothing
                raise StarKitError(f"--resume {store.root}: {questions_changed(changed)}; start a new run (or "
                                   f"restore the data and version it was made with)", 2)
        outcome = self.outcomes(config.to_dict())  # plugin code: before anything is written
        write_yaml(store.config_path, config.public_dict())
        write_json(store.outcome_path, outcome)

    def check_out(self, resume: bool, locked: bool = False) -> None:
        """That ``--out`` can hold this run, without writing anything (the run, before it reads data and again
        under its lock, and ``--print-config``): a folder that can be written, or nothing yet; not in use by a live
        run (unless ``locked``: this one holds it); with ``--resume`` one holding config.yaml; else one holding no
        run and nothing else (a fresh run reads back what its directory holds, iter_NN/ and metrics.jsonl: in one
        that another run or the user filled, it would report their numbers as its own, or write over their
        files)."""
        from .config import nothing_to_resume
        from .store import check_folder_writable

        store = self.store
        check_folder_writable(store.root, "--out")
        holder = None if locked else RunLock.busy(store.root)
        if holder:
            raise StarKitError(RunLock.in_use(store.root, holder), 2)
        if resume and not store.config_path.is_file():
            raise nothing_to_resume(store.root)
        if store.config_path.exists() and not resume:
            raise StarKitError(f"{store.root} already holds a run: pass --resume {store.root} or another --out", 2)
        if not resume and store.root.is_dir():
            found = sorted(p.name for p in store.root.iterdir() if not p.name.startswith("."))  # .lock, .gitkeep
            if found:
                shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
                raise StarKitError(f"--out {store.root} is not empty ({shown}) and holds no star-kit run (no "
                                   f"config.yaml): choose a new or empty directory", 2)

    def data_from_environment(self, resume: bool) -> None:
        """A fresh run of a task that reads data, given its folder by ``$STAR_KIT_DATA_DIR``: config.yaml records
        the folder (absolute) as ``--data-dir`` would, so that a resume in a shell without the variable reads the
        same files (``--print-config`` prints it so too). A resumed run keeps what it recorded."""
        config = self.config
        if not resume and not config.data_dir and self.reads_data and data_root(None) is not None:
            config.data_dir = str(data_root(None).resolve())

    def draw(self, task: Task) -> tuple[list[Example], list[Example]]:
        """The training and held-out questions, checked (ids, sizes, the two splits apart): one line on a bad
        one, before any model loads."""
        config = self.config
        where = self.registry.where("tasks", config.task)
        train_set = checked_examples(where, "train", task.examples("train", config.train_size, config.seed),
                                     config.train_size, self.log)
        eval_set = checked_examples(where, "eval", task.examples("eval", config.eval_size, config.eval_draw_seed),
                                    config.eval_size, self.log)
        if not train_set or not eval_set:
            raise PluginError(f"{where} returned no examples (train {len(train_set)}, eval {len(eval_set)})")
        check_splits_apart(where, train_set, eval_set, self.log)
        # the prompts the run will build (sampling, rationalization, fine-tuning), once each, so that a task whose
        # prompt() breaks its contract is named before a model loads, not after (the guard checks what it returns)
        example = train_set[0]
        task.prompt(example)
        task.prompt(example, fewshot=False)
        if config.rationalize:
            task.prompt(example, hint=True)
        return train_set, eval_set

    def outcomes(self, data: dict[str, Any]) -> dict[str, Any]:
        """What outcome.json records beside config.yaml: the sampler this machine runs, and for each plugin's
        options in ``data`` (config keys) those options as a resume compares them (less credentials, commands and
        addresses) with what they decide (:meth:`Registry.outcome`), so that a resume with the same options
        compares what they decided then (what a file an option names held, the GPUs accelerate counted), not what
        they decide on its machine now."""
        record: dict[str, Any] = {"sampler": self.sampler_name}
        for key, (kind, _) in PLUGIN_OPTIONS.items():
            if isinstance(data.get(key), dict):
                options = _compared(data[key])
                where = self.registry.where(kind, self.plugin_name(key))
                record[key] = {"options": _as_recorded(options, where),
                               "outcome": _as_recorded(self.registry.outcome(kind, self.plugin_name(key), options),
                                                       where)}
        return record

    def compare_saved_config(self) -> None:
        """On resume: the run's config.yaml against this config, key by key (a mismatch is one line naming the key;
        a redacted credential, a command or an address never counts; the trainer's options may change until an
        iteration has trained). ``prepare`` runs it, and ``--print-config --resume`` too."""
        from .config import changed_key, load_config_file, local_paths_absolute, predated, redact, without_secrets

        self.store.check_entries(f"--resume {self.store.root}")

        config, store = self.config, self.store
        # a key the run predates: what it did then; relative paths of an older run: from here, as it read them
        saved = local_paths_absolute(predated(load_config_file(store.config_path)))
        for key, defaults in self.option_defaults.items():
            if isinstance(saved.get(key), dict):  # a run that recorded only the options it was given
                saved[key] = {**defaults, **saved[key]}
        saved = self.declared(saved)  # an option recorded as 3 that its plugin gets as "3" is the same
        # Before any fine-tune has finished, the trainer's options have made nothing yet: a run whose trainer
        # refused an option after the sampling goes on with the option mended, its samples kept.
        # Trained: a recorded iteration that trained (a copy without its checkpoint folders records them too),
        # or an iteration past the baseline that holds a checkpoint or an evaluation.
        trained = any(isinstance(r.get("steps"), int) and r["steps"] > 0 or r.get("checkpoint")
                      for r in store.metrics() if isinstance(r.get("iteration"), int) and r["iteration"] > 0) \
            or any(store.has(n, "checkpoint") or store.has(n, "eval.json") for n in store.iterations() if n > 0)
        recorded = store.read_outcome()  # what the options decided when config.yaml was written ({}: an older run)
        for key, value in config.to_dict().items():
            if key in RunConfig.RESUMABLE or key not in saved:  # a key newer than the run: nothing to compare
                continue
            if key in PLUGIN_OPTIONS and isinstance(saved[key], dict) and isinstance(value, dict):
                self._compare_options(key, _compared(saved[key]), _compared(value), recorded.get(key), saved,
                                      trained)
                continue
            old, new = without_secrets(saved[key]), without_secrets(value)  # a redacted credential never counts
            if key == "sampler" and self.registry.auto_named(old, new):
                continue
            if old != new:
                raise changed_key(store.root, key, _shown_value(redact(saved.get(key))),
                                  _shown_value(config.public_dict()[key]))
        used = recorded.get("sampler")
        if isinstance(used, str) and used != self.sampler_name:  # auto here, or named: another engine from here on
            self.log(f"note: --resume {store.root}: the run sampled with {used!r} (outcome.json); it goes on with "
                     f"{self.sampler_name!r} (--sampler {config.sampler}): the same model, another engine's rounding")

    def _compare_options(self, key: str, old: dict, new: dict, recorded: Any, saved: dict, trained: bool) -> None:
        """A plugin's options on resume (``old``: config.yaml's, ``new``: now's, both as compared): what they
        decide (:meth:`Registry.outcome`) must be what it was, as outcome.json recorded it where it did (what a
        file an option names held then, not now); options that only place the work may change, with a note."""
        from .config import changed_key, redact

        store = self.store
        kind, name = PLUGIN_OPTIONS[key][0], self.plugin_name(key)
        where = self.registry.where(kind, name)
        then, now = (_as_recorded(self.registry.outcome(kind, name, d), where) for d in (old, new))
        # what the run recorded it decided, where config.yaml holds the options it recorded it for (a run made
        # before outcome.json, or one whose options were mended since: what they decide here)
        if isinstance(recorded, dict) and isinstance(recorded.get("outcome"), dict) \
                and recorded.get("options") == _as_recorded(old, where):
            then = {k: recorded["outcome"][k] if k in recorded["outcome"] else v for k, v in then.items()}
        differ = [k for k in dict.fromkeys([*then, *now]) if then.get(k, _MISSING) != now.get(k, _MISSING)]
        if old == new and not differ:
            return
        if key == "trainer_options" and not trained:
            self.log(f"note: {key} differs from config.yaml's; no iteration has been trained yet, so the new value "
                     f"is used (and recorded)")
            return
        moved = [k for k in dict.fromkeys([*old, *new]) if old.get(k, _MISSING) != new.get(k, _MISSING)]
        shown = ", ".join(f"{k} {_shown_value(redact(old.get(k, _MISSING)))} -> "
                          f"{_shown_value(redact(new.get(k, _MISSING)))}" for k in moved)
        if not differ:
            self.log(f"note: --resume {store.root}: {key} changed ({shown}): for {where} they only place the work "
                     f"(what it computes is the same); going on with them")
            return
        given = [k for k in differ if k in moved]
        if given:  # an option given another value: named as any config key is
            sub = given[0]
            raise changed_key(store.root, f"{key}.{sub}", _shown_value(redact(saved.get(key) or {}).get(sub, _MISSING)),
                              _shown_value(self.config.public_dict()[key].get(sub, _MISSING)))
        sub = differ[0]
        was, is_now = (_shown_value(d.get(sub, _MISSING)) for d in (then, now))
        if moved:  # not an option: what the plugin makes of several (the trainer's global batch)
            raise StarKitError(f"--resume {store.root}: {key} {shown} changes {sub}: {was} when the run was made, "
                               f"{is_now} now", 2)
        raise StarKitError(f"--resume {store.root}: {key}: {sub} is {is_now} here, {was} when the run was made "
                           f"with the same options (outcome.json): a file an option names has changed since, or "
                           f"this machine decides it otherwise (the GPUs accelerate or an in-process trainer counts, "
                           f"accelerate's default configuration file); give the "
                           f"option that keeps it (e.g. num_processes), or start a new run", 2)

    def run(self, resume: bool = False) -> list[IterationResult]:
        """The run; the run directory's lock (taken in ``prepare``) is held until it ends, however it ends."""
        try:
            return self._run(resume)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            if self.created_root:  # a start that failed before writing anything leaves no empty folder behind
                try:
                    self.store.root.rmdir()  # only ever an empty one
                except OSError:
                    pass

    def check(self) -> tuple[Task, Any]:
        """Everything that can be checked without reading data or loading a model (``_run`` starts with it;
        ``--print-config`` runs it too): the config's values, the plugins it names, the task and the trainer built
        from their options, the sampler's options against its factory. Returns the task and the trainer. A name
        that nothing provides, in a run directory whose evaluation recorded where it came from (a plugin since
        uninstalled), says so."""
        try:
            return self._check()
        except UnknownNameError as exc:
            hint = self.store.plugin_used(exc.kind, exc.name) if self.store.config_path.is_file() else None
            if hint is None:
                raise
            raise UnknownNameError(exc.kind, exc.name, exc.available, hint) from None

    def _check(self) -> tuple[Task, Any]:
        config, registry = self.config, self.registry
        config.validate()
        if config.data_dir:  # the folder (not its files) is checked here: --print-config refuses a wrong one too
            data_root(config.data_dir)
        self.sampler_name = registry.resolve_sampler(config.sampler)  # auto: vllm on a GPU where installed, else hf
        registry.get("samplers", self.sampler_name)  # unknown names fail before any work is done
        registry.get("trainers", config.trainer)
        for key, value in self.declared(config.to_dict()).items():  # as the plugins get them, so config.yaml too
            if key.endswith("_options"):
                setattr(config, key, value)
        with self.options_source("task_options"):
            task = self.build_task()
        self.option_defaults = with_option_defaults(registry, config)
        with self.options_source("trainer_options"):
            trainer = registry.guarded("trainers", config.trainer,
                                       registry.create("trainers", config.trainer, **config.trainer_options))
        with self.options_source("sampler_options"):
            try:
                registry.check_options("samplers", self.sampler_name, config.model, **config.sampler_options)
            except PluginError as exc:
                if config.sampler != "auto" or self.sampler_name not in registry.AUTO_SAMPLERS:
                    raise
                other = next(n for n in registry.AUTO_SAMPLERS if n != self.sampler_name)
                raise PluginError(f"{exc} (--sampler auto picked {self.sampler_name} on this machine; for "
                                  f"{other}'s options, name it: --sampler {other})", exc.exit_code) from exc
        return task, trainer

    def declared(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data``'s ``*_options`` as the task, trainer and sampler get them (:meth:`Registry.declared_options`:
        an integer given for an option declared as a string is its text)."""
        out = dict(data)
        for key, (kind, _) in PLUGIN_OPTIONS.items():
            if isinstance(out.get(key), dict):
                out[key] = self.registry.declared_options(kind, self.plugin_name(key), out[key])
        return out

    def plugin_name(self, key: str) -> str:
        """The name of the plugin whose options config key ``key`` holds (the sampler as resolved here)."""
        plugin = PLUGIN_OPTIONS[key][1]
        return self.sampler_name if plugin == "sampler" else getattr(self.config, plugin)

    @contextmanager
    def options_source(self, key: str):
        """A plugin's refusal of its options names the config file they came from (``my.yaml: key
        'task_options': task 'arithmetic' ... has no option 'digitz'``); options given as flags are named by the
        plugin's line alone, as before."""
        try:
            yield
        except PluginError as exc:
            source = getattr(self.config, "origin", {}).get(key)
            if not source:
                raise
            raise PluginError(f"{source}: key {key!r}: {exc}", exc.exit_code) from exc

    def _run(self, resume: bool) -> list[IterationResult]:
        """Start-up order: everything that can fail is built and checked before anything is written (the task
        and its examples, the trainer, the sampler's options, the model's name), then the run directory is locked
        and ``config.yaml`` written, and only then is a model loaded (the sampler). A failed start leaves no
        ``config.yaml`` behind, so the same command can simply be run again."""
        config, registry = self.config, self.registry
        task, trainer = self.check()
        self.check_out(resume)  # before any data is read (a hub download): a bad --out is refused at once
        self.data_from_environment(resume)
        train_set, eval_set = self.draw(task)
        base_model = resolve_model(config.model)
        fresh = not self.store.config_path.exists()
        self.prepare(resume, lambda: recorded_questions_problem(self.store.root, task, train_set, eval_set))
        self.log(f"task {config.task}: {len(train_set)} training and {len(eval_set)} evaluation examples; "
                 f"model {config.model} -> {base_model}; sampler {self.sampler_name}")
        if config.iterations and not config.eval_fewshot(1):
            self.log("evaluation: M0 with the few-shot prompt, M(n) with the question alone, as it is fine-tuned "
                     "(to prompt every model few-shot instead, run with --eval-prompt fewshot)")
        self.skipped_rows = list(getattr(task, "skipped_rows", None) or [])
        if self.skipped_rows:
            write_json(self.store.root / "skipped_rows.json", self.skipped_rows)
            self.log(f"skipped {rows_count(len(self.skipped_rows))} (listed in skipped_rows.json); "
                     f"first: {self.skipped_rows[0]}")
        history = self.history()
        if not fresh:
            self.log(self.resume_note(history))
        done = {r.iteration for r in history}
        # M(n) of the last finished iteration: its checkpoint, or M0 when it had nothing to train on (as an
        # uninterrupted run goes on from it; not an earlier iteration's checkpoint)
        last = max(history, key=lambda r: r.iteration) if history else None
        if last is not None and last.checkpoint and not self.store.has(last.iteration, "checkpoint"):
            raise StarKitError(f"--resume {self.store.root}: metrics.jsonl records iteration {last.iteration}'s "
                               f"checkpoint, but {last.checkpoint} holds no model (no config.json or "
                               f"adapter_config.json): put the folder back to go on, or start a new run", 2)
        current = (last.checkpoint if last is not None else None) or base_model
        try:
            sampler: Sampler = registry.create("samplers", self.sampler_name, current, **config.sampler_options)
        except BaseException as exc:
            if fresh and not history:  # nothing was computed: the next try starts afresh, not as a resume
                self.store.outcome_path.unlink(missing_ok=True)
                self.store.config_path.unlink(missing_ok=True)
                (self.store.root / "skipped_rows.json").unlink(missing_ok=True)
            if isinstance(exc, PluginError) and last is not None and current == last.checkpoint:
                # the run's own checkpoint does not load (a file cut by a full disk or an interrupted copy)
                raise PluginError(f"{exc} (loading iteration {last.iteration}'s checkpoint {current}: a file there "
                                  f"may be damaged)", exc.exit_code) from exc
            raise
        try:
            if config.baseline and 0 not in done:
                history.append(self.baseline(sampler, eval_set, self.sample_ahead(0, history, train_set)))
            for n in range(1, config.iterations + 1):
                if n in done:
                    continue
                if should_stop(history, config.patience):
                    self.log(f"stopping: accuracy has not improved for {config.patience} iterations")
                    break
                if sampler.model != current:
                    with registry.guard("samplers", self.sampler_name):
                        sampler.load(current)
                result = self.iteration(n, sampler, trainer, base_model, train_set, eval_set,
                                        self.sample_ahead(n, history, train_set))
                history.append(result)
                current = result.checkpoint or base_model
        finally:
            with registry.guard("samplers", self.sampler_name):
                sampler.close()
        return history

    def resume_note(self, history: Sequence[IterationResult]) -> str:
        """One line on what a resumed run reads back and what it computes again: the finished iterations, the
        next one's finished steps (their files) and the rows of a step cut off mid-way (``*.jsonl.partial``); or
        that nothing is left (every iteration asked for is finished, or the patience rule stops the run)."""
        done = sorted(r.iteration for r in history)
        first = 0 if self.config.baseline else 1
        left = [n for n in range(first, self.config.iterations + 1) if n not in done]
        note = f"resuming {self.store.root}: " + (
            f"iteration{'s' if len(done) > 1 else ''} {', '.join(map(str, done))} finished (read back)" if done
            else "no iteration finished yet")
        if not left:
            return note + f"; nothing left to do (--iterations {max([0, *done]) + 1} would add one)"
        if should_stop(history, self.config.patience):
            return note + f"; nothing left to do (accuracy has not improved for {self.config.patience} iterations)"
        n = left[0]
        kept = self.store.finished_steps(n)
        if "eval.json" in kept:  # stopped after its evaluation, before its record
            return note + f"; iteration {n}: every step finished, only its record is written"
        partial = {p.name.removesuffix(".partial"): len(read_jsonl(p, partial=True))
                   for p in sorted(self.store.iter_dir(n).glob("*.jsonl.partial"))}
        note += f"; iteration {n}: " + (f"kept {', '.join(kept)}" if kept else "nothing finished")
        if partial:
            note += ", " + ", ".join(f"{rows} rows of {name} (the rest is sampled)" for name, rows in partial.items())
        return note + ("; the rest runs again" if kept or partial else "; it runs from the start")

    def build_task(self) -> Task:
        """The task, with star-kit's ``data_dir`` and ``skip_bad_rows`` offered to its factory (passed only where
        it declares them) and every later call into it attributed to its plugin."""
        config, registry = self.config, self.registry
        core = {"data_dir": config.data_dir, "skip_bad_rows": config.skip_bad_rows}
        created = registry.create("tasks", config.task, _core=core, **config.task_options)
        for key, flag in RESERVED_OPTIONS.items():
            if core[key] and not registry.accepts("tasks", config.task, key):
                self.log(f"warning: {flag} is not used: task {config.task!r} reads no data files")
        offered = registry.accepts("tasks", config.task, "data_dir")
        self.reads_data = offered and getattr(created, "uses_data_dir", hasattr(created, "local_files"))
        if config.data_dir and offered and not self.reads_data:
            self.log(f"warning: --data-dir {config.data_dir} is not used: task {config.task!r} makes its own "
                     f"questions")
        self.task = registry.guarded("tasks", config.task, created)
        self.extract = registry.extractor(self.task.extractor)
        self.verify = self.verifier_for(self.task)
        return self.task

    def verifier_for(self, task: Task) -> Verifier | None:
        """``--verifier``: auto (the task's own, if it names one), none, or a registered verifier's name."""
        name = self.config.verifier
        if name == "auto":
            name = getattr(task, "verifier", None)
        if not name or name == "none":
            return None
        return self.registry.verifier(name)

    def baseline(self, sampler: Sampler, eval_set: Sequence[Example], ahead: SampleAhead | None = None
                 ) -> IterationResult:
        """Iteration 0: the few-shot accuracy of the base model."""
        seconds = Timings(self.store.artifact(0, "seconds.json"))
        accuracy, stderr, n_eval, no_answer, maj, prompt = self.evaluate_step(0, sampler, eval_set, seconds, ahead)
        result = IterationResult(iteration=0, accuracy=accuracy, accuracy_stderr=stderr, eval_examples=n_eval,
                                 no_answer=no_answer, seconds=dict(seconds), **maj,
                                 eval_labels=self.eval_labels(0, eval_set), eval_prompt=prompt,
                                 eval_no_answer=no_answer)
        self.record(result)
        return result

    def evaluate_step(self, n, sampler, eval_set, seconds, ahead: SampleAhead | None = None,
                      fewshot: bool | None = None) -> tuple[float, float | None, int, int, dict, str]:
        """Step 5: lm-eval on the held-out split (accuracy, stderr, n, no answer, the maj@K fields of the record,
        empty when off, and the prompt: ``fewshot`` or ``question``); a finished evaluation is read back (with the
        prompt it was made with). With ``ahead``, iteration n+1's sampling
        prompts join the evaluation's generate call and its ``samples.jsonl`` is written here (the seconds count
        as this evaluation's, the progress bar counts both sets). ``fewshot``: the prompt (default: the config's
        for M(n))."""
        store, k = self.store, self.config.eval_samples
        if store.has(n, "eval.json"):
            ev = read_json(store.artifact(n, "eval.json"), keys=("accuracy", "stderr", "n"))
            prompt = ev.get("prompt") or prompt_name(self.config.eval_fewshot(n) if fewshot is None else fewshot)
            return (ev["accuracy"], ev["stderr"], ev["n"], int(ev.get("no_answer") or 0), maj_fields(ev.get("maj")),
                    prompt)
        t0 = time.perf_counter()
        total = len(eval_set) * (2 if k > 1 else 1) + (len(ahead.examples) if ahead else 0)
        label = f"iter {n} · evaluate" + (f" + sample {ahead.iteration}" if ahead else "")
        if ahead is not None:  # iteration n+1's samples are published before this evaluation's eval.json
            ahead.ride.publish = lambda: self.save_ahead(n, ahead)
        with self.phases.phase(label, total, "q") as advance:
            # the sampler's and the task's own calls name them already; what else fails is lm-eval on the task's config
            with self.registry.guard("tasks", self.config.task):
                ev = evaluate(self.task, sampler, eval_set, store.iter_dir(n), self.registry, advance, maj_k=k,
                              maj_temperature=self.config.eval_temperature, seed=self.config.seed,
                              ride_along=ahead.ride if ahead else None,
                              fewshot=self.config.eval_fewshot(n) if fewshot is None else fewshot,
                              sampler_name=self.sampler_name, star_task=self.config.task)
        seconds["evaluate"] = round(time.perf_counter() - t0, 2)
        if ahead is not None and ahead.ride.completions is not None:
            self.log(f"iteration {n}: evaluation ({len(eval_set)} questions) and iteration {ahead.iteration}'s "
                     f"sampling ({len(ahead.examples)} questions) ran as one pass of M({n}): "
                     f"{seconds['evaluate']:.0f}s")
        return ev.accuracy, ev.stderr, ev.n, ev.no_answer, maj_fields(ev.maj), ev.raw["prompt"]

    def sample_ahead(self, n: int, history: Sequence[IterationResult], train_set: Sequence[Example]
                     ) -> SampleAhead | None:
        """Iteration n+1's step-1 prompts to decode with M(n)'s evaluation, or None: when merging is on, n+1 runs
        whatever M(n) scores (n < --iterations, and the patience rule stops nothing even at accuracy 0), its
        sampling is greedy with the evaluation's parameters (seed aside: greedy decoding ignores it), and neither
        its samples nor a partial sampling of them are on disk. (n+1 samples from M(n), the model evaluated.)"""
        config, store, m = self.config, self.store, n + 1
        if not config.merge_passes or m > config.iterations or store.has(n, "eval.json"):
            return None
        if any(r.iteration == m for r in history):
            return None
        if any(should_stop([*history, IterationResult(iteration=n, accuracy=worst)], config.patience)
               for worst in (0.0, None)):
            return None
        params = self.sample_params(m)
        if params.n != 1 or not same_generation(params, greedy_params(self.task, config.seed)):
            return None
        samples = store.artifact(m, "samples.jsonl")
        if samples.exists() or samples.with_name(samples.name + ".partial").exists():
            return None
        return SampleAhead(m, list(train_set), RideAlong(rationale_prompts(self.task, train_set, hint=False), params))

    def save_ahead(self, n: int, ahead: SampleAhead) -> None:
        """Grade the completions that rode along with M(n)'s evaluation as step 1/2 grades them and publish them as
        iteration n+1's ``samples.jsonl`` (its marker and ``seconds["sample"] = 0`` first, the samples last: the
        samples file is what says the step is done). Nothing when no evaluation request group took them."""
        completions, m = ahead.ride.completions, ahead.iteration
        if completions is None:
            self.log(f"iteration {n}: no evaluation request matched iteration {m}'s sampling parameters; "
                     f"iteration {m} samples on its own")
            return
        samples = grade_rationales(self.task, self.extract, ahead.examples, completions, False, self.verify)
        write_json(self.store.artifact(m, AHEAD_MARKER),
                   {"in_iteration": n, "questions": len(ahead.examples), "samples": len(samples)})
        Timings(self.store.artifact(m, "seconds.json"))["sample"] = 0.0
        write_jsonl(self.store.artifact(m, "samples.jsonl"), (s.to_dict() for s in samples))

    def sampled_ahead_in(self, n: int) -> int | None:
        """The iteration whose evaluation pass generated iteration n's samples (its marker), or None."""
        marker = self.store.artifact(n, AHEAD_MARKER)
        if not (marker.exists() and self.store.has(n, "samples.jsonl")):
            return None
        value = read_json(marker).get("in_iteration")
        return value if isinstance(value, int) else None

    def sample_params(self, n: int) -> GenerationParams:
        """Step 1/3's generation parameters in iteration n (``--samples`` per question; seeded per iteration)."""
        task, config = self.task, self.config
        return GenerationParams(max_new_tokens=task.max_new_tokens, temperature=config.temperature,
                                top_p=config.top_p, n=config.samples, stop=task.stop, seed=config.seed * 1000 + n)

    def eval_prompt(self, n: int) -> str:
        """How M(n) is prompted in its evaluation (:func:`star_kit.evaluation.prompt_name`)."""
        return prompt_name(self.config.eval_fewshot(n))

    def eval_labels(self, n, eval_set) -> dict[str, int] | None:
        """The answer labels M(n) predicted on the held-out split (``eval_samples.jsonl``), for a task with
        ``answer_label``; None otherwise."""
        if not callable(getattr(self.task, "answer_label", None)) or not self.store.has(n, "eval_samples.jsonl"):
            return None
        return eval_label_counts(self.task, eval_set, read_jsonl(self.store.artifact(n, "eval_samples.jsonl")))

    def iteration(self, n, sampler, trainer, base_model, train_set, eval_set, ahead: SampleAhead | None = None
                  ) -> IterationResult:
        config, store, task = self.config, self.store, self.task
        self.registry.emit("star_kit_iteration_start", iteration=n, config=config.public(), run_dir=store.root)
        seconds = Timings(store.artifact(n, "seconds.json"))  # survives a resume
        params = self.sample_params(n)

        # 1. Sample rationales (``--samples`` per question) with the few-shot prompt (done already when they rode
        # along with M(n-1)'s evaluation); 2. keep those that reach the gold answer and pass the verifier.
        samples = self.sample_step(n, "samples.jsonl", "sample", seconds, sampler, train_set, params, hint=False)
        sampled_ahead_in = self.sampled_ahead_in(n)
        if sampled_ahead_in is not None:
            self.log(f"iteration {n}: sampling was done ahead, in iteration {sampled_ahead_in}'s evaluation pass "
                     f"(its seconds are that evaluation's)")
        kept = [s for s in samples if s.accepted]
        solved = {s.example_id for s in kept}
        failures = [e for e in train_set if e.id not in solved]

        # 3. Rationalize the failures: the gold answer as a hint.
        rationalized: list[Sample] = []
        if config.rationalize:
            rationalized = self.sample_step(n, "rationalized.jsonl", "rationalize", seconds, sampler, failures,
                                            params, hint=True)
        rescued = [s for s in rationalized if s.accepted]

        # Build the hint-free SFT set.
        counts: dict[str, int] = {}
        pairs, dropped = training_pairs(task, train_set, kept, rescued, fewshot=config.train_fewshot, counts=counts)
        train = [pair for _, pair in pairs]
        if dropped:
            self.log(f"iteration {n}: dropped {dropped} rationales that quote the hint")
        if counts.get("merged"):
            merged = counts["merged"]
            self.log(f"iteration {n}: {merged} training pair{'s' * (merged != 1)} identical to another (the same "
                     f"question and rationale) {'are' if merged != 1 else 'is'} trained once")
        # the pairs about to train, rebuilt from the kept samples; on a resume that trains again too (the file
        # records the pairs the checkpoint was trained on), not once the checkpoint exists
        if not (store.has(n, "train.jsonl") and store.has(n, "checkpoint")):
            write_jsonl(store.artifact(n, "train.jsonl"), (t.to_dict() for t in train))

        # 4. Fine-tune the BASE model on everything kept.
        steps = steps_for(n, config) if train else 0
        checkpoint = None
        if train and store.has(n, "checkpoint"):
            checkpoint = str(store.artifact(n, "checkpoint"))
        elif train:
            t0 = time.perf_counter()
            tmp = store.artifact(n, "checkpoint.partial")
            shutil.rmtree(tmp, ignore_errors=True)  # a killed attempt's: output_dir does not exist yet (protocol)
            with self.phases.phase(f"iter {n} · train", steps, "step") as advance, \
                    self.registry.guard("trainers", config.trainer):
                trainer.train(base_model, train, steps, tmp, seed=config.seed, advance=advance)
            if not any((tmp / f).is_file() for f in ("config.json", "adapter_config.json")):  # from_pretrained's
                raise PluginError(f"{self.registry.where('trainers', config.trainer)}: train() returned without "
                                  f"saving a model folder at output_dir ({tmp} has no config.json)")
            checkpoint = str(store.publish_dir(tmp, n, "checkpoint"))
            seconds["train"] = round(time.perf_counter() - t0, 2)
        else:
            self.log(f"iteration {n}: nothing to train on; M({n}) is the base model, evaluated as M0 is (few-shot)")

        # 5. Evaluate M(n) with lm-eval on the held-out split (with iteration n+1's sampling prompts, when due).
        # M(n) without a checkpoint is the base model: prompted as M0, never with the question alone it never saw
        model = checkpoint or base_model
        fewshot = config.eval_fewshot(n) or not checkpoint
        if sampler.model != model:
            with self.registry.guard("samplers", self.sampler_name):
                sampler.load(model)
        accuracy, stderr, n_eval, eval_no_answer, maj, prompt = self.evaluate_step(n, sampler, eval_set, seconds,
                                                                                   ahead, fewshot)

        # 6. Record.
        result = IterationResult(
            iteration=n, accuracy=accuracy, accuracy_stderr=stderr, eval_examples=n_eval,
            sampled=len(samples), kept=len(kept), no_answer=sum(1 for s in samples if s.predicted is None),
            unverified=sum(1 for s in (*samples, *rationalized) if s.verified is False),
            rationalization_attempts=len(failures) if config.rationalize else 0, rationalized=len(rescued),
            train_examples=len(train), steps=steps, checkpoint=checkpoint, seconds=dict(seconds), **maj,
            sampled_ahead_in=sampled_ahead_in, eval_prompt=prompt, eval_no_answer=eval_no_answer,
            eval_labels=self.eval_labels(n, eval_set),
            train_labels=label_counts(task, ((ex, ex.answer) for ex, _ in pairs)),
        )
        self.record(result)
        return result

    def sample_step(self, n, name, phase, seconds, sampler, examples, params, hint) -> list[Sample]:
        """Steps 1/3 with crash safety: fixed chunks of examples are sampled in order and appended to
        ``NAME.partial`` as they finish, so a killed run resumes after the last whole chunk. The chunks (and
        their seeds) do not depend on where a run was interrupted, so a resumed run samples exactly what an
        uninterrupted one would."""
        path = self.store.artifact(n, name)
        if path.exists():
            return read_samples(path)
        if name == "samples.jsonl":  # a marker left by a kill before the samples it announces were published
            self.store.artifact(n, AHEAD_MARKER).unlink(missing_ok=True)
        partial = path.with_name(path.name + ".partial")
        done = read_samples(partial, partial=True) if partial.exists() else []
        size = max(1, int(self.config.chunk_size))
        chunks = [examples[start : start + size] for start in range(0, len(examples), size)]
        # A chunk is kept only if it was written whole (params.n rows for each of its examples): a kill during its
        # write can leave some of its lines, and the chunk is then sampled again, without them.
        rows = Counter(s.example_id for s in done)
        whole = [all(rows[e.id] == params.n for e in part) for part in chunks]
        kept = {e.id for part, ok in zip(chunks, whole) if ok for e in part}
        done = [s for s in done if s.example_id in kept]
        t0 = time.perf_counter()
        with self.phases.phase(f"iter {n} · {phase}", len(examples), "q") as advance, \
                self.registry.guard("samplers", self.sampler_name), AppendLog(partial, keep=done) as log:
            advance(len(kept))
            for c, part in enumerate(chunks):
                if whole[c]:
                    continue
                chunk_params = dataclasses.replace(params, seed=params.seed * 100_003 + c)
                new = sample_rationales(self.task, sampler, self.extract, part, chunk_params, hint, advance,
                                        self.verify)
                log.append(s.to_dict() for s in new)
                done.extend(new)
        write_jsonl(path, (s.to_dict() for s in done))
        partial.unlink(missing_ok=True)
        seconds[phase] = round(time.perf_counter() - t0, 2)
        return done

    def record(self, result: IterationResult) -> None:
        self.store.record(result.to_dict())
        self.registry.emit("star_kit_iteration_end", iteration=result.iteration, result=result,
                           config=self.config.public(), run_dir=self.store.root)
        self.log(describe(result))
        if self.on_record is not None:
            self.on_record(self.history())

    def history(self) -> list[IterationResult]:
        """The recorded iterations (metrics.jsonl; a damaged line stops with file:line, see ``read_jsonl``)."""
        # a row written before ``eval_prompt`` was recorded gets it from the config (which a resume cannot change)
        rows = [row for row in self.store.metrics()
                if isinstance(row.get("iteration"), int) and not isinstance(row.get("iteration"), bool)]
        def warn(message: str) -> None:
            self.log(f"warning: {self.store.metrics_path}: {message}")

        return [IterationResult.from_row(row, warn, eval_prompt=self.eval_prompt(row["iteration"])) for row in rows]


def maj_fields(maj: dict | None) -> dict:
    """The record's maj@K fields from an evaluation's ``maj`` summary (``eval.json``); {} when maj@K was off."""
    if not isinstance(maj, dict) or not isinstance(maj.get("k"), int):
        return {}
    return {"maj_k": maj["k"], "maj_accuracy": maj.get("accuracy"), "maj_accuracy_stderr": maj.get("stderr")}


def describe(r: IterationResult) -> str:
    acc = "n/a" if r.accuracy is None else f"{100 * r.accuracy:.1f}%"
    if r.maj_k and r.maj_accuracy is not None:
        acc += f" (maj@{r.maj_k} {100 * r.maj_accuracy:.1f}%)"
    answers = f" (answers {format_counts(r.eval_labels)})" if r.eval_labels else (
        f" (no answer {r.eval_no_answer})" if r.eval_no_answer else "")
    if r.iteration == 0:
        return f"iteration 0 (few-shot baseline): accuracy {acc} on {r.eval_examples}{answers}"
    secs = ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items())
    if r.sampled_ahead_in is not None:
        secs += f" (sampled ahead in iteration {r.sampled_ahead_in}'s evaluation pass)"
    trained = f" (answers {format_counts(r.train_labels)})" if r.train_labels else ""
    return (f"iteration {r.iteration}: accuracy {acc} on {r.eval_examples}{answers} | kept {r.kept}/{r.sampled}, "
            f"no answer {r.no_answer}, rejected by the verifier {r.unverified}, "
            f"rationalized {r.rationalized}/{r.rationalization_attempts}, "
            f"train {r.train_examples}{trained} for {r.steps} steps | {secs}")
