"""What a plugin author and a user meet at the edges: options, errors attributed to the plugin that raised, the
start-up order (nothing written before everything is checked), the lm-eval config and protocol checks, the
loggers' fields, and one notion of "right" (Task.is_correct) from filtering to evaluation."""

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import types

import pytest

import star_kit
from star_kit.cli import main
from star_kit.cli_common import key_value
from star_kit.config import RunConfig, load_config_file
from star_kit.errors import PluginError, StarKitError
from star_kit.records import GenerationParams, IterationResult
from star_kit.registry import Registry, load_registry
from test_loop_scripted import base_model, scripted_run  # noqa: F401  (fixture)


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, star_kit.hookimpl(fn))
    return mod


def _run(tmp_path, base_model, *flags):
    return main(["run", "--model", base_model, "--sampler", "scripted", "--trainer", "recording", "--verifier",
                 "none", "--out", str(tmp_path / "run"), "--no-progress", "--iterations", "1", "--train-size", "3",
                 "--eval-size", "2", *flags])


# 1. core options are offered, not forced ----------------------------------------------------------------------
def test_skip_bad_rows_is_not_forced_into_a_task_that_reads_no_files(test_plugin, tmp_path, base_model):
    star, history, _, lines = scripted_run(test_plugin, tmp_path, base_model, iterations=1, skip_bad_rows=True)
    assert history[-1].iteration == 1
    assert any("--skip-bad-rows is not used: task 'arithmetic'" in line for line in lines)


# 2. STAR_KIT_LOAD_PLUGINS selects third-party plugins; the built-ins stay ----------------------------------------
def test_load_plugins_filter_keeps_the_builtins(test_plugin, monkeypatch):
    monkeypatch.setenv("STAR_KIT_LOAD_PLUGINS", "star-kit-multiply")
    registry = load_registry()
    assert "hf" in registry.names("samplers") and "trl-sft" in registry.names("trainers")
    assert "arithmetic" in registry.names("tasks")


