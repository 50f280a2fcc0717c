"""A plugin used by the tests, loaded through STAR_KIT_PLUGINS (the same path ``--plugin`` takes).

``lenient-arithmetic`` accepts any non-empty completion as correct, so that a randomly initialised tiny model
still produces a training set and the whole loop (TRL training, lm-eval evaluation) runs in seconds.
"""

import star_kit
from star_kit_plugins.arithmetic import ArithmeticTask


class LenientArithmetic(ArithmeticTask):
    name = "lenient-arithmetic"
    verifier = None  # a random tiny model never writes a valid addition; see the "even-examples" verifier

    def __init__(self, data_dir=None, **options):
        super().__init__(data_dir=data_dir, **options)
        self.verifier = None  # the task's format sets its own verifier; this task accepts any answer
        self.extractor = "first-word"
        self.max_new_tokens = 8  # sampling and evaluation read one budget (checked when the task is created)
        self.lm_eval_config["generation_kwargs"]["max_gen_toks"] = 8

    def is_correct(self, predicted, gold):
        return predicted is not None


def first_word(text):
    words = text.split()
    return words[0] if words else None


class RaisingTask(ArithmeticTask):
    """A task whose data loading has a bug: its errors must name this plugin, not a traceback."""

    def examples(self, split, n, seed):
        raise KeyError("split table")


class NoTaskKeyTask(ArithmeticTask):
    """A task whose lm-eval config lacks its ``task`` key: refused when it is created, naming this plugin."""

    def __init__(self, **options):
        super().__init__(**options)
        self.lm_eval_config = {k: v for k, v in self.lm_eval_config.items() if k != "task"}


class RaisingExtractorTask(ArithmeticTask):
    """Arithmetic whose extractor raises on every text."""

    def __init__(self, **options):
        super().__init__(**options)
        self.extractor = "raising-extractor"


def raising_extractor(text):
    raise ValueError("extractor bug")


class NeverAnsweringTask(ArithmeticTask):
    """Arithmetic whose extractor finds no answer in any text (a plugin bug that reads as 0%)."""

    def __init__(self, **options):
        super().__init__(**options)
        self.extractor = "never"


@star_kit.hookimpl
def register_tasks(register):
    register("lenient-arithmetic", LenientArithmetic)
    register("raising-task", RaisingTask)
    register("no-task-key", NoTaskKeyTask)
    register("raising-extractor-task", RaisingExtractorTask)
    register("never-answering-task", NeverAnsweringTask)


@star_kit.hookimpl
def register_extractors(register):
    register("first-word", first_word)
    register("raising-extractor", raising_extractor)
    register("never", lambda text: None)


def even_examples(example, rationale):
    """Accepts the rationales of even-numbered examples only: a deterministic split whatever a tiny model writes."""
    return None if int(example.id[-1]) % 2 == 0 else f"odd example {example.id}"


def raising_verifier(example, rationale):
    raise ValueError("verifier bug")


@star_kit.hookimpl
def register_verifiers(register):
    register("even-examples", even_examples)
    register("raising", raising_verifier)


class BrokenSampler:
    """Loads nothing and fails on generate, to check that errors name the plugin."""

    def __init__(self, model, **options):
        self.model = model

    def generate(self, prompts, params, advance=None):
        raise RuntimeError("CUDA kernel exploded")

    def load(self, model):
        self.model = model

    def close(self):
        pass


class CrashingHF:
    """The real ``hf`` sampler, in a process that dies (``os._exit``) on its first ``generate`` calls: how the
    ``ray`` sampler's restart-and-retry is tested. ``crash_file`` counts the crashes so far (shared by restarted
    actors); the process dies while fewer than ``crashes`` are recorded there."""

    def __init__(self, model, crash_file, crashes=1, **options):
        from star_kit_plugins.hf_sampler import HFSampler

        self.inner = HFSampler(model, **options)
        self.crash_file, self.crashes = crash_file, crashes
        self.model = self.inner.model

    def generate(self, prompts, params, advance=None):
        import fcntl
        import os

        # Count and record a crash under a lock: two actors checking at once must not both crash for one slot.
        with open(self.crash_file, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            if len(fh.read()) < self.crashes:
                fh.write("x")
                fh.flush()
                os._exit(3)  # the lock goes with the process
        return self.inner.generate(prompts, params, advance)

    def load(self, model):
        self.inner.load(model)
        self.model = model

    def close(self):
        self.inner.close()


@star_kit.hookimpl
def register_samplers(register):
    register("broken", BrokenSampler)
    register("crashing-hf", CrashingHF)
    register("scripted", ScriptedSampler)


# -- a scripted sampler and a recording trainer: the whole loop, no model, seconds ---------------------------
import re  # noqa: E402

#: what the scripted sampler and the recording trainer saw, in order (tests reset it)
EVENTS: list[tuple] = []
_HINTED = re.compile(r"\(Hint: the answer is (\([a-e]\)|-?\d+)")
_SUM = re.compile(r"Q: (\d+) \+ (\d+) = \?")


class ScriptedSampler:
    """Answers by script, never by a model: a hinted prompt gets the hinted answer with a hint-free rationale;
    an addition is answered right when its sum is divisible by 3 (else off by one); anything else gets "(e)".
    Every ``generate`` records the model loaded then and whether the prompts carried the hint."""

    def __init__(self, model: str, delay: float = 0.0, fail_init: bool = False):
        if fail_init:
            raise RuntimeError("no such device")
        self.model = model
        EVENTS.append(("init", model))

    def answer(self, prompt):
        last = prompt.rsplit("Q: ", 1)[-1]
        hinted = _HINTED.search(last)
        if hinted:
            return f" Working it out step by step gives it. The answer is {hinted.group(1)}."
        add = _SUM.search("Q: " + last)
        if add:
            total = int(add.group(1)) + int(add.group(2))
            return f" I add them. The answer is {total if total % 3 == 0 else total + 1}."
        return " It must be the last one. The answer is (e)."

    def generate(self, prompts, params, advance=None):
        hinted = any(_HINTED.search(p.rsplit("Q: ", 1)[-1]) for p in prompts)
        EVENTS.append(("generate", self.model, hinted))
        if advance:
            advance(len(prompts))
        return [[self.answer(p)] * params.n for p in prompts]

    def load(self, model):
        EVENTS.append(("load", model))
        self.model = model

    def close(self):
        EVENTS.append(("close",))


class RecordingTrainer:
    """Records what it is given and saves a stand-in model folder (a config.json)."""

    def __init__(self, lr: float = 0.1):
        self.lr = lr

    def train(self, base_model, examples, steps, output_dir, seed=0, advance=None):
        import json
        from pathlib import Path

        EVENTS.append(("train", base_model, steps, [e.to_dict() for e in examples]))
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True)
        (output_dir / "config.json").write_text(json.dumps({"steps": steps}))
        return output_dir


@star_kit.hookimpl
def register_trainers(register):
    register("recording", RecordingTrainer)
