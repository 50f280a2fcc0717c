"""The run configuration: one dataclass whose fields map 1:1 onto CLI flags and YAML keys."""

from __future__ import annotations

import dataclasses
import enum
import os
import re
import stat
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import StarKitError, did_you_mean
from .store import YAML12_FLOAT
from .typecheck import kind_of, type_name, type_ok, union_members


def _opt(default: Any, help: str, **extra: Any) -> Any:
    """A config field whose ``star-kit run`` flag is generated from it (help text and choices in its metadata)."""
    return field(default=default, metadata={"help": help, **extra})


EVAL_PROMPTS = ("trained", "fewshot")


@dataclass
class RunConfig:
    """Everything that defines a STaR run (``RUN/config.yaml`` holds exactly these keys)."""

    task: str = _opt("arithmetic", "task name (see `star-kit plugins`)")
    model: str = _opt("smollm2-135m", "model alias, local folder, .gguf file or hub id")
    sampler: str = _opt("auto", "sampler (model backend): auto (vllm on a CUDA machine where vLLM is installed, "
                                "else hf), hf, vllm, ray, openai, or an installed plugin's (see `star-kit plugins`)")
    trainer: str = _opt("trl-sft", "trainer name: trl-sft, or an installed plugin's (see `star-kit plugins`)")
    out: str = _opt("runs/star", "run directory")
    # the default job (128/64 questions, 40, 48, 58 steps): about 4 min on 2 CPU cores (docs/results/default_job.md)
    iterations: int = _opt(3, "maximum STaR iterations")
    patience: int = _opt(2, "stop after this many iterations without improvement (0: never)")
    train_size: int | None = _opt(128, "training questions per iteration ('all' for all)")
    eval_size: int | None = _opt(64, "held-out evaluation questions ('all' for all)")
    rationalize: bool = _opt(True, "rationalize failures (--no-rationalize: STaR without rationalization)")
    verifier: str = _opt("auto", "rationale verifier: auto (the task's own), none (no check beyond the answer), "
                                 "or a verifier's name")
    baseline: bool = _opt(True, "evaluate the base model as iteration 0")
    seed: int = _opt(0, "random seed (data, sampling, training)")
    eval_seed: int | None = _opt(None, "seed of the held-out questions' draw (default: --seed); fixed, runs of "
                                       "other seeds are evaluated on the same questions")
    temperature: float = _opt(0.0, "sampling temperature for rationales; 0 = greedy")
    samples: int = _opt(1, "rationales sampled per question (k > 1 needs --temperature > 0); identical ones train "
                           "once")
    top_p: float = _opt(1.0, "nucleus sampling for rationales")
    eval_samples: int = _opt(0, "maj@K evaluation: K sampled rationales per held-out question, majority vote over "
                                "their answers, reported beside the greedy accuracy (0 or 1: greedy only)")
    eval_temperature: float = _opt(0.7, "sampling temperature of the maj@K rationales (--eval-samples > 1)")
    base_steps: int = _opt(40, "training steps of iteration 1")
    step_growth: float = _opt(1.2, "steps grow by this factor per iteration")
    step_schedule: str = _opt("exponential", "exponential: base·growth^(n-1); linear: base + 20·(n-1)",
                              choices=("exponential", "linear"))
    train_fewshot: bool = _opt(False, "fine-tune on the full few-shot prompt (default: the question alone, ~10x "
                                      "fewer tokens)")
    eval_prompt: str = _opt("trained", "how M(n), n >= 1, is prompted when evaluated: trained = as it was "
                                       "fine-tuned (the question alone; the few-shot prompt with --train-fewshot), "
                                       "fewshot = the task's few-shot prompt; the base model M0 is always "
                                       "evaluated few-shot", choices=EVAL_PROMPTS)
    data_dir: str | None = _opt(None, "local data folder (else $STAR_KIT_DATA_DIR, else the hub)")
    skip_bad_rows: bool = _opt(False, "drop (and count) malformed data rows instead of stopping at the first")
    chunk_size: int = _opt(128, "questions sampled and saved per chunk (the resume unit of sampling and "
                                "rationalizing; an evaluation pass, merged with the next sampling or not, is one unit)")
    merge_passes: bool = _opt(True, "decode M(n)'s evaluation prompts and iteration n+1's sampling prompts in one "
                                    "batched pass when both are due (greedy sampling, n+1 certain to run; "
                                    "--no-merge-passes: one pass each)")
    task_options: dict[str, Any] = field(default_factory=dict)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    trainer_options: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every key with its real value (secrets included): for the run itself, never for a file or a log."""
        return dataclasses.asdict(self)

    def public_dict(self) -> dict[str, Any]:
        """What may be written or shown (config.yaml, --print-config, the report, loggers): every key, with the
        values of options whose names hold credentials (``api_key``, ``token`` ...) replaced by ``<redacted>``."""
        return redact(self.to_dict())

    def public(self) -> "RunConfig":
        """A copy with the credentials redacted, for plugins that only report (loggers, events)."""
        return RunConfig(**self.public_dict())

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunConfig":
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise StarKitError(f"{source}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], cls.keys())}; "
                               f"known keys: {', '.join(cls.keys())}", 2)
        hints = typing.get_type_hints(cls)  # "all" for a count, as its flag takes it (train_size: all)
        config = cls(**{k: None if hints[k] == int | None and is_all(v) else v for k, v in data.items()})
        config.check_types(source)
        return config

    def check_types(self, source: str = "config") -> None:
        """Every value against its field's type (``iterations: two`` and ``seed: [1, 2]`` fail here, before any
        work): one line naming the key, the value and the expected type."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not type_ok(value, hints[f.name]):
                raise StarKitError(f"{source}: key {f.name!r} is {value!r} ({kind_of(value)}); expected "
                                   f"{type_name(hints[f.name])}", 2)

    # Keys that may change when a run is resumed (they do not change what was already computed). merge_passes
    # only decides whether two greedy passes of the same model run as one generate call.
    RESUMABLE = ("iterations", "patience", "out", "plugins", "merge_passes")
    # What a run made before a key existed did: a resumed (or benched) run directory whose config.yaml lacks the
    # key goes on as it began, and giving the key another value on --resume is refused as a change (eval_seed: the
    # held-out questions of an older run were drawn with its seed).
    PREDATED = {"eval_prompt": "fewshot", "eval_seed": None}

    @property
    def eval_draw_seed(self) -> int:
        """The seed that draws the held-out questions: ``eval_seed``, else ``seed``."""
        return self.seed if self.eval_seed is None else self.eval_seed

    def eval_fewshot(self, iteration: int) -> bool:
        """Whether M(iteration) is evaluated with the task's few-shot prompt (else with the question alone, as
        it was fine-tuned): always for the base model M0, and for M(n) with ``eval_prompt=fewshot`` or when it
        was fine-tuned on the few-shot prompt (``train_fewshot``). (The loop prompts an M(n) that had nothing to
        train on few-shot too: it is M0.)"""
        return iteration == 0 or self.eval_prompt == "fewshot" or self.train_fewshot

    def flag(self, key: str) -> str:
        """How a key is named in an error: its flag (``--temperature``), or the file it came from when the value
        was read from one (``my.yaml: key 'temperature'``; set by the CLI in :attr:`origin`)."""
        source = getattr(self, "origin", {}).get(key)
        return f"{source}: key {key!r}" if source else "--" + key.replace("_", "-")

    def validate(self) -> None:
        """Types, then ranges: everything a run can refuse before it loads anything."""
        self.check_types()
        name = self.flag
        if self.iterations < 0:
            raise StarKitError(f"{name('iterations')} must be >= 0, got {self.iterations}", 2)
        if self.iterations == 0 and not self.baseline:
            no_baseline = "--no-baseline" if name("baseline") == "--baseline" else f"{name('baseline')} false"
            raise StarKitError(f"{name('iterations')} 0 with {no_baseline}: nothing to do", 2)
        if self.patience < 0:
            raise StarKitError(f"{name('patience')} must be >= 0 (0: never stop early), got {self.patience}", 2)
        for key in ("seed", "eval_seed"):  # the trainer's and the samplers' generators take 0 .. 2^32 - 1
            value = getattr(self, key)
            if value is not None and not 0 <= value < 2**32:
                raise StarKitError(f"{name(key)} must be between 0 and 4294967295, got {value}", 2)
        if self.base_steps < 1:
            raise StarKitError(f"{name('base_steps')} must be >= 1, got {self.base_steps}", 2)
        if not self.step_growth > 0:
            raise StarKitError(f"{name('step_growth')} must be > 0, got {self.step_growth}", 2)
        if self.iterations >= 1 and self.step_schedule != "linear":
            # 0 steps would not mean "no training" to the trainer (max_steps <= 0: whole epochs instead); the steps
            # only fall or only rise, so the last iteration's are the ones to check
            if (why := _schedule_problem(self.iterations, self)) is not None:
                n = next(k for k in range(1, self.iterations + 1) if _schedule_problem(k, self))
                raise StarKitError(f"{name('step_growth')} {self.step_growth:g} with {name('base_steps')} "
                                   f"{self.base_steps} gives {why} at iteration {n} of {self.iterations}", 2)
        if self.chunk_size < 1:
            raise StarKitError(f"{name('chunk_size')} must be >= 1, got {self.chunk_size}", 2)
        if not self.temperature >= 0:
            raise StarKitError(f"{name('temperature')} must be >= 0, got {self.temperature}", 2)
        if not 0 < self.top_p <= 1:
            raise StarKitError(f"{name('top_p')} must be in (0, 1], got {self.top_p}", 2)
        if self.samples < 1:
            raise StarKitError(f"{name('samples')} must be >= 1, got {self.samples}", 2)
        if self.samples > 1 and self.temperature <= 0:
            raise StarKitError(f"{name('samples')} {self.samples} needs {name('temperature')} > 0 (greedy decoding "
                               f"gives {self.samples} identical rationales)", 2)
        check_eval_samples(self.eval_samples, self.eval_temperature, name("eval_samples"), name("eval_temperature"))
        check_eval_prompt(self.eval_prompt, name("eval_prompt"))
        if self.step_schedule not in ("exponential", "linear"):
            raise StarKitError(f"{name('step_schedule')} must be exponential or linear, got {self.step_schedule!r}", 2)
        for key in ("train_size", "eval_size"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise StarKitError(f"{name(key)} must be positive, got {value}", 2)


#: the keys every config.yaml star-kit has written holds (RunConfig's first keys): one missing is a damaged or
#: truncated file, never an older run (whose newer keys :func:`predated` fills)
ALWAYS_SAVED = ("task", "model", "sampler", "trainer", "iterations", "patience", "train_size", "eval_size",
                "rationalize", "baseline", "seed", "temperature", "top_p", "base_steps", "step_growth",
                "step_schedule", "task_options", "sampler_options", "trainer_options")


def check_saved_keys(saved: dict[str, Any], path: Any) -> None:
    """A run directory's config.yaml (``saved``, read from ``path``) holds :data:`ALWAYS_SAVED`: else one line. An
    empty or cut file would otherwise be filled with today's defaults, and a resume go on with other settings."""
    missing = [k for k in ALWAYS_SAVED if k not in saved]
    if missing:
        what = "is empty" if not saved else f"has no {', '.join(repr(k) for k in missing[:3])}" + (
            f" (and {len(missing) - 3} more keys)" if len(missing) > 3 else "")
        raise StarKitError(f"{path} {what}: damaged or cut short (a run writes every key); put the run's config "
                           f"back, or start a new run", 2)


def predated(saved: dict[str, Any]) -> dict[str, Any]:
    """A run directory's saved config with the keys it predates set to what the run did then
    (:attr:`RunConfig.PREDATED`), so that resuming or benching it does not change what it measures. A run made
    before ``eval_prompt`` existed is also one made when CommonsenseQA's ``answer_format`` defaulted to ``choice``
    (its config.yaml kept only the options given; a run records the task's defaults too since)."""
    out = {**{k: v for k, v in RunConfig.PREDATED.items() if k not in saved}, **saved}
    if "eval_prompt" not in saved and saved.get("task") == "commonsense_qa":
        options = saved.get("task_options") if isinstance(saved.get("task_options"), dict) else {}
        out["task_options"] = {"answer_format": "choice", **options}
    options = out.get("task_options")
    if isinstance(options, dict) and any(k in RESERVED_OPTIONS for k in options):  # an older release took them
        out["task_options"] = {k: v for k, v in options.items() if k not in RESERVED_OPTIONS}
        for key in RESERVED_OPTIONS:
            if key in options and out.get(key) in (None, False):
                out[key] = options[key]
    return out


def check_eval_prompt(value: Any, name: str = "--eval-prompt") -> None:
    """``--eval-prompt`` (or ``name``: a saved config's key) is one of :data:`EVAL_PROMPTS`: one line, exit code 2
    (``star-kit run``, and ``star-kit bench --run`` on a run directory's config.yaml)."""
    if value not in EVAL_PROMPTS:
        raise StarKitError(f"{name} must be one of {', '.join(EVAL_PROMPTS)}, got {value!r}", 2)


def check_eval_samples(k: Any, temperature: Any, k_name: str = "--eval-samples",
                       temperature_name: str = "--eval-temperature") -> None:
    """``--eval-samples K`` (an integer >= 0; 0 and 1: greedy only) and ``--eval-temperature`` (> 0 when K > 1):
    one line, exit code 2, before anything loads (``star-kit run`` and ``star-kit bench``). The names: how the
    error calls them (a config file's key, where they came from one)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise StarKitError(f"{k_name} must be an integer >= 0 (0 and 1: greedy only), got {k!r}", 2)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise StarKitError(f"{temperature_name} must be a number >= 0, got {temperature!r}", 2)
    if k > 1 and temperature <= 0:
        raise StarKitError(f"{k_name} {k} needs {temperature_name} > 0 (greedy decoding gives {k} identical "
                           f"rationales)", 2)


def is_all(value: Any) -> bool:
    """Whether ``value`` says "no limit" for a count (``--train-size all``, ``train_size: all``)."""
    return isinstance(value, str) and value.strip().lower() in ("all", "none")


class _ConfigLoader(yaml.SafeLoader):
    """YAML for config files: safe; exponent numbers are floats, as in YAML 1.2 (``5e-1``, ``1e3``, ``1.0e5``;
    PyYAML's YAML 1.1 reads them as text); a key given twice in one mapping (``train-size`` and ``train_size``
    are one key) is an error (PyYAML keeps the last silently); merge keys (``<<: *anchor``) work as before."""

    def construct_mapping(self, node, deep=False):
        seen: dict[str, Any] = {}  # a key as the config reads it (train-size is train_size) -> where it was
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # '<<: *anchor': merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                continue
            name = key.replace("-", "_")
            if name in seen:
                first, mark = seen[name]
                also = "" if first == key else f" (as {first!r})"
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice{also} (first on line {mark.line + 1})",
                    key_node.start_mark)
            seen[name] = (key, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789."))


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


MAX_CONFIG_VALUES = 100_000  # values a config file may expand to (its anchors' aliases counted each time)
MAX_CONFIG_DEPTH = 50


def _size_problem(data: Any) -> str | None:
    """Why a loaded YAML document is too large to work with, or None: more than :data:`MAX_CONFIG_VALUES` values
    once every alias is expanded (a few lines of anchors that repeat each other, the "billion laughs", expand to
    10^8 and more: to_dict, redact and the comparison on resume would walk every one), or nested more than
    :data:`MAX_CONFIG_DEPTH` deep. Stops counting at the limit: linear in the file, whatever it expands to."""
    stack, count = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            return f"it expands to more than {MAX_CONFIG_VALUES:,} values (anchors repeated by aliases)"
        if depth > MAX_CONFIG_DEPTH:
            return f"it is nested more than {MAX_CONFIG_DEPTH} levels deep"
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple, set)):
            stack.extend((v, depth + 1) for v in value)
    return None


#: the largest config file read, in bytes (a run's config.yaml is a few kB)
MAX_CONFIG_BYTES = 1 << 20


def load_config_file(path: str | Path, pipe: bool = False) -> dict[str, Any]:
    """A config file's keys (YAML or JSON): a regular file of at most :data:`MAX_CONFIG_BYTES`, safe YAML tags only,
    within :func:`_size_problem`'s limits; anything else refused in one line naming the file (and its line). A
    path a run directory names (an accelerate config on --resume) may be a FIFO or ``/dev/zero``: never waited on,
    never read whole. ``pipe``: the user's own ``--config``, which may be a pipe (``--config <(...)``)."""
    path = Path(path)
    try:
        with open(path, "rb", opener=None if pipe else lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as f:
            if not pipe and not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise StarKitError(f"cannot read config file {path}: not a regular file", 2)
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise StarKitError(f"cannot read config file {path}: {exc.strerror or exc}", 2) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise StarKitError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB: refused (a config is a few keys and "
                           f"values)", 2)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise StarKitError(f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x})", 2) from exc
    try:
        data = yaml.load(text, Loader=_ConfigLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise StarKitError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}", 2) from exc
    except RecursionError:
        raise StarKitError(f"{path}: invalid YAML: nested too deeply", 2) from None
    except ValueError:  # Python reads integers of at most 4,300 digits
        raise StarKitError(f"{path}: invalid YAML: an integer of more than 4,300 digits", 2) from None
    problem = _size_problem(data)
    if problem:
        raise StarKitError(f"{path}: {problem}: refused (a config is a few keys and values)", 2)
    if not isinstance(data, dict):
        raise StarKitError(f"{path}: expected a mapping of config keys, got {type(data).__name__}", 2)
    bad = next((k for k in data if not isinstance(k, str)), None)
    if bad is not None:
        raise StarKitError(f"{path}: config keys are names, got {bad!r}", 2)
    return {k.replace("-", "_"): v for k, v in data.items()}


# -- option values: one rule --------------------------------------------------------------------------------
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def parse_scalar(text: str) -> Any:
    """A plugin option's value as written on the command line: ``true``/``false`` (any case) are booleans, an
    integer (``8``; not ``0123`` or ``+5``) an int, a decimal or exponent number (``2e-5``, ``0.5``, ``1E3``) a
    float, everything else (``no``, ``null``, ``{model}``, ``1-3``, ``[1, 2]``) the string itself. (YAML 1.1
    would read ``1e-4`` as text, ``no`` as False and ``{model}`` as a mapping.)"""
    stripped = text.strip()
    if stripped.lower() in ("true", "false"):
        return stripped.lower() == "true"
    if _INT.fullmatch(stripped):
        # an integer as Python writes it; '0123' or '+5' stays text (an id or a key keeps its digits)
        return int(stripped) if str(int(stripped)) == stripped else text
    if _FLOAT.fullmatch(stripped):
        return float(stripped)
    return text


# -- types ---------------------------------------------------------------------------------------------------
def option_type_problem(key: str, value: Any, hint: Any) -> str | None:
    """``option KEY=VALUE is not TYPE`` when ``value`` does not fit the annotation ``hint``, else None (the one
    check of a plugin option's value against its declared type, for every plugin)."""
    if type_ok(value, hint):
        return None
    choices = _string_choices(hint)
    suggestion = did_you_mean(value, choices, n=2) if isinstance(value, str) and value else ""
    if len(choices) > LONGEST_LISTED:  # e.g. transformers' optimizers: a count, not forty names
        named = " or ".join(type_name(a) for a in union_members(hint) if not _string_choices(a))
        return (f"option {key}={value!r} is not one of the {len(choices)} values of {_choices_name(hint)}"
                + (f" (or {named})" if named else "") + suggestion)
    return f"option {key}={value!r} is not {type_name(hint)}{suggestion}"


LONGEST_LISTED = 12  # allowed values an error lists in full; more are counted


def _string_choices(hint: Any) -> list[str]:
    """The string values an Enum or Literal annotation (or a union holding them) allows."""
    out: list[str] = []
    for a in union_members(hint):
        if isinstance(a, type) and issubclass(a, enum.Enum):
            out += [m.value for m in a if isinstance(m.value, str)]
        elif typing.get_origin(a) is typing.Literal:
            out += [v for v in typing.get_args(a) if isinstance(v, str)]
    return out


def _choices_name(hint: Any) -> str:
    names = [a.__name__ for a in union_members(hint) if isinstance(a, type) and issubclass(a, enum.Enum)]
    return " and ".join(names) or "its choices"


# -- secrets: never written to a run directory, a report or a logger ------------------------------------------
REDACTED = "<redacted>"
# Parts of an option name (split at _ - . and camelCase, case-insensitive) that mark a credential.
_SECRET_PARTS = {"token", "password", "passwd", "passphrase", "pwd", "secret", "secrets", "credential",
                 "credentials", "auth", "authorization", "apikey", "cookie", "bearer", "pat", "dsn", "sas"}
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"), ("session", "key")}
# a service's name before "key" ('openai_key', 'hf_key'): a credential; other keys ('sort_key') are not
_SERVICES = {"openai", "hf", "huggingface", "wandb", "github", "gh", "gitlab", "anthropic", "cohere", "mistral",
             "together", "groq", "azure", "aws", "gcp", "google", "replicate", "deepseek", "fireworks", "vllm"}
_SECRET_PAIRS |= {(service, "key") for service in _SERVICES}
# ... but a tokenizer's tokens are not credentials: pad_token, eos_token_id, max_tokens, token_count ...
_NOT_SECRET_BEFORE_TOKEN = {"pad", "bos", "eos", "unk", "sep", "cls", "mask", "special", "stop", "max", "min",
                            "new", "num", "start", "end", "decode", "prefill", "input", "output", "prompt",
                            "completion", "first", "last", "next"}
_NOT_SECRET_AFTER_TOKEN = {"id", "ids", "count", "counts", "length", "len", "limit", "budget", "type", "types",
                           "threshold", "healing", "level", "logprob", "logprobs"}


def _name_parts(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [p for p in re.split(r"[^a-z0-9]+", spaced.lower()) if p]


# words that name a credential wherever they stand in a name, its separators dropped ('clientsecret', 'password1',
# 'X-Amz-Signature'); 'token' and 'key' are judged with their neighbours (below)
_SECRET_INFIXES = ("password", "passwd", "passphrase", "passcode", "secret", "credential", "authorization",
                   "apikey", "bearer")
# an option named by one of these words alone (or ending in 'signature': 'X-Amz-Signature') is a credential; inside
# a text they are ordinary words ('Answer key: 42'), read as a credential's name only in a URL's query ('?key=')
# or as a flag ('--key x')
_SECRET_WHOLE = frozenset({"key", "sig", "signature", "pass", "pw", "pwd", "cred", "creds", "jwt"})
# 'token' at the end of a word names a credential after these ('authtoken', 'HFToken'), not after others ('tiktoken')
_TOKEN_PREFIXES = frozenset({"auth", "access", "api", "refresh", "bearer", "session", "secret", "sas", "id", "oauth"})
_KEY_QUALIFIERS = frozenset({"api", "access", "private", "secret", "session", "subscription", "client", "master",
                             "signing", "encryption", "license", "account", "storage", "hmac", "app", "auth", "ssh",
                             "service"})
_TOKEN_NAMERS = _TOKEN_PREFIXES | _SERVICES  # what may stand before 'token' in one word ('hftoken')
_KEY_NAMERS = _KEY_QUALIFIERS | _SERVICES  # what may stand before 'key' in one word ('openaikey')


def is_secret_key(name: str) -> bool:
    """Whether an option named ``name`` holds a credential (``api_key``, ``hf_token``, ``authtoken``,
    ``password1``, ``clientsecret``, ``OpenAIKey``, ``subscription_key``, ``X-Amz-Signature``, ``key``, ``pw`` ...)
    and not a tokenizer's or a budget's token (``pad_token``, ``max_new_tokens``, ``eos_token_id``)."""
    parts = _name_parts(name)
    compact = "".join(parts)
    if any(word in compact for word in _SECRET_INFIXES) or compact in _SECRET_WHOLE or \
            (len(parts) > 1 and parts[-1] == "signature"):
        return True
    for i, part in enumerate(parts):
        if part == "token" or part.endswith("token") and part[:-5] in _TOKEN_NAMERS:
            before = parts[i - 1] if part == "token" and i else part[:-len("token")]
            after = parts[i + 1] if i + 1 < len(parts) else ""
            if before in _NOT_SECRET_BEFORE_TOKEN or after in _NOT_SECRET_AFTER_TOKEN:
                continue
            return True
        if part in _SECRET_PARTS:
            return True
        if part.endswith("key") and part != "key" and part[:-3] in _KEY_NAMERS:  # 'openaikey'
            return True
    parts = [p[:-1] if p == "keys" else p for p in parts]  # 'api_keys' (not 'tokens': a tokenizer's)
    pairs = list(zip(parts, parts[1:]))
    return any(pair in _SECRET_PAIRS or (pair[1] == "key" and pair[0] in _KEY_QUALIFIERS) for pair in pairs) or (
        compact.endswith("key") and compact[:-3] in _KEY_NAMERS)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (a config dict, or any nesting of dicts and lists) in which the value of every key that
    names a credential is ``<redacted>`` (empty values stay: they reveal nothing). The one function every writer
    of a config uses: config.yaml, --print-config, the report, the loggers."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    return redact_text(obj) if isinstance(obj, str) else obj


_WORD = re.compile(r"[^\s'\"]++")
_HOST_START = re.compile(r"[A-Za-z0-9\[]")  # what follows a URL's '@': a host name, an address, '[::1]'
# a credential by its well-known shape, wherever it stands (a key pasted into a command or a note): OpenAI's and
# Anthropic's 'sk-...', Hugging Face's 'hf_...', GitHub's 'ghp_...' / 'github_pat_...', AWS's 'AKIA...', Slack's
# 'xoxb-...'; long enough not to be a word. Each try starts where no letter or digit precedes it: linear.
_KNOWN_TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:sk-[A-Za-z0-9_-]{32,}+|hf_[A-Za-z0-9]{30,}+"
                          r"|gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{30,}+|AKIA[0-9A-Z]{16}(?![A-Za-z0-9])"
                          r"|xox[abposr]-[0-9]{6,}+-[A-Za-z0-9-]{10,}+)")


def _known_token(m: re.Match) -> str:
    """A match of :data:`_KNOWN_TOKEN` redacted when it looks generated (upper and lower case letters, and for
    'sk-' a digit too, as keys are; 'sk-learn-is-a-great-library-for-ml-models' is not), else kept."""
    word, body = m[0], m[0][3:]
    generated = any(c.isupper() for c in body) and any(c.islower() for c in body) and (
        any(c.isdigit() for c in body) or not word.startswith("sk-"))
    return REDACTED if generated or word.startswith(("AKIA", "xox")) else word
# 'NAME=VALUE' / 'NAME: VALUE' inside a text (a URL's query 'api_key=...', a header in a command 'X-Api-Key: ...'):
# a name starts where no name character precedes it, so each character begins at most one name (linear); only a
# credential's name has its value read (and skipped), so another name's value is searched for names in turn. A
# name may be a command-line flag ('--api-key=sk-1', and '--api-key sk-1' with a space) or a quoted key
# ("'api_key': 'sk-1'", a dict or JSON a server prints)
_NAME_SEP = re.compile(r"(?<![A-Za-z0-9_.-])(--?)?([A-Za-z][A-Za-z0-9_.-]*+)"
                       r"(?:(?:\\?+['\"])?+\s*+[=:]\s*+|(?(1)(?:[ \t]|\\\r?\n)++(?=[^\s-])|(?!)))")
# the value (group 2), after an opening bracket or quote (group 1) that is kept
_VALUE = re.compile(r"((?:[\[(]\s*+)?+(?:\\?+['\"])?+)((?i:(?:bearer|basic|token)\s++)?[^\s&'\";,#\\]++)")
_CLOSING = {"'": "'", '"': '"', "[": "]", "(": ")"}


def redact_text(text: str) -> str:
    """``text`` with the credentials written inside it redacted: a URL's user:password (:func:`_without_userinfo`)
    and the value of each credential-named ``NAME=VALUE`` or ``NAME: VALUE`` ('?api_key=sk-1', 'X-Api-Key: sk-1',
    'Authorization: Bearer sk-1', scheme included), flag (``--api-key sk-1``, ``--hf-token=hf_1``) or quoted key
    (``{'api_key': ['sk-1', 'sk-2']}``). Nothing else: a value's ordinary words ('a basic sum') are kept, since a
    resumed run reads its options back from config.yaml. Linear in the text."""
    if "@" in text:
        text = _without_userinfo(text)
    if "_" in text or "-" in text or "AKIA" in text:
        text = _KNOWN_TOKEN.sub(_known_token, text)
    if "=" in text or ":" in text or "-" in text:
        out, pos = [], 0
        for m in _NAME_SEP.finditer(text):
            if m.start() < pos:
                continue
            named = "".join(_name_parts(m[2]))
            if named in _SECRET_WHOLE:  # 'Answer key: 42' is prose; '?key=...' and '--key x' are credentials
                secret = bool(m[1]) or m.start() > 0 and text[m.start() - 1] in "?&"
            else:
                secret = is_secret_key(m[2])
            user = bool(m[1]) and m[2] in ("u", "user")  # curl -u user:password (not python -u, git push -u)
            if not secret and not user:
                continue
            value, start = _VALUE.match(text, m.end()), pos
            if user and (not value or not any(c.isalpha() for c in value[2].partition(":")[0])
                         or ":" not in value[2]):  # curl's user:password, not docker's --user 1000:1000
                continue
            if value:
                pos = value.end()
                opened, close = value[1][:1], -1
                if opened in _CLOSING:  # a quoted value, or a list of them, ends at its closing mark (looked for
                    close = text.find(_CLOSING[opened], value.start(2), value.start(2) + 1000)  # nearby): spaces,
                    pos = close if close >= 0 else pos  # commas and all
                quote = value[1][-1:] if close >= 0 and opened in "[(" and value[1][-1:] in ("'", '"') else ""
                out.append(text[start:value.start(2)] + REDACTED + quote)  # ['sk-1', 'sk-2'] -> ['<redacted>']
        text = "".join(out) + text[pos:]
    return text


def _without_userinfo(text: str) -> str:
    """``text`` with the user:password of each URL in it redacted ('https://user:tok@host/v1' ->
    'https://<redacted>@host/v1'; a base_url): in each run of text between spaces and quotes that holds an '@',
    what stands before its last '@' (a password may hold '@' or an unencoded '/'), after the '://' (or a leading
    '//'); with a scheme, any user (a token alone is a user: 'https://ghp_x@github.com'), without one only
    'user:password' ('admin:pw@host:8000', not 'me@example.org' or 'git@github.com:o/r'). Linear."""
    out, pos = [], 0
    for m in _WORD.finditer(text):
        word = m[0]
        at = word.rfind("@")
        if at < 0:
            continue
        scheme = word.find("://", 0, at)
        start = scheme + 3 if scheme >= 0 else 2 if word.startswith("//") else 0
        user = word[start:at]
        if not user or user == REDACTED or not _HOST_START.match(word, at + 1):
            continue
        name, colon, rest = user.partition(":")
        if scheme >= 0:  # 'user@', 'user:pw@', 'user:p/w@'; not 'host:8000/@fs' or 'host/q=from:@u'
            found = "/" not in user or colon and "/" not in name and not rest.split("/")[0].isdigit()
        else:  # 'admin:pw@host'; not 'me@example.org', 'mailto:me@x.org', '12:30@home'
            found = colon and "/" not in user and name.lower() != "mailto" and any(c.isalpha() for c in name)
        if found:
            out.append(text[pos:m.start() + start] + REDACTED)
            pos = m.start() + at
    return "".join(out) + text[pos:]


def redact_argv(argv: Sequence[str]) -> list[str]:
    """A command line with the value of every credential-named ``KEY=VALUE`` replaced by ``<redacted>``:
    ``--trainer-opt hub_token=hf_x`` and ``--sampler-opt=openai.api_key=sk`` (a ``TASK.`` or other dotted
    prefix included) keep their key and lose their value, as does the word after a flag such as ``--api-key``.
    For libraries that record ``sys.argv`` (wandb)."""
    out: list[str] = []
    for arg in map(str, argv):
        if out and (out[-1].startswith("--") and "=" not in out[-1] and is_secret_key(out[-1])
                    or out[-1] in ("-u", "--user")) and not arg.startswith("--"):  # --api-key sk-1, curl -u u:pw
            out.append(REDACTED)
            continue
        parts = arg.split("=")
        secret = next((i for i, part in enumerate(parts[:-1]) if is_secret_key(part.split(".")[-1])), None)
        out.append(redact_text(arg) if secret is None else "=".join(parts[: secret + 1]) + "=" + REDACTED)
    return out


def public_config(config: Any) -> dict[str, Any]:
    """A RunConfig (or a config dict, or None) as a dict a logger may keep: credentials redacted."""
    if config is None:
        return {}
    return redact(config.to_dict() if hasattr(config, "to_dict") else dict(config))


def without_secrets(obj: Any) -> Any:
    """``obj`` with every credential-named key left out: what a resumed run compares (a redacted key in the
    saved config.yaml never counts as a difference)."""
    if isinstance(obj, dict):
        return {k: without_secrets(v) for k, v in obj.items() if not is_secret_key(k)}
    if isinstance(obj, list):
        return [without_secrets(v) for v in obj]
    return redact_text(obj) if isinstance(obj, str) else obj


def drop_redacted(obj: Any) -> Any:
    """A saved config with its ``<redacted>`` values removed, so that the secret comes from the command line
    or the environment again (e.g. ``$OPENAI_API_KEY``), never the placeholder."""
    if isinstance(obj, dict):
        return {k: drop_redacted(v) for k, v in obj.items() if v != REDACTED}
    if isinstance(obj, list):
        return [drop_redacted(v) for v in obj]
    return obj


# -- code a run directory names: never run from the saved file alone -------------------------------------------
OPTION_FLAGS = {"task_options": "--task-opt", "sampler_options": "--sampler-opt", "trainer_options": "--trainer-opt"}

#: star-kit's own settings that a task factory is offered (when it declares them), each given by its flag: never a
#: task option (``--task-opt data_dir=...`` would skip the checks of ``--data-dir``)
RESERVED_OPTIONS = {"data_dir": "--data-dir", "skip_bad_rows": "--skip-bad-rows"}


def reserved_option_problem(key: str) -> str | None:
    """Why ``key`` cannot be a task option (:data:`RESERVED_OPTIONS`), or None."""
    return f"star-kit's own setting, not a task option: give {RESERVED_OPTIONS[key]}" if key in RESERVED_OPTIONS \
        else None


# Options that decide what runs, or where star-kit connects and sends data, other than a ``*_command``:
# ``launch_args`` (arguments of ``accelerate launch``, which can name any program: ``--no_python /bin/sh -c ...``),
# ``accelerate_config`` (the launch's machines and processes), ``address`` (a Ray cluster: the driver unpickles what
# its actors return), ``base_url`` (an OpenAI-compatible server: it receives every prompt, and the key from
# ``$OPENAI_API_KEY``), TRL's ``push_to_hub`` / ``hub_model_id`` (a repository the trained model is pushed to with
# the user's token), ``chat_template_path`` (a tokenizer fetched from the hub) and TRL's ``deepspeed`` (a DeepSpeed
# config, whose monitors write files anywhere and send metrics to W&B or Comet). A plugin's option of another name
# that does so should end in ``_command`` (the plugin guide says so).
CODE_OPTIONS = ("launch_args", "accelerate_config", "address", "base_url", "push_to_hub", "hub_model_id",
                "chat_template_path", "trust_remote_code", "deepspeed")


def is_command_key(name: str) -> bool:
    """Whether an option names code to run or where to run it (``reload_command``, any ``*_command``, and
    :data:`CODE_OPTIONS`): never taken from a run directory's config.yaml alone."""
    n = _option_name(name)
    return n in ("command", "cmd", *CODE_OPTIONS) or _names_command(n)


def _option_name(name: Any) -> str:
    return str(name).lower().replace("-", "_")


def _names_command(n: str) -> bool:
    """Whether an option name (lower case, '_' for '-') ends in ``_command`` or ``_cmd``."""
    return n.endswith(("_command", "_cmd"))


#: command keys that say where star-kit runs or connects, not what it computes: on ``--resume`` the value given then
#: is used and never counts as a changed key (``launch_args``, ``accelerate_config`` and ``chat_template_path`` are
#: compared: they change the effective batch or the prompts)
ENVIRONMENT_OPTIONS = ("base_url", "address", "push_to_hub", "hub_model_id")


def is_environment_key(name: str) -> bool:
    """Whether an option is a command or an address (``reload_command``, any ``*_command``,
    :data:`ENVIRONMENT_OPTIONS`): the user's environment, which may change between a run and its resume."""
    n = _option_name(name)
    return n in ("command", "cmd", *ENVIRONMENT_OPTIONS) or _names_command(n)


#: star-kit's samplers that send the prompts out of this process: ``openai`` (to ``$OPENAI_BASE_URL``, or a local port
#: anyone on the machine may listen on, when config.yaml names no ``base_url``, with ``$OPENAI_API_KEY``) and
#: ``ray`` (a cluster it starts, or ``$RAY_ADDRESS``'s). A run directory naming one is used only when the command
#: line names it again. (A plugin's sampler takes where it connects as ``base_url``, ``address`` or a
#: ``*_command``, which are withheld the same way: the plugin guide says so.)
REMOTE_SAMPLERS = ("openai", "ray")


def code_from_saved(saved: dict[str, Any], given: dict[str, Any], where: str) -> dict[str, Any]:
    """``saved`` (a run directory's config.yaml) without the keys that name code: ``plugins`` (modules to
    import), a sampler of :data:`REMOTE_SAMPLERS` and every option whose value is a command. A
    run directory is data: such a key is used only when the command line (flags or ``--config``; here ``given``)
    names it again, with the value given now (a server's restart script or address may change between a run and
    its resume), else this refuses in one line."""
    saved, named, again = _without_code(saved, given)
    if named:
        raise StarKitError(f"{where}: config.yaml names {' and '.join(named)}; a run directory is data, pass "
                           f"{' / '.join(again)} again to run it", 2)
    return saved


def flags_to_give_again(saved: dict[str, Any]) -> list[str]:
    """The flags a resume of a run with config.yaml ``saved`` must be given (:func:`code_from_saved`):
    ``['--sampler ray', '--plugin m', '--sampler-opt reload_command=...']``; [] when none."""
    return _without_code(saved, {})[2]


def _holds_command(value: Any, depth: int = 0) -> bool:
    """Whether an option's value (a plugin's dict of settings, a list of them) holds a ``*_command`` key at any
    depth (``{"server": {"start_command": ...}}``): the whole option is then withheld as a command is."""
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(_names_command(_option_name(k))  # (a key 'command' alone is a word in data)
                   and v not in (None, False, "", [], {}) or _holds_command(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_command(v, depth + 1) for v in value)
    return False


def _without_code(saved: dict[str, Any], given: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """``saved`` less its code keys, the keys ``given`` does not name again, and the flags that would."""
    saved = dict(saved)
    named, again = [], []
    sampler = saved.get("sampler")
    if sampler in REMOTE_SAMPLERS and not given.get("sampler"):
        named.append(f"sampler {sampler!r} (it sends the prompts out of this process)")
        again.append(f"--sampler {sampler}")
    raw = saved.pop("plugins", None) or []
    plugins = [p for p in (raw if isinstance(raw, list) else [raw]) if p]
    if plugins:
        mine = given.get("plugins") or []
        missing = [p for p in plugins if p not in mine]
        if missing:
            named.append(f"plugins {missing}")
            again.append(" ".join(f"--plugin {p}" for p in missing))
    for key, flag in OPTION_FLAGS.items():
        options = saved.get(key)
        if not isinstance(options, dict):
            continue
        options = dict(options)
        for name in [k for k in options if is_command_key(k) or _holds_command(options[k])]:
            value = options.pop(name)
            empty = value is None or value is False or (isinstance(value, (str, list, dict)) and not value)
            if empty or name in (given.get(key) or {}):  # nothing to run, or the user's own again (its value now)
                continue
            named.append(f"{key[:-len('_options')]} option {name}")
            again.append(f"{flag} {name}=...")
        saved[key] = options
    return saved, named, again


def nothing_to_resume(run_dir: Any) -> StarKitError:
    """The error of ``--resume DIR`` where DIR holds no config.yaml."""
    return StarKitError(f"--resume {run_dir}: no config.yaml there, nothing to resume", 2)


def changed_key(run_dir: Any, name: str, was: str, now: str) -> StarKitError:
    """The error of ``--resume DIR`` with a key that differs from config.yaml's (``was`` and ``now`` as shown)."""
    return StarKitError(f"--resume {run_dir}: config key {name!r} differs ({was} in config.yaml, {now} now)", 2)


def _schedule_problem(iteration: int, config: RunConfig) -> str | None:
    """Why ``steps_for(iteration)`` is no step count a trainer can run, or None."""
    try:
        return "0 training steps" if steps_for(iteration, config) < 1 else None
    except OverflowError:
        return "more training steps than can be counted"


def steps_for(iteration: int, config: RunConfig) -> int:
    """Training steps for iteration ``iteration`` (1-based): 40·1.2^(n-1) by default, as in the STaR code."""
    if iteration < 1:
        raise ValueError("iterations are 1-based")
    if config.step_schedule == "linear":
        return config.base_steps + 20 * (iteration - 1)
    return int(round(config.base_steps * config.step_growth ** (iteration - 1)))