# 3. a Task method that raises is attributed to its plugin (run and bench) -----------------------------------------
def test_a_task_that_raises_is_named_in_run_and_bench(test_plugin, tmp_path, base_model, capsys):
    assert _run(tmp_path, base_model, "--task", "raising-task") == 1
    err = capsys.readouterr().err.strip()
    assert "task 'raising-task' (plugin 'plugins_for_tests', distribution '(--plugin)') failed: KeyError" in err
    # where in the plugin's code: its method, file and line (the plugin is a module here: shown by its file name)
    import plugins_for_tests
    line = inspect.getsourcelines(plugins_for_tests.RaisingTask.examples)[1] + 1
    assert err.endswith(f"(in RaisingTask.examples() at plugins_for_tests.py:{line})")
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "config.yaml").exists()
    assert main(["bench", "--model", base_model, "--tasks", "raising-task", "--sampler", "scripted",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "task 'raising-task' (plugin 'plugins_for_tests'" in err and "Traceback" not in err


_BAD_EXAMPLES = """
import star_kit
from star_kit.records import Example
from star_kit_plugins.arithmetic import ArithmeticTask


def _task(kind):
    class Bad(ArithmeticTask):
        def examples(self, split, n, seed):
            good = super().examples(split, n, seed)
            return {"dicts": [e.to_dict() for e in good], "dup": [good[0], good[0]],
                    "none": [Example(good[0].id, good[0].question, None)], "few": good[:2],
                    "many": super().examples(split, None if n is None else n + 2, seed),
                    "overlap": super().examples("train", n, seed)}[kind]
    return Bad


@star_kit.hookimpl
def register_tasks(register):
    for kind in ("dicts", "dup", "none", "few", "many", "overlap"):
        register("bad-" + kind, _task(kind))
"""


@pytest.mark.parametrize("kind, message", [
    ("dicts", "examples('train', ...) item 0 is a dict, not a star_kit.records.Example"),
    ("dup", "repeats the id"),
    ("none", "has the gold answer None: a non-empty string is needed"),
    ("many", "returned 5 examples from examples('train', 3, ...), more than the 3 asked for"),
    ("overlap", "examples('eval', ...) returned 2 of the training examples (first 'train-"),
])
def test_a_task_returning_bad_examples_is_one_line_before_any_work(kind, message, test_plugin, tmp_path, base_model,
                                                                   monkeypatch, capsys):
    (tmp_path / "badexamples.py").write_text(_BAD_EXAMPLES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STAR_KIT_PLUGINS", f"{test_plugin},badexamples")
    assert _run(tmp_path, base_model, "--task", f"bad-{kind}") == 1
    err = capsys.readouterr().err.strip()
    assert f"task 'bad-{kind}' (plugin 'badexamples'" in err and message in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_fewer_examples_than_asked_is_a_note(test_plugin, tmp_path, base_model, monkeypatch, capsys):
    (tmp_path / "badexamples.py").write_text(_BAD_EXAMPLES)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STAR_KIT_PLUGINS", f"{test_plugin},badexamples")
    assert _run(tmp_path, base_model, "--task", "bad-few") == 0
    captured = capsys.readouterr()
    assert "gave 2 train examples of the 3 asked for (all it has)" in captured.out + captured.err


# 4. a task's lm-eval config is checked when the task is created ---------------------------------------------------
def test_an_lm_eval_config_without_task_key_names_the_task_plugin(test_plugin):
    with pytest.raises(PluginError) as err:
        load_registry().create("tasks", "no-task-key")
    message = str(err.value)
    assert message.startswith("task 'no-task-key' (plugin 'plugins_for_tests'") and "no 'task' key" in message
    assert "sampler" not in message and err.value.exit_code == 2


# 5. an extractor that raises warns once; iteration 0 records its no-answer count ---------------------------------
def test_a_raising_extractor_warns_once_and_no_answer_is_recorded(test_plugin, tmp_path, base_model, capsys):
    star, history, _, _ = scripted_run(test_plugin, tmp_path, base_model, task="raising-extractor-task",
                                       iterations=1, train_size=4, eval_size=3)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "raising-extractor" in line]
    assert len(warnings) == 1 and "ValueError: extractor bug" in warnings[0] and "plugins_for_tests" in warnings[0]
    baseline = json.loads(star.store.metrics_path.read_text().splitlines()[0])
    assert baseline["iteration"] == 0 and baseline["no_answer"] == 3 == history[0].no_answer
    assert history[1].no_answer == 4


def test_an_extractor_that_never_finds_an_answer_is_said_once(test_plugin, tmp_path, base_model, capsys):
    """No answer in any of 8 or more completions: a warning naming the extractor and the file, once; the accuracy
    of 0 stands (the completions may truly hold none)."""
    star, history, _, _ = scripted_run(test_plugin, tmp_path, base_model, task="never-answering-task",
                                       iterations=1, train_size=4, eval_size=8)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "'never'" in line]
    assert len(warnings) == 1 and "found no answer in any of 8 completions (see " in warnings[0]
    assert "iter_00" in warnings[0] and "eval_samples.jsonl" in warnings[0]
    assert history[0].accuracy == 0 and history[0].eval_no_answer == 8


def test_a_bench_without_out_does_not_point_at_samples_it_deletes(test_plugin, base_model, tmp_path, capsys):
    """bench without --out evaluates in a temporary folder, gone when the warning is read: it says how to keep
    the completions instead; with --out it names the file."""
    command = ["bench", "--model", base_model, "--tasks", "never-answering-task", "--limit", "8", "--sampler",
               "scripted", "--no-progress"]
    assert main(command) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "found no answer" in line]
    assert len(warned) == 1 and "(bench --out DIR keeps them to look at)" in warned[0]
    assert main([*command, "--out", str(tmp_path / "kept")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "found no answer" in line]
    assert len(warned) == 1 and f"(see {tmp_path / 'kept'}" in warned[0]


# 6. everything that can fail is checked before config.yaml is written and before a model loads --------------------
@pytest.mark.parametrize("flags,message", [
    (["--trainer-opt", "nope=1"], "trainer 'recording' (plugin 'plugins_for_tests', distribution '(--plugin)') "
                                  "has no option 'nope'; its options: lr"),
    (["--trainer-opt", "lr=fast"], "trainer 'recording' (plugin 'plugins_for_tests', distribution '(--plugin)'): "
                                   "option lr='fast' is not a number"),
    (["--sampler-opt", "delay=soon"], "sampler 'scripted' (plugin 'plugins_for_tests', distribution '(--plugin)'): "
                                      "option delay='soon' is not a number"),
    (["--sampler-opt", "fail_init=true"], "sampler 'scripted' (plugin 'plugins_for_tests', distribution "
                                          "'(--plugin)') failed: RuntimeError: no such device"),
])
def test_a_failed_start_leaves_nothing_that_blocks_the_next(test_plugin, tmp_path, base_model, capsys, flags,
                                                            message):
    import plugins_for_tests

    plugins_for_tests.EVENTS.clear()
    assert _run(tmp_path, base_model, *flags) in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # no config.yaml, and no empty run directory either
    if "fail_init" not in str(flags):
        assert plugins_for_tests.EVENTS == []  # no model was loaded
    assert _run(tmp_path, base_model) == 0  # the same directory, without the bad option: a fresh run


# 7. KEY=VALUE: one rule; options checked against the factory's annotations ---------------------------------------
def test_key_value_one_rule():
    assert key_value("learning_rate=1e-4") == ("learning_rate", 1e-4)
    assert key_value("batch-size=8") == ("batch_size", 8)
    assert key_value("lora=true") == ("lora", True) and key_value("lora=False") == ("lora", False)
    assert key_value("x=no") == ("x", "no") and key_value("x=null") == ("x", "null")
    assert key_value("served_model={model}") == ("served_model", "{model}")
    assert key_value("digits=1-3") == ("digits", "1-3")
    # an integer as Python writes it is a number; one with a leading zero or sign keeps its text (an id, a key)
    assert key_value("api_key=0123") == ("api_key", "0123") and key_value("n=+5") == ("n", "+5")
    assert key_value("n=-5") == ("n", -5) and key_value("n=10") == ("n", 10)


def test_config_file_options_read_numbers_as_numbers(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trainer_options: {learning_rate: 1e-4, lora: true, name: no}\n")
    assert load_config_file(cfg)["trainer_options"] == {"learning_rate": 1e-4, "lora": True, "name": False}


def test_options_are_checked_against_annotations():
    registry = load_registry()
    with pytest.raises(PluginError, match=r"^sampler 'hf' \(plugin 'hf', distribution 'star-kit'\): option "
                                          r"prefix_cache='yes' is not true or false$"):
        registry.check_options("samplers", "hf", "m", prefix_cache="yes")
    registry.check_options("samplers", "hf", "m", batch_size="auto", dtype="float32")  # int | Literal["auto"], a Literal
    with pytest.raises(PluginError, match=r": option engine='prefx' is not 'auto' or 'prefix' or 'generate' \(did you "
                                          r"mean 'prefix'\?\)$"):
        registry.check_options("samplers", "hf", "m", engine="prefx")
    registry.check_options("trainers", "trl-sft", launch_args=["--x"], learning_rate=1e-4)  # **sft_options


@pytest.mark.parametrize("flag", ["--task-opt", "--sampler-opt", "--trainer-opt"])
@pytest.mark.parametrize("key", ["name", "kind"])
def test_an_option_named_like_the_registrys_own_arguments_is_an_option(flag, key, capsys):
    """``name`` and ``kind`` are positional-only in Registry.create/check_options: as an option they are the
    plugin's (unknown to the built-ins: one line), never a TypeError."""
    assert main(["run", "--print-config", flag, f"{key}=x"]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and "Traceback" not in err and "multiple values" not in err


def test_an_option_of_that_name_reaches_a_factory_that_declares_it():
    registry = Registry()
    made = []

    def factory(name: str = "a", kind: int = 0):
        made.append((name, kind))
        return factory

    registry.add_plugin(_module("named", register_trainers=lambda register: register("named", factory)), "named", "d")
    registry.collect()
    registry.check_options("trainers", "named", name="b", kind=2)
    with pytest.raises(Exception):  # not a Trainer: refused after the call, which got the options
        registry.create("trainers", "named", name="b", kind=2)
    assert made == [("b", 2)]


@pytest.mark.parametrize("option, flag", [("data_dir", "--data-dir"), ("skip_bad_rows", "--skip-bad-rows")])
def test_star_kits_own_settings_are_no_task_options(option, flag, tmp_path, capsys):
    """``--task-opt data_dir=X`` would skip the checks of ``--data-dir``: refused (from the command line and from a
    config file, in run and bench), naming the flag to use; a sampler's option of that name is the sampler's."""
    assert main(["run", "--print-config", "--task-opt", f"{option}=/x"]) == 2
    assert f"--task-opt {option}: star-kit's own setting, not a task option: give {flag}" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task_options: {{{option}: 1}}\n")
    assert main(["run", "--print-config", "--config", str(cfg)]) == 2
    assert f"--task-opt {option}: star-kit's own setting" in capsys.readouterr().err
    assert main(["bench", "--model", "m", "--tasks", "arithmetic", "--task-opt", f"{option}=/x", "--limit", "1"]) == 2
    assert f"--task-opt {option}: star-kit's own setting" in capsys.readouterr().err
    assert main(["run", "--print-config", "--sampler-opt", f"{option}=/x"]) == 2  # hf's: an unknown option
    assert f"has no option {option!r}" in capsys.readouterr().err


def test_a_run_made_with_task_opt_data_dir_resumes_with_it_as_data_dir():
    """An older release took ``--task-opt data_dir=X``: its config.yaml is read as ``data_dir: X``."""
    from star_kit.config import predated

    saved = {"task": "gsm8k", "eval_prompt": "fewshot", "task_options": {"data_dir": "/d", "x": 1}}
    assert predated(saved) == {"task": "gsm8k", "eval_prompt": "fewshot", "eval_seed": None, "task_options": {"x": 1},
                               "data_dir": "/d"}


_TYPED_PLUGIN = """
import enum
from pathlib import Path
from typing import Optional

import star_kit
from star_kit_plugins.arithmetic import ArithmeticTask


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.Enum):
    LOW = "1"


SEEN = []


class TypedTask(ArithmeticTask):
    def __init__(self, mode: Mode = Mode.FAST, where: Path | None = None, limit: Optional[int] = 3,
                 label: str | None = "x", level: Level = Level.LOW, **options):
        SEEN.append((mode, where, limit, label, level))
        super().__init__(**options)


@star_kit.hookimpl
def register_tasks(register):
    register("typed", TypedTask)
"""


def test_options_arrive_as_their_annotations_declare_them(tmp_path, monkeypatch, capsys):
    """The factory gets an Enum option as its member and a Path option as a Path; ``none``/``null`` is None where the
    option may be None and takes no string (a string option keeps the text: TRL's ``report_to=none``); config.yaml
    (``--print-config``) records the values as given, which YAML can hold."""
    import yaml

    (tmp_path / "typed_plugin.py").write_text(_TYPED_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    import typed_plugin

    assert main(["run", "--print-config", "--plugin", "typed_plugin", "--task", "typed", "--task-opt", "mode=slow",
                 "--task-opt", f"where={tmp_path}", "--task-opt", "limit=None", "--task-opt", "label=none",
                 "--task-opt", "level=1"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)["task_options"]
    assert {k: printed[k] for k in ("mode", "where", "limit", "label", "level")} == \
        {"mode": "slow", "where": str(tmp_path), "limit": None, "label": "none", "level": "1"}
    assert typed_plugin.SEEN[-1] == (typed_plugin.Mode.SLOW, tmp_path, None, "none", typed_plugin.Level.LOW)
    assert main(["run", "--print-config", "--plugin", "typed_plugin", "--task", "typed", "--task-opt",
                 "mode=medium"]) == 2
    assert "option mode='medium' is not 'fast' or 'slow'" in capsys.readouterr().err
    assert main(["run", "--print-config", "--plugin", "typed_plugin", "--task", "typed", "--task-opt",
                 "limit=lots"]) == 2
    assert "option limit='lots' is not an integer or null" in capsys.readouterr().err


_WRAPPED_TRAINER = """
import star_kit
from star_kit_plugins.trl_trainer import TRLSFTTrainer


class Frozen(TRLSFTTrainer):
    def __init__(self, freeze_embeddings: bool = False, **options):
        self.freeze_embeddings = freeze_embeddings
        super().__init__(**options)


@star_kit.hookimpl
def register_trainers(register):
    register("trl-sft-frozen", Frozen)
"""


def test_a_wrapped_trainer_records_the_defaults_it_passes_on(tmp_path, monkeypatch, capsys):
    """A trainer that adds one option to trl-sft and passes the rest on (``**options``) records trl-sft's defaults in
    config.yaml too (learning rate, batch, schedule), as trl-sft itself does; its own option first."""
    import yaml

    (tmp_path / "wrapped_trainer.py").write_text(_WRAPPED_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--print-config", "--plugin", "wrapped_trainer", "--trainer", "trl-sft-frozen"]) == 0
    wrapped = yaml.safe_load(capsys.readouterr().out)["trainer_options"]
    assert main(["run", "--print-config"]) == 0
    plain = yaml.safe_load(capsys.readouterr().out)["trainer_options"]
    assert wrapped == {"freeze_embeddings": False, **plain} and plain["learning_rate"] == 5e-5


_WRAPPED_SAMPLER = """
import star_kit
from star_kit_plugins.hf_sampler import HFSampler

SEEN = []


class Tagged(HFSampler):
    def __init__(self, model: str, tag: str = "x", **options):
        SEEN.append(tag)
        super().__init__(model, **options)


class OwnDevice(HFSampler):  # its own 'device', of its own meaning, not passed on
    def __init__(self, model: str, device: str = "npu0", **options):
        self.own_device = device
        super().__init__(model, **options)


class WithMethod:  # an instance method named check_options is not an options check
    def __init__(self, model: str, batch_size: int = 1):
        self.model = model

    def check_options(self, *args, **kwargs):
        raise AssertionError("called with the registry as self")


@star_kit.hookimpl
def register_samplers(register):
    register("hf-tagged", Tagged)
    register("hf-own-device", OwnDevice)
    register("with-method", WithMethod)


from star_kit_plugins.arithmetic import ArithmeticTask  # noqa: E402


class Extra(ArithmeticTask):  # takes arithmetic's options (digits ...), not star-kit's skip_bad_rows
    def __init__(self, extra: int = 1, **options):
        self.extra = extra
        super().__init__(**options)


@star_kit.hookimpl
def register_tasks(register):
    register("arithmetic-extra", Extra)
"""


def test_a_sampler_that_subclasses_hf_adds_an_option_and_keeps_hfs_checks(tmp_path, monkeypatch, capsys, tiny_model):
    """A subclass of the hf sampler with one option of its own, the rest passed on (``**options``), as the README
    suggests: its option does not reach the check_options it inherits; hf's options are still checked by name
    (one line listing both), by type and by value, before a model loads; it builds and samples."""
    (tmp_path / "wrapped_sampler.py").write_text(_WRAPPED_SAMPLER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import wrapped_sampler

    registry = load_registry(["wrapped_sampler"])
    assert registry.check_options("samplers", "hf-tagged", "m", tag="t", batch_size=4) == {"tag": "t",
                                                                                           "batch_size": 4}
    for options, message in (({"dtyp": "float32"}, "has no option 'dtyp' (did you mean 'dtype'?); its options: "
                                                    "tag, dtype, device, batch_size"),
                             ({"batch_size": "big"}, "option batch_size='big' is not an integer or 'auto'"),
                             ({"batch_size": -4}, "sampler 'hf-tagged' (plugin 'wrapped_sampler', distribution "
                                                  "'(--plugin)'): sampler 'hf': batch_size must be auto or a positive "
                                                  "integer, got -4")):
        with pytest.raises(StarKitError, match=re.escape(message)) as err:
            registry.check_options("samplers", "hf-tagged", "m", tag="t", **options)
        assert err.value.exit_code == 2
    sampler = registry.create("samplers", "hf-tagged", tiny_model, tag="T1", batch_size=2, dtype="float32")
    assert wrapped_sampler.SEEN[-1] == "T1" and sampler.batch_size == 2
    assert len(sampler.generate(["Q: 1 + 1 = ?\nA:"], GenerationParams(max_new_tokens=2))) == 1
    sampler.close()
    assert main(["plugins", "--plugin", "wrapped_sampler", "hf-tagged", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["samplers"]
    assert [o["name"] for o in listed["options"]][:3] == ["tag", "dtype", "device"] and listed["more"] is None
    # a subclass's own option of a name the base has is its own: not held to hf's check nor its annotation
    assert registry.check_options("samplers", "hf-own-device", "m", device="npu0", dtype="float32") == {
        "device": "npu0", "dtype": "float32"}
    assert registry.check_options("samplers", "with-method", "m", batch_size=2) == {"batch_size": 2}
    # a task subclass that passes **options on to arithmetic's: arithmetic's options, and no skip_bad_rows
    assert registry.accepts("tasks", "arithmetic-extra", "digits") and registry.accepts("tasks", "arithmetic-extra",
                                                                                        "extra")
    assert not registry.accepts("tasks", "arithmetic-extra", "skip_bad_rows")
    task = registry.create("tasks", "arithmetic-extra", _core={"skip_bad_rows": True}, extra=2, digits="1-2")
    assert task.extra == 2
    with pytest.raises(StarKitError, match=r"has no option 'digitz' \(did you mean 'digits'\?\); its options: extra, "
                                           r"digits"):
        registry.check_options("tasks", "arithmetic-extra", digitz="1-2")


def _yaml_task(tmp_path, generation: str):
    """A FewShotTask whose lm-eval YAML has the given generation_kwargs lines (arithmetic's otherwise)."""
    from star_kit_plugins.arithmetic import ArithmeticTask

    text = ArithmeticTask.lm_eval_yaml.read_text()
    head, _, rest = text.partition("generation_kwargs:")
    tail = rest.split("\n", 1)[1]
    while tail.startswith(" "):  # the old block's indented lines
        tail = tail.split("\n", 1)[1]
    path = tmp_path / "task.yaml"
    path.write_text(head + generation + tail)
    return type("YamlTask", (ArithmeticTask,), {"lm_eval_yaml": path})


def test_sampling_and_evaluation_read_one_stop_and_budget(tmp_path):
    """A string ``until`` is one stop string (not its characters), a YAML without ``max_gen_toks`` gives both
    sampling and lm-eval's requests lm-eval's 256, and a task whose own stop or budget differs from its config's
    is refused when it is created, naming the plugin."""
    from star_kit.evaluation import greedy_params

    task = _yaml_task(tmp_path, 'generation_kwargs:\n  until: "\\n\\n"\n')()
    params = greedy_params(task)
    assert task.stop == ("\n\n",) == params.stop and task.max_new_tokens == params.max_new_tokens
    assert load_registry().create("tasks", "arithmetic").max_new_tokens >= 1  # the built-in is consistent
    odd = _yaml_task(tmp_path, 'generation_kwargs:\n  until: ["\\n\\n"]\n  max_gen_toks: 64\n')
    registry = Registry()

    def make():
        made = odd()
        made.stop = ("\n",)
        return made

    registry.add_plugin(_module("odd", register_tasks=lambda register: register("odd", make),
                                register_extractors=lambda register: register("arithmetic", lambda text: None)),
                        "odd", "dist-odd")
    registry.collect()
    with pytest.raises(PluginError, match=r"^task 'odd' \(plugin 'odd', distribution 'dist-odd'\): lm-eval config .*"
                                          r"its stop \('\\n',\) is not generation_kwargs.until \('\\n\\n',\)"):
        registry.create("tasks", "odd")


@pytest.mark.parametrize("generation, said", [
    ("generation_kwargs:\n  max_gen_toks: lots\n", "generation_kwargs.max_gen_toks is 'lots', not a whole number"),
    ("generation_kwargs:\n  until: 5\n", "generation_kwargs.until is 5, not a string or a list of strings"),
    ("generation_kwargs: [\n", "not valid YAML"),
])
def test_a_bad_generation_config_is_one_line_naming_the_yaml(tmp_path, generation, said):
    from star_kit.errors import StarKitError

    with pytest.raises(StarKitError, match=said) as err:
        _yaml_task(tmp_path, generation)()
    assert str(err.value).startswith(str(tmp_path / "task.yaml"))


# 8. plugin loading: an installed module again, a misspelt hook, event plugins, python -m star_kit ------------------
def test_plugin_already_installed_is_one_short_line():
    registry = load_registry(["star_kit_plugins.arithmetic"])
    assert len(registry.problems) == 1
    assert "already loaded as plugin 'arithmetic'" in registry.problems[0] and len(registry.problems[0]) < 200


def test_two_distributions_may_use_the_same_entry_point_name():
    """An entry point's name is a packaging detail: a second distribution using it is loaded under
    ``DIST:NAME``, not skipped (its extractor would vanish and its task fail for want of it)."""
    registry = Registry()
    registry.add_plugin(_module("one", register_extractors=lambda register: register("ok-one", lambda t: t)),
                        "letters", "dist-one")
    registry.add_plugin(_module("two", register_extractors=lambda register: register("ok-two", lambda t: t)),
                        "letters", "dist-two")
    registry.collect()
    assert registry.problems == []
    assert {"ok-one", "ok-two"} <= set(registry.names("extractors"))
    assert registry.where("extractors", "ok-two") == "extractor 'ok-two' (plugin 'dist-two:letters', distribution " \
                                                     "'dist-two')"


def test_print_config_and_plugins_json_say_what_failed_to_load(tmp_path, monkeypatch, capsys):
    """``run --print-config`` warns of a misspelt hook as ``run`` does; ``plugins --json`` answers JSON even when a
    ``--plugin`` cannot be imported."""
    (tmp_path / "typo_hooks.py").write_text("import star_kit\n\n\n@star_kit.hookimpl\n"
                                           "def register_task(register):\n    pass\n")
    (tmp_path / "broken_import.py").write_text("import no_such_module_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "--print-config", "--plugin", "typo_hooks"]) == 0
    err = capsys.readouterr().err
    assert "warning: plugin 'typo_hooks'" in err and "did you mean 'register_tasks'" in err
    assert main(["plugins", "--json", "--plugin", "broken_import"]) == 1
    reply = json.loads(capsys.readouterr().out)
    assert reply["error"].startswith("--plugin 'broken_import' failed to import: ModuleNotFoundError")


def test_register_takes_a_name_and_an_object_only():
    registry = Registry()
    registry.add_plugin(_module("three", register_tasks=lambda register: register("a", "b", "c")), "three", "d3")
    registry.collect()
    assert registry.problems == ["plugin 'three' (distribution 'd3') raised in register_tasks: TypeError: register() "
                                 "takes 2 positional arguments but 3 were given"]


def test_misspelt_hooks_are_reported():
    registry = Registry()
    registry.add_plugin(_module("typo", register_task=lambda register: None,
                                star_kit_iteration_ended=lambda iteration: None), "typo", "dist-typo")
    registry.collect()
    assert len(registry.problems) == 2
    assert any("'register_task'" in p and "did you mean 'register_tasks'" in p and "dist-typo" in p
               for p in registry.problems)
    assert any("did you mean 'star_kit_iteration_end'" in p for p in registry.problems)


def test_plugins_lists_event_plugins(capsys):
    assert main(["plugins", "--json"]) == 0
    events = {e["name"]: e for e in json.loads(capsys.readouterr().out)["events"]}
    assert events["csv-logger"]["hooks"] == ["star_kit_iteration_end"]
    assert events["csv-logger"]["distribution"] == "star-kit"


def test_python_dash_m_star_kit():
    out = subprocess.run([sys.executable, "-m", "star_kit", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "usage: star-kit" in out.stdout


def test_version_names_star_kit_and_the_libraries_that_make_its_numbers(capsys):
    import importlib.metadata as md

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"star-kit {md.version('star-kit')} (torch {md.version('torch')}, ")
    assert f"trl {md.version('trl')}" in printed and f"lm_eval {md.version('lm_eval')}" in printed


# 9. the loggers' fields come from the record -----------------------------------------------------------------------
def test_loggers_derive_their_fields_from_iteration_result():
    from star_kit_plugins import csv_logger, tensorboard_logger

    text = ("seconds", "checkpoint", "eval_prompt")
    numeric = [f.name for f in dataclasses.fields(IterationResult) if f.name not in text]
    result = IterationResult(**{name: i + 1 for i, name in enumerate(numeric)}, eval_prompt="question")
    assert set(csv_logger.row_of(result)) >= {*numeric, "checkpoint", "eval_prompt"}
    assert csv_logger.row_of(result)["eval_prompt"] == "question"
    tags = tensorboard_logger.scalars(result)
    assert tags["samples/unverified"] == numeric.index("unverified") + 1
    # every numeric field but the step itself (iteration) and sampled_ahead_in (an iteration number); no text field
    assert len(tags) == len(numeric) - 2 and "samples/sampled_ahead_in" not in tags


# B. the contract: protocol checked at creation; evaluation scored by Task.is_correct -------------------------------
def test_a_factory_result_is_checked_against_its_protocol():
    class HalfSampler:
        def __init__(self, model):
            self.model = model

        def load(self, model):
            pass

    registry = Registry()
    registry.add_plugin(_module("half", register_samplers=lambda register: register("half", HalfSampler)),
                        "half", "dist-half")
    registry.collect()
    with pytest.raises(PluginError, match=r"sampler 'half' \(plugin 'half', distribution 'dist-half'\) returned an "
                                          r"object of type HalfSampler that lacks method close\(\), method generate\(\)") as err:
        registry.create("samplers", "half", "m")
    assert err.value.exit_code == 1  # a plugin that breaks its contract: as one whose method returns the wrong thing


_NO_PROMPT_TASK = """
import star_kit
from star_kit_plugins.arithmetic import ArithmeticTask


class NoHintPrompt(ArithmeticTask):
    def prompt(self, example, hint=False, fewshot=True):
        return None if hint else super().prompt(example, hint=hint, fewshot=fewshot)


@star_kit.hookimpl
def register_tasks(register):
    register("no-hint-prompt", NoHintPrompt)
"""


def test_a_task_whose_prompt_breaks_its_contract_is_named_before_a_model_loads(tmp_path, monkeypatch, capsys):
    """The run builds each kind of prompt once as it draws the questions: a rationalization prompt of None is
    named by --print-config (and by a run before its model loads), not minutes later; without rationalization
    that prompt is never built."""
    (tmp_path / "no_prompt_task.py").write_text(_NO_PROMPT_TASK)
    monkeypatch.syspath_prepend(str(tmp_path))
    command = ["run", "--plugin", "no_prompt_task", "--task", "no-hint-prompt", "--print-config",
               "--train-size", "4", "--eval-size", "4"]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "task 'no-hint-prompt'" in err and "prompt() returned None (NoneType), not a string" in err
    assert main([*command, "--no-rationalize"]) == 0


def test_a_task_method_returning_no_string_is_named_where_it_returns(test_plugin):
    """A prompt of 42 would reach the sampler (and the sampler would be blamed): the task is named instead."""
    registry = load_registry()
    task = registry.create("tasks", "arithmetic")
    example = task.examples("train", 1, 0)[0]
    object.__setattr__(task, "prompt", lambda example, hint=False, fewshot=True: 42)
    guarded = registry.guarded("tasks", "arithmetic", task)
    with pytest.raises(PluginError, match=r"^task 'arithmetic' \(plugin 'arithmetic', distribution 'star-kit'\): "
                                          r"prompt\(\) returned 42 \(int\), not a string") as err:
        guarded.prompt(example)
    assert err.value.exit_code == 1
    assert guarded.hint(example) == task.hint(example)  # what is right passes through
    # an is_correct without its return would grade every answer wrong, silently: named instead
    object.__setattr__(task, "is_correct", lambda predicted, gold: None)
    with pytest.raises(PluginError, match=r"^task 'arithmetic' .*: is_correct\(\) returned None \(NoneType\), not "
                                          r"True or False"):
        guarded.is_correct("4", "4")
    import numpy

    object.__setattr__(task, "is_correct", lambda predicted, gold: numpy.bool_(predicted == gold))
    assert guarded.is_correct("4", "4") and not guarded.is_correct("5", "4")


@pytest.mark.parametrize("reply, said", [
    ("2 + 2 = 4", r"generate returned a str of 9 items for 2 prompts"),  # a string, not a list of lists
    (["a", "b"], r"generate returned 'a' \(str\) for prompt 0"),  # the inner lists forgotten
    ([["a"]], r"generate returned a list of 1 item for 2 prompts"),  # one prompt's completions missing
    ([["a"], ["b", "c"]], r"generate returned a list of 2 completions for prompt 1"),  # one completion too many
    ([["a"], [None]], r"generate returned a list holding None \(NoneType\) for prompt 1"),
    ([["a"], [b"b"]], r"generate returned a list holding b'b' \(bytes\) for prompt 1"),
])
def test_what_a_sampler_generates_is_checked_before_it_is_graded(reply, said):
    """A sampler's reply of the wrong shape would be graded against the wrong questions (or character by
    character): one line naming the plugin instead; completions are cut at the stop strings here too."""
    from star_kit.records import GenerationParams

    class Tokenizer:  # a callable attribute (as a tokenizer or a torch module is): it passes as it is
        pad_token = "<pad>"

        def __call__(self, text):
            return [len(text)]

    class Replier:
        def __init__(self, model):
            self.model = model
            self.tokenizer = Tokenizer()

        def generate(self, prompts, params, advance=None):
            return reply

        def load(self, model):
            self.model = model

        def close(self):
            pass

    registry = Registry()
    registry.add_plugin(_module("rep", register_samplers=lambda register: register("rep", Replier)), "rep", "d-rep")
    registry.collect()
    sampler = registry.create("samplers", "rep", "m")
    params = GenerationParams(max_new_tokens=4, stop=("\n\n",))
    with pytest.raises(PluginError, match=r"sampler 'rep' \(plugin 'rep', distribution 'd-rep'\): " + said +
                       r".*expected a list of 2 lists \(one per prompt, in order\) of 1 string"):
        sampler.generate(["p1", "p2"], params)
    reply = [[" 4. The answer is 4.\n\nQ: next"], [" 5"]]  # the stop string left in: cut here
    assert sampler.generate(["p1", "p2"], params) == [[" 4. The answer is 4."], [" 5"]]
    assert sampler.model == "m" and sampler.load("n") is None and sampler.model == "n"  # the rest passes through
    assert sampler.tokenizer.pad_token == "<pad>" and sampler.tokenizer("abc") == [3]
    assert sampler.generate(["p1", "p2"], params=params, advance=None) == [[" 4. The answer is 4."], [" 5"]]


def test_a_trainer_that_saves_no_model_folder_is_one_line_naming_it(test_plugin, tmp_path, base_model, monkeypatch,
                                                                     capsys):
    import plugins_for_tests

    monkeypatch.setattr(plugins_for_tests.RecordingTrainer, "train", lambda self, *args, **kwargs: None)
    assert _run(tmp_path, base_model) == 1
    *_, err, then = capsys.readouterr().err.strip().splitlines()
    assert err.startswith("error: ") and "Traceback" not in err
    assert "trainer 'recording' (plugin 'plugins_for_tests'" in err
    assert "train() returned without saving a model folder at output_dir" in err and "has no config.json" in err
    # the baseline was evaluated before the failure: kept, and the line after the error says how to go on
    run = tmp_path / "run"
    assert then == f"{run} keeps what this run did; once mended, continue with `star-kit run --resume {run}`"


def test_evaluation_scores_with_the_tasks_is_correct(test_plugin, tmp_path, base_model):
    # lenient-arithmetic's is_correct accepts any answer; its extractor takes the first word ("I" here), which
    # exact_match against the gold sum would score 0
    star, history, _, _ = scripted_run(test_plugin, tmp_path, base_model, task="lenient-arithmetic",
                                       iterations=1, train_size=3, eval_size=4)
    assert [r.accuracy for r in history] == [1.0, 1.0]
    rows = [json.loads(line) for line in star.store.artifact(0, "eval_samples.jsonl").read_text().splitlines()]
    assert all(r["correct"] and r["predicted"] == "I" for r in rows)
    assert json.loads(star.store.artifact(0, "eval.json").read_text())["metric"] == "task.is_correct"


# D. the run flags come from RunConfig: every field has one, and a boolean flag can undo a YAML value --------------
def test_run_flags_are_generated_from_runconfig_and_booleans_undo_yaml(tmp_path, capsys):
    from star_kit.cli import build_parser

    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" run"))
    flags = {s for action in run._actions for s in action.option_strings}
    for f in dataclasses.fields(RunConfig):
        if f.name not in ("task_options", "sampler_options", "trainer_options", "plugins"):
            assert "--" + f.name.replace("_", "-") in flags, f.name
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_fewshot: true\nskip_bad_rows: true\nrationalize: false\nbaseline: false\n")
    assert main(["run", "--config", str(cfg), "--no-train-fewshot", "--no-skip-bad-rows", "--rationalize",
                 "--baseline", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "train_fewshot: false" in out and "skip_bad_rows: false" in out
    assert "rationalize: true" in out and "baseline: true" in out
    assert main(["run", "--no-rationalize", "--print-config"]) == 0
    assert "rationalize: false" in capsys.readouterr().out


def test_bench_reads_a_run_config_through_runconfig(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("task: arithmetic\nmodel: smollm2-135m\nseed: two\n")
    assert main(["bench", "--run", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.yaml: key 'seed' is 'two' (a string); expected an integer" in err and len(err.splitlines()) == 1
    (run / "config.yaml").write_text("task: arithmetic\nseed: 2\n")  # cut before its model: not benched as M0
    assert main(["bench", "--run", str(run), "--no-progress"]) == 2
    assert "config.yaml names no model (damaged or cut short?)" in capsys.readouterr().err


def test_a_task_class_attribute_the_yaml_overrides_is_refused_in_one_line():
    """`max_new_tokens = 64` on a FewShotTask subclass whose YAML says otherwise: the YAML's would silently win."""
    from star_kit_plugins.arithmetic import ArithmeticTask

    class Short(ArithmeticTask):
        max_new_tokens = 64

    class Mine(ArithmeticTask):  # a class default the instance then sets itself: the subclass's own choice
        extractor = "first-word"

        def __init__(self, **options):
            super().__init__(**options)
            self.extractor = "first-word"

    class Same(ArithmeticTask):  # the YAML's own values (a string stop is one stop string)
        extractor, stop = "arithmetic", ("\n\n", "\nQ:")

    registry = load_registry()
    with pytest.raises(PluginError, match=r"^task 'short' \(unregistered\): lm-eval config .*arithmetic.yaml: class "
                                          r"attribute max_new_tokens = 64 of Short is replaced by generation_kwargs."
                                          r"max_gen_toks \d+ \(FewShotTask sets it from the YAML\): set it in the "
                                          r"YAML, or on the instance after super\(\).__init__\(\)$"):
        registry.check_created("tasks", "short", Short())
    registry.items["extractors"]["first-word"] = registry.items["extractors"]["arithmetic"]
    registry.check_created("tasks", "mine", Mine())
    registry.check_created("tasks", "same", Same())
