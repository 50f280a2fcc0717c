"""A base class for few-shot question/answer tasks (optional: any object satisfying ``protocols.Task`` works).

Prompt format (rationale, then a fixed answer phrase)::

    Q: <question>
    A: <rationale> The answer is <answer>.

For rationalization the hint follows the question, in the exemplars too, so the model sees the format::

    Q: <question> (Hint: the answer is <answer>.)

The task's lm-eval YAML (under ``tasks/``) is the single source of its generation settings: the stop strings
(``generation_kwargs.until``), ``max_gen_toks`` and the extractor named in its ``star_kit_extract`` filter.
"""

from __future__ import annotations

import inspect
import random
import zlib
from pathlib import Path
from typing import Any

import yaml

from .errors import DataError, StarKitError
from .records import Example, Exemplar


def parse_digits(spec: Any, key: str) -> list[int]:
    """A task option naming digit counts: '1-5' / '3' / '1,3' / [1, 2] -> sorted distinct counts (1 to 30);
    anything else is one StarKitError line naming the option ``key``."""
    try:
        if isinstance(spec, int):
            values = [spec]
        elif isinstance(spec, (list, tuple)):
            values = [int(v) for v in spec]
        else:
            text = str(spec).strip()
            if "-" in text:
                lo, hi = (int(p) for p in text.split("-", 1))
                if lo > hi:
                    raise StarKitError(f"task option {key}={spec!r}: a range runs from the smaller count to the "
                                       f"larger ('{hi}-{lo}')", 2)
                values = list(range(lo, hi + 1))
            else:
                values = [int(p) for p in text.split(",")]
    except ValueError:
        raise StarKitError(f"task option {key}={spec!r}: expected a digit range like '1-5'", 2) from None
    if not values or min(values) < 1 or max(values) > 30:
        raise StarKitError(f"task option {key}={spec!r}: digit counts must be between 1 and 30", 2)
    return sorted(set(values))


def held_out(key: str, share: float = 0.2) -> bool:
    """Whether the problem named ``key`` belongs to the evaluation split of a generated task: a fixed partition by
    a hash of the key (the same on every machine, for every seed), so that splits drawn with any seeds never share
    a problem (the Task protocol's promise). About ``share`` of all keys are held out. A task draws a problem
    for split "eval" until ``held_out`` is True, for "train" until it is False."""
    return zlib.crc32(key.encode("utf-8")) % 10_000 < share * 10_000


def load_lm_eval_yaml(path: Path) -> dict[str, Any]:
    """A task's lm-eval YAML; a file YAML cannot read is one line naming it and the line."""
    with open(path, encoding="utf-8") as fh:
        try:
            return yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            raise StarKitError(f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})", 2) from None


#: what lm-eval uses where a ``generate_until`` config's ``generation_kwargs`` lack them: the stop string (its
#: ``fewshot_delimiter``, "\n\n" unless the config sets another) and the token budget (HFLM's ``max_gen_toks``);
#: :meth:`FewShotTask.__init__` writes both into the config, so sampling and evaluation read the same values
DEFAULT_UNTIL = ("\n\n",)
DEFAULT_MAX_GEN_TOKS = 256


def generation_settings(config: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """(stop strings, token budget) of an lm-eval config's ``generation_kwargs`` (or of a request's, given as
    ``{"generation_kwargs": ...}``) as the evaluation reads them, lm-eval's defaults where absent: a string
    ``until`` is one stop string (as lm-eval takes it). The one reading of them (sampling, the evaluation's
    requests, the check of a task's own ``stop``/``max_new_tokens``); raises ValueError naming a bad value."""
    gen = config.get("generation_kwargs") or {}
    if not isinstance(gen, dict):
        raise ValueError(f"generation_kwargs is {gen!r}, not a mapping")
    until = gen.get("until", (config.get("fewshot_delimiter") or DEFAULT_UNTIL[0],))
    until = (until,) if isinstance(until, str) else until
    if not isinstance(until, (list, tuple)) or not all(isinstance(u, str) for u in until):
        raise ValueError(f"generation_kwargs.until is {until!r}, not a string or a list of strings")
    budget = gen.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"generation_kwargs.max_gen_toks is {budget!r}, not a whole number of tokens >= 1")
    return tuple(until), budget


def extract_filter(config: dict[str, Any]) -> tuple[str, str] | None:
    """(filter pipeline name, extractor name) of the lm-eval config's ``star_kit_extract`` step, or None."""
    for flt in config.get("filter_list") or []:
        for step in flt.get("filter") or []:
            if step.get("function") == "star_kit_extract" and isinstance(step.get("extractor"), str):
                return flt.get("name", "none"), step["extractor"]
    return None


#: What a task's lm-eval config must hold (star-kit fills in ``dataset_kwargs.data_files``).
LM_EVAL_REQUIRED = {
    "task": "a name",
    "dataset_path": "json",
    "test_split": "the split name data_files uses (test)",
    "output_type": "generate_until",
    "doc_to_text": '"{{prompt}}"',
    "doc_to_target": '"{{answer}}"',
}


