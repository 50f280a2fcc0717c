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
        self.max_new_tokens = 8

    def is_correct(self, predicted, gold):
        return predicted is not None


def first_word(text):
    words = text.split()
    return words[0] if words else None


@star_kit.hookimpl
def register_tasks(register):
    register("lenient-arithmetic", LenientArithmetic)


@star_kit.hookimpl
def register_extractors(register):
    register("first-word", first_word)


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
        import os
        from pathlib import Path

        path = Path(self.crash_file)
        done = len(path.read_text()) if path.exists() else 0
        if done < self.crashes:
            with open(path, "a") as fh:
                fh.write("x")
            os._exit(3)
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
