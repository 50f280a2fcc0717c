"""The lm-eval bridge: evaluates a sampler's loaded model on a task through ``lm_eval.simple_evaluate``.

The task's YAML (under ``tasks/``) is a regular lm-eval ``generate_until`` config. star-kit renders the
evaluation examples with the task's own few-shot prompt into ``eval_docs.jsonl`` and points the config's
``data_files`` at it, so training-time sampling and evaluation see the same prompts. Extraction runs as the
lm-eval filter ``star_kit_extract`` (the task's registered extractor); each filtered answer is scored with the
task's own ``is_correct`` (the same check that filters the training rationales), not lm-eval's ``exact_match``
(which lm-eval still computes; it is kept in ``eval.json`` under ``lm_eval`` only).
Generation goes through star-kit's sampler, wrapped as an lm-eval ``LM``, so every backend evaluates the same way.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import StarKitError
from .protocols import Advance, Sampler, Task
from .records import Example, GenerationParams
from .store import write_json, write_jsonl
from .task import extract_filter

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

    return lm_eval, LM


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


def sampler_lm(sampler: Sampler, advance: Advance | None = None):
    """An lm-eval ``LM`` whose ``generate_until`` runs on a star-kit sampler."""
    _, LM = _lm_eval()

    class SamplerLM(LM):
        def __init__(self) -> None:
            super().__init__()

        def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
            groups: dict[tuple, list[int]] = defaultdict(list)
            for i, req in enumerate(requests):
                context, kwargs = req.args
                until = kwargs.get("until") or []
                until = (until,) if isinstance(until, str) else tuple(until)
                do_sample = bool(kwargs.get("do_sample", False))
                temperature = float(kwargs.get("temperature", 0.0)) if do_sample else 0.0
                key = (until, int(kwargs.get("max_gen_toks", 256)), temperature, float(kwargs.get("top_p", 1.0)))
                groups[key].append(i)
            out: list[str] = [""] * len(requests)
            for (until, max_toks, temperature, top_p), idx in groups.items():
                params = GenerationParams(max_new_tokens=max_toks, temperature=temperature, top_p=top_p,
                                          n=1, stop=until)
                texts = sampler.generate([requests[i].args[0] for i in idx], params, advance)
                for i, t in zip(idx, texts):
                    out[i] = t[0]
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


def evaluate(
    task: Task,
    sampler: Sampler,
    examples: Sequence[Example],
    out_dir: Path,
    registry=None,
    advance: Advance | None = None,
) -> EvalResult:
    """Evaluate the sampler's model on ``examples``; writes ``eval_docs.jsonl``, ``eval.json`` and
    ``eval_samples.jsonl`` in ``out_dir``."""
    global _ACTIVE_REGISTRY
    lm_eval, _ = _lm_eval()
    out_dir = Path(out_dir)
    docs_path = out_dir / "eval_docs.jsonl"
    write_jsonl(docs_path, ({"id": e.id, "prompt": task.prompt(e), "answer": e.answer} for e in examples))
    config = copy.deepcopy(task.lm_eval_config)
    config.setdefault("dataset_kwargs", {}).setdefault("data_files", {})["test"] = str(docs_path.resolve())
    task_name = config["task"]
    found = extract_filter(config)
    if found is None:
        raise StarKitError(f"lm-eval config {task_name!r}: no filter applies star_kit_extract")
    for flt in config["filter_list"]:  # the task's extractor, the one its training samples were graded with
        for step in flt.get("filter") or []:
            if step.get("function") == "star_kit_extract":
                step["extractor"] = task.extractor
    flt = found[0]
    _ACTIVE_REGISTRY = registry
    try:
        from lm_eval.tasks import TaskManager

        results = lm_eval.simple_evaluate(
            model=sampler_lm(sampler, advance),
            tasks=[config],
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
    gold = {e.id: e.answer for e in examples}
    rows = []
    logged = [s for s in results["samples"][task_name] if s.get("filter", flt) == flt]  # the star_kit pipeline's
    for s in sorted(logged, key=lambda s: s["doc_id"]):
        predicted = s["filtered_resps"][0]
        predicted = None if predicted == NO_ANSWER else predicted
        answer = gold.get(s["doc"]["id"], s["target"])
        rows.append({
            "example_id": s["doc"]["id"],
            "completion": s["resps"][0][0],
            "predicted": predicted,
            "gold": answer,
            "correct": bool(task.is_correct(predicted, answer)),
        })
    accuracy, stderr = mean_and_stderr([r["correct"] for r in rows])
    no_answer = sum(1 for r in rows if r["predicted"] is None)
    summary = {"task": task_name, "metric": "task.is_correct", "accuracy": accuracy, "stderr": stderr,
               "n": len(rows), "no_answer": no_answer,
               "lm_eval": {k: v for k, v in results.items() if k not in ("samples",)}}
    write_jsonl(out_dir / "eval_samples.jsonl", rows)
    write_json(out_dir / "eval.json", json.loads(json.dumps(summary, default=str)))
    return EvalResult(accuracy, stderr, len(rows), no_answer, rows, summary)