def lm_eval_config_problems(config: Any) -> list[str]:
    """What is wrong with a task's lm-eval config ([] when nothing): a missing required key, an
    ``output_type`` other than ``generate_until``, no ``star_kit_extract`` filter naming an extractor."""
    if not isinstance(config, dict):
        return [f"expected a mapping, got {type(config).__name__}"]
    problems = [f"no {key!r} key ({what})" for key, what in LM_EVAL_REQUIRED.items() if key not in config]
    if config.get("output_type", "generate_until") != "generate_until":
        problems.append(f"output_type is {config['output_type']!r}; star-kit evaluates generate_until only")
    if config.get("dataset_path", "json") != "json":
        problems.append(f"dataset_path is {config['dataset_path']!r}; star-kit renders the questions as json")
    try:
        found = extract_filter(config)
    except (AttributeError, KeyError, TypeError):
        found = None
    if found is None:
        problems.append("no filter_list step `function: star_kit_extract` with `extractor: NAME`")
    return problems


def load_exemplars(path: Path) -> list[Exemplar]:
    """Few-shot exemplars from a JSONL file of {question, rationale, answer}; errors name file and line."""
    from .data import read_jsonl_rows

    exemplars = []
    for row in read_jsonl_rows(Path(path)):
        try:
            exemplars.append(Exemplar(*(str(row.data[key]) for key in ("question", "rationale", "answer"))))
        except KeyError as exc:
            raise DataError(f"{row.where}: bad exemplar (no {exc} field; each line holds question, rationale, "
                            "answer)") from None
    if not exemplars:  # a few-shot prompt without shots: every model would be prompted with the question alone
        raise DataError(f"{path}: no exemplars (the file has no rows; each line holds question, rationale, answer)")
    return exemplars


def yaml_overrides(task: Any) -> list[str]:
    """Where a :class:`FewShotTask` subclass declares ``stop``, ``max_new_tokens`` or ``extractor`` as a class
    attribute and its lm-eval YAML's value replaced it (``FewShotTask.__init__`` sets them from the YAML): the YAML
    would silently win, in sampling and evaluation. A value set on the instance after ``super().__init__()`` is the
    subclass's own choice and passes."""
    given = getattr(task, "from_yaml", None)
    if not isinstance(given, dict):
        return []
    where = {"stop": "generation_kwargs.until", "max_new_tokens": "generation_kwargs.max_gen_toks",
             "extractor": "its star_kit_extract filter's extractor"}
    problems = []
    for attr, key in where.items():
        declared = inspect.getattr_static(type(task), attr, None)
        if declared is None or hasattr(declared, "__get__") or attr not in given:
            continue  # not a plain class attribute (a property or other descriptor computes its own)
        value = getattr(task, attr, None)
        if attr == "stop":
            declared = (declared,) if isinstance(declared, str) else tuple(declared) \
                if isinstance(declared, (list, tuple)) else declared
            value = tuple(value) if isinstance(value, (list, tuple)) else value
        if value == (tuple(given[attr]) if attr == "stop" else given[attr]) and declared != value:
            shown = list(value) if attr == "stop" else value
            problems.append(f"class attribute {attr} = {declared!r} of {type(task).__name__} is replaced by {key} "
                            f"{shown!r} (FewShotTask sets it from the YAML): set it in the YAML, or on the instance "
                            f"after super().__init__()")
    return problems


class FewShotTask:
    """Shared prompt/target/hint logic; subclasses provide ``name``, data and the YAML/exemplar files."""

    name: str = ""
    answer_phrase = "The answer is"
    verifier: str | None = None  # name of the registered verifier for this task's rationales (None: none)
    lm_eval_yaml: Path
    fewshot_file: Path

    def __init__(self, data_dir: str | None = None, skip_bad_rows: bool = False, rationales: bool = True,
                 **options: Any) -> None:
        """``rationales=False`` turns the task into its direct-answer baseline: the exemplars show only
        "The answer is X." (few-shot direct prompting; direct fine-tuning on gold answers)."""
        self.data_dir = data_dir
        self.options = options
        #: with ``skip_bad_rows``, malformed data rows are dropped and described here (else they raise)
        self.skipped_rows: list[str] | None = [] if skip_bad_rows else None
        self.lm_eval_config = load_lm_eval_yaml(self.lm_eval_yaml)
        if not isinstance(self.lm_eval_config, dict):
            raise StarKitError(f"{self.lm_eval_yaml}: not a mapping of lm-eval task keys", 2)
        try:
            self.stop, self.max_new_tokens = generation_settings(self.lm_eval_config)
        except ValueError as exc:
            raise StarKitError(f"{self.lm_eval_yaml}: {exc}", 2) from None
        # written back, so that lm-eval's requests (evaluation) carry what sampling uses
        gen = self.lm_eval_config.get("generation_kwargs") or {}
        self.lm_eval_config["generation_kwargs"] = {**gen, "until": list(self.stop),
                                                    "max_gen_toks": self.max_new_tokens}
        self.extractor: str = self._extractor_from_yaml()
        #: what the YAML set (a subclass's class attribute of these is overridden: yaml_overrides says so)
        self.from_yaml = {"stop": self.stop, "max_new_tokens": self.max_new_tokens, "extractor": self.extractor}
        self._fewshot = load_exemplars(self.fewshot_file)
        self.rationales = bool(rationales)
        if not self.rationales:
            self._fewshot = [Exemplar(ex.question, "", ex.answer) for ex in self._fewshot]

    def _extractor_from_yaml(self) -> str:
        found = extract_filter(self.lm_eval_config)
        if found is None:
            raise DataError(f"{self.lm_eval_yaml}: no star_kit_extract filter naming the task's extractor")
        return found[1]

    # -- data --------------------------------------------------------------------------------------------
    def examples(self, split: str, n: int | None, seed: int) -> list[Example]:
        rows = self.load_split(split, seed)
        rows = list(rows)
        random.Random(f"{self.name}:{split}:{seed}").shuffle(rows)
        return rows if n is None else rows[:n]

    def load_split(self, split: str, seed: int) -> list[Example]:
        raise NotImplementedError(f"{type(self).__name__} implements neither examples(split, n, seed) nor "
                                  f"load_split(split, seed)")

    # -- prompts -----------------------------------------------------------------------------------------
    def fewshot(self) -> list[Exemplar]:
        return list(self._fewshot)

    def format_question(self, question: str, fields: dict[str, Any]) -> str:
        return question

    def hint_text(self, answer: str, fields: dict[str, Any]) -> str:
        return f"(Hint: the answer is {answer}.)"

    def exemplar_fields(self, exemplar: Exemplar) -> dict[str, Any]:
        """The ``fields`` an exemplar's hint is written from (an Example's own for a question); none by default."""
        return {}

    def hint(self, example: Example) -> str:
        return self.hint_text(example.answer, example.fields)

    def quotes_hint(self, example: Example, text: str) -> bool:
        """Whether ``text`` (a rationalized completion) repeats the hint; such a rationale is not trained on."""
        return self.hint(example) in text or "(Hint:" in text

    def _block(self, question: str, hint: str | None) -> str:
        return f"Q: {question}" + (f" {hint}" if hint else "") + "\nA:"

    def prompt(self, example: Example, hint: bool = False, fewshot: bool = True) -> str:
        parts = []
        for ex in self._fewshot if fewshot else ():
            ex_hint = self.hint_text(ex.answer, self.exemplar_fields(ex)) if hint else None
            parts.append(self._block(ex.question, ex_hint) + self.target(ex.rationale, ex.answer))
        question = self.format_question(example.question, example.fields)
        parts.append(self._block(question, self.hint(example) if hint else None))
        return "".join(parts)

    def rationale_of(self, completion: str) -> str:
        cut = completion.rfind(self.answer_phrase)
        return (completion[:cut] if cut >= 0 else completion).strip()

    def target(self, rationale: str, answer: str) -> str:
        rationale = rationale.strip()
        if rationale and rationale[-1] not in ".!?":
            rationale += "."
        body = f"{rationale} {self.answer_phrase} {answer}." if rationale else f"{self.answer_phrase} {answer}."
        return " " + body + self.stop[0]

    def is_correct(self, predicted: str | None, gold: str) -> bool:
        return predicted is not None and predicted == gold


class DatasetTask(FewShotTask):
    """A task over a fixed dataset: local JSONL files under a data folder (``--data-dir``) or a hub dataset.

    Subclasses set ``local_files`` and ``hub_splits`` (star-kit split -> file / :class:`star_kit.data.HubSource`),
    optionally ``split_aliases`` and ``adapt_hub`` (a hub record -> the local layout), and implement
    ``parse_row(row, split) -> Example`` raising :class:`DataError` on a malformed row.
    """

    local_files: dict[str, str] = {}
    hub_splits: dict[str, Any] = {}
    split_aliases: dict[str, str] = {}
    adapt_hub = None

    def __init__(self, data_dir: str | None = None, skip_bad_rows: bool = False, rationales: bool = True) -> None:
        super().__init__(data_dir=data_dir, skip_bad_rows=skip_bad_rows, rationales=rationales)
        self._cache: dict[str, list[Example]] = {}

    def parse_row(self, row: Any, split: str) -> Example:
        raise NotImplementedError(f"{type(self).__name__} does not implement parse_row(row, split)")

    def load_split(self, split: str, seed: int) -> list[Example]:
        from .data import load_rows, parse_rows
        from .errors import StarKitError

        split = self.split_aliases.get(split, split)
        if split not in self.local_files:
            raise StarKitError(f"task {self.name!r}: unknown split {split!r} ({', '.join(self.local_files)})", 2)
        if split not in self._cache:
            adapt = type(self).adapt_hub
            rows = load_rows(self.name, self.data_dir, self.local_files[split], self.hub_splits[split],
                             adapt, self.skipped_rows)
            self._cache[split] = parse_rows(rows, lambda row: self.parse_row(row, split), self.skipped_rows)
        return self._cache[split]
