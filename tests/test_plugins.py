"""Plugin discovery: built-ins come through the same entry-point group a third party uses."""

import importlib.metadata as md
import inspect
import json
import types

import pytest

import star_kit
from star_kit.cli import main
from star_kit.errors import UnknownNameError
from star_kit.registry import Registered, Registry, load_registry


def test_builtins_are_registered_through_entry_points():
    eps = {ep.name: ep for ep in md.entry_points(group="star_kit")}
    for name in ("arithmetic", "hf", "trl-sft"):
        assert name in eps and eps[name].dist.name == "star-kit"
    registry = load_registry()
    assert registry.get("tasks", "arithmetic").distribution == "star-kit"
    assert registry.get("tasks", "arithmetic").plugin == "arithmetic"  # the entry point's name
    assert registry.get("extractors", "arithmetic").distribution == "star-kit"
    assert registry.get("samplers", "hf").distribution == "star-kit"
    assert registry.get("trainers", "trl-sft").distribution == "star-kit"
    assert registry.problems == []


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {"tasks", "extractors", "samplers", "trainers"}
    names = {k: {e["name"] for e in v} for k, v in data.items() if k != "problems"}
    assert "arithmetic" in names["tasks"] and "hf" in names["samplers"] and "trl-sft" in names["trainers"]
    assert all(e["distribution"] == "star-kit" for e in data["tasks"] if e["name"] == "arithmetic")


def test_plugins_name_lists_its_options(capsys):
    """`star-kit plugins NAME`: what --task-opt/--sampler-opt/--trainer-opt take, from the factory's signature,
    with what a factory passes on through **options said; JSON too; an unknown name is one line, exit 2."""
    assert main(["plugins", "hf"]) == 0
    out = capsys.readouterr().out
    assert "sampler 'hf', star-kit" in out and "--sampler-opt KEY=VALUE" in out
    for row in ("batch_size", "int | Literal['auto']", "engine"):
        assert row in out
    assert "model" not in out.split("KEY=VALUE", 1)[1]  # the model a sampler is built for is not an option
    assert main(["plugins", "trl-sft"]) == 0
    out = capsys.readouterr().out
    assert "learning_rate" in out and "5e-05" in out and "any other trl.SFTConfig field" in out
    assert main(["plugins", "arithmetic", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"tasks", "extractors", "verifiers"}
    task = {row["name"]: row for row in data["tasks"]["options"]}
    assert task["digits"]["default"] == "1-5" and task["rationales"] == {
        "name": "rationales", "type": "bool", "default": True, "required": False}
    assert "data_dir" not in task and data["extractors"]["options"] == [] and data["tasks"]["more"] is None
    assert main(["plugins", "ray", "--json"]) == 0
    ray = json.loads(capsys.readouterr().out)["samplers"]
    assert "backend" in {row["name"] for row in ray["options"]} and "backend's options" in ray["more"]
    assert main(["plugins", "csv-logger"]) == 0  # an event plugin (a logger): listed, without options
    assert "event plugin 'csv-logger' (star_kit_iteration_end), star-kit: takes no options" in capsys.readouterr().out
    assert main(["plugins", "hff"]) == 2
    assert "no plugin named 'hff' (did you mean 'hf'?)" in capsys.readouterr().err
    assert main(["plugins", "hff", "--json"]) == 2
    assert "no plugin named 'hff'" in json.loads(capsys.readouterr().out)["error"]


def test_plugins_json_into_a_closed_pipe_is_no_traceback():
    # `star-kit plugins --json | head -1`: the reader goes away before the output ends
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "star_kit", "plugins", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # before it writes anything: every write fails with EPIPE
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert proc.returncode == 141 and "Traceback" not in err and "BrokenPipe" not in err, err[-500:]


def test_plugin_spec_and_env_var(test_plugin, capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    entry = next(e for e in data["tasks"] if e["name"] == "lenient-arithmetic")
    assert entry["distribution"] == "(--plugin)"


def test_load_plugins_filter(monkeypatch):
    """The filter selects third-party plugins; star-kit's own always load (here: no third party at all)."""
    monkeypatch.setenv("STAR_KIT_LOAD_PLUGINS", "no-such-distribution")
    registry = load_registry()
    assert {"arithmetic", "gsm8k", "commonsense_qa"} <= set(registry.names("tasks"))
    assert "hf" in registry.names("samplers")


def _module(name, **hooks):
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, star_kit.hookimpl(fn))
    return mod


def test_duplicate_names_are_refused_with_both_distributions():
    registry = Registry()
    registry.add_plugin(_module("a", register_samplers=lambda register: register("dup", object)), "a", "dist-a")
    registry.add_plugin(_module("b", register_samplers=lambda register: register("dup", object)), "b", "dist-b")
    registry.collect()
    assert registry.get("samplers", "dup").distribution == "dist-a"
    assert len(registry.problems) == 1
    assert "dist-a" in registry.problems[0] and "dist-b" in registry.problems[0]


def test_a_name_that_is_not_a_string_or_an_object_that_is_not_callable_is_refused_naming_the_plugin(capsys):
    registry = Registry()
    registry.add_plugin(_module("odd", register_tasks=lambda register: (register(123, object), register("", object),
                                                                        register("data", {"not": "callable"}))),
                        "odd", "dist-odd")
    registry.add_plugin(_module("good", register_tasks=lambda register: register("ok", object)), "good", "dist-good")
    registry.collect()
    assert registry.names("tasks") == ["ok"]  # the listing still sorts: no int among the names
    assert len(registry.problems) == 3 and all("'odd'" in p and "dist-odd" in p for p in registry.problems)
    assert "name must be a non-empty string, got 123 (int)" in registry.problems[0]
    assert "register a class or a function, got {'not': 'callable'} (dict)" in registry.problems[2]


def test_a_hook_function_without_the_hookimpl_marker_is_said():
    registry = Registry()
    plugin = types.ModuleType("unmarked")
    plugin.register_tasks = lambda register: register("never", object)  # no @star_kit.hookimpl
    registry.add_plugin(plugin, "unmarked", "dist-u")
    registry.collect()
    assert registry.names("tasks") == []
    assert registry.problems == ["plugin 'unmarked' (distribution 'dist-u') defines 'register_tasks' without "
                                 "@star_kit.hookimpl; it is never called"]


def test_a_raising_plugin_is_named_and_the_rest_still_load():
    def broken(register):
        raise RuntimeError("boom")

    registry = Registry()
    registry.add_plugin(_module("bad", register_tasks=broken), "bad", "dist-bad")
    registry.add_plugin(_module("good", register_tasks=lambda register: register("ok", object)), "good", "dist-good")
    registry.collect()
    assert registry.names("tasks") == ["ok"]
    assert "'bad'" in registry.problems[0] and "dist-bad" in registry.problems[0] and "boom" in registry.problems[0]


def test_factory_errors_name_the_plugin():
    def factory(**options):
        raise ValueError("no GPU here")

    registry = Registry()
    registry.add_plugin(_module("p", register_samplers=lambda register: register("s", factory)), "p", "dist-p")
    registry.collect()
    with pytest.raises(star_kit.errors.PluginError, match="sampler 's' .*plugin 'p'.*dist-p.*no GPU here"):
        registry.create("samplers", "s")


def test_unknown_name_lists_what_exists():
    registry = load_registry()
    with pytest.raises(UnknownNameError) as err:
        registry.get("tasks", "nope")
    assert err.value.exit_code == 2
    assert "unknown task 'nope'" in str(err.value) and "arithmetic" in str(err.value)


def test_extractor_wrapper_never_raises_and_says_once_what_the_plugin_did(capsys):
    registry = Registry()

    def register(register):
        register("bad", lambda t: 1 / 0)
        register("int", lambda t: 7)  # a plugin bug: an int, not the canonical string
        register("huge", lambda t: 10 ** 5000)  # whose repr raises (Python's int-to-text digit limit)

    registry.add_plugin(_module("x", register_extractors=register), "x", "d")
    registry.collect()
    assert registry.extractor("bad")("anything") is None and registry.extractor("bad")("again") is None
    assert registry.extractor("int")("anything") is None and registry.extractor("int")("again") is None
    err = capsys.readouterr().err.splitlines()
    line = inspect.getsourcelines(register)[1] + 1  # the lambda's line in this file, where the plugin's code is
    assert err == ["warning: extractor 'bad' (plugin 'x', distribution 'd') raised ZeroDivisionError: division by "
                   "zero (in test_extractor_wrapper_never_raises_and_says_once_what_the_plugin_did.<locals>.register."
                   f"<locals>.<lambda>() at test_plugins.py:{line}); its outputs count as no answer",
                   "warning: extractor 'int' (plugin 'x', distribution 'd') returned 7 (int), not a string or "
                   "None; such outputs count as no answer"]
    assert registry.problems == [line.removeprefix("warning: ") for line in err]
    assert registry.extractor("huge")("anything") is None  # the wrapper never raises, even to warn
    assert capsys.readouterr().err.endswith("returned an unprintable value (int), not a string or None; such outputs "
                                            "count as no answer\n")


def test_a_plugin_that_is_not_there_is_bad_input_naming_where_it_was_asked_for(monkeypatch, capsys):
    assert main(["plugins", "--plugin", "no_such_module_here"]) == 2
    assert "error: --plugin 'no_such_module_here' failed to import: ModuleNotFoundError" in capsys.readouterr().err
    monkeypatch.setenv("STAR_KIT_PLUGINS", "no_such_module_here")
    assert main(["plugins"]) == 2
    assert "error: STAR_KIT_PLUGINS 'no_such_module_here' failed to import" in capsys.readouterr().err


def test_a_plugin_given_as_a_file_or_outside_pythons_path_says_how_to_name_it(monkeypatch, tmp_path, capsys):
    """--plugin takes a module name: a file path, or a module in the current folder (not on sys.path when run as
    the star-kit command), is a ModuleNotFoundError that the error explains."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "plugin.py").write_text("X = 1\n")
    (tmp_path / "local_plugin_xyz.py").write_text("X = 1\n")
    assert main(["plugins", "--plugin", "mine/plugin.py"]) == 2
    assert "(--plugin takes a module name, not a file: e.g. PYTHONPATH=mine star-kit ... --plugin plugin)" in \
        capsys.readouterr().err
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".", str(tmp_path))])
    assert main(["plugins", "--plugin", "local_plugin_xyz"]) == 2
    assert ("(it is in the current folder, which is not on Python's path: PYTHONPATH=. star-kit ... --plugin "
            "local_plugin_xyz)") in capsys.readouterr().err


def test_a_load_filter_naming_nothing_installed_is_a_warning(monkeypatch, capsys):
    monkeypatch.setenv("STAR_KIT_LOAD_PLUGINS", "star-kit-subtrct")
    registry = load_registry()
    [problem] = [p for p in registry.problems if "STAR_KIT_LOAD_PLUGINS" in p]
    assert problem.startswith("STAR_KIT_LOAD_PLUGINS names 'star-kit-subtrct', which no installed plugin "
                              "distribution or entry point has")
    assert main(["plugins"]) == 0
    assert "warning: STAR_KIT_LOAD_PLUGINS names 'star-kit-subtrct'" in capsys.readouterr().err


def test_option_defaults_are_the_ones_config_yaml_gives_back_unchanged():
    import enum

    class Color(str, enum.Enum):
        RED = "red"

    def make_task(data_dir: str | None = None, digits: str = "1-5", n: int = 3, ratio: float = 0.5,
                  flag: bool = True, tags: list = ["a", 1], none=None, color: Color = Color.RED, seven: str = "7",
                  big: float = float("inf"), reload_command: str = "echo hi", bad: int = "x", **rest):
        raise AssertionError("not called")

    registry = Registry()
    registry.add_plugin(_module("t", register_tasks=lambda register: register("t", make_task)), "t", "d")
    registry.collect()
    # not an Enum member (YAML cannot write it), a non-finite float, a command (never taken from a run directory)
    # or a default that does not fit its own annotation; a number-like string is written quoted and read back so
    assert registry.option_defaults("tasks", "t", exclude=("data_dir",)) == {
        "digits": "1-5", "n": 3, "ratio": 0.5, "flag": True, "tags": ["a", 1], "none": None, "seven": "7"}


def test_a_missing_submodule_is_bad_input_and_an_attribute_error_inside_a_module_is_its_bug(tmp_path, monkeypatch,
                                                                                            capsys):
    (tmp_path / "buggy_plugin_mod.py").write_text("raise AttributeError('a bug in the plugin')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["plugins", "--plugin", "star_kit.no_such_submodule"]) == 2
    assert "ModuleNotFoundError" in capsys.readouterr().err
    assert main(["plugins", "--plugin", "buggy_plugin_mod"]) == 1
    assert "failed to import: AttributeError: a bug in the plugin" in capsys.readouterr().err
    assert main(["plugins", "--plugin", "star_kit:no_such_object"]) == 2
    assert "module 'star_kit' has no attribute 'no_such_object'" in capsys.readouterr().err


def test_a_hook_with_wrong_argument_names_says_which_in_one_line():
    def star_kit_iteration_end(iteration, result, foo):
        pass

    registry = Registry()
    registry.add_plugin(_module("x", star_kit_iteration_end=star_kit_iteration_end), "x", "dist-x")
    assert registry.problems == [  # pluggy refuses the whole plugin for it: said with what the hook passes
        "plugin 'x' from distribution 'dist-x' is invalid: hook star_kit_iteration_end() takes 'foo', which its "
        "hookspec does not pass; it passes iteration, result, config, run_dir (a hook may take any of them, by name)"]
    registry = Registry()  # a near miss gets the name it meant
    registry.add_plugin(_module("sub", star_kit_iteration_end=lambda iteration, results: None), "subtract",
                        "star-kit-subtract")
    assert registry.problems == [
        "plugin 'subtract' from distribution 'star-kit-subtract' is invalid: hook star_kit_iteration_end() takes "
        "'results', which its hookspec does not pass (did you mean 'result'?); it passes iteration, result, config, "
        "run_dir (a hook may take any of them, by name)"]


def test_a_register_hook_that_returns_its_plugins_instead_of_registering_them_is_said():
    registry = Registry()
    registry.add_plugin(_module("r", register_tasks=lambda register: {"mine": object}), "r", "dist-r")
    registry.collect()
    assert "mine" not in registry.names("tasks")
    assert any(p.startswith("plugin 'r' (distribution 'dist-r'): register_tasks returned {'mine': <class 'object'>")
               and "call register(name, factory) for each task instead" in p for p in registry.problems)


def test_a_number_given_for_a_string_option_is_passed_as_its_text(tmp_path):
    """`--task-opt digits=3` reads 3 as a number (every option value is read so); an option declared `str` gets
    "3", not the refusal "is not a string". A config file's quoted "3" stays a string."""
    from star_kit.config import load_config_file

    seen = {}

    def make_task(digits: str = "1-5", n: int = 3, **rest):
        seen.update(digits=digits, n=n)
        raise RuntimeError("built")  # what the factory was given is the point

    registry = Registry()
    registry.add_plugin(_module("t", register_tasks=lambda register: register("t", make_task)), "t", "d")
    registry.collect()
    registry.check_options("tasks", "t", digits=3, n=4)
    with pytest.raises(Exception, match="built"):
        registry.create("tasks", "t", digits=3, n=4)
    assert seen == {"digits": "3", "n": 4}
    with pytest.raises(Exception, match=r"option n=4.5 is not an integer"):  # numbers stay checked as numbers
        registry.check_options("tasks", "t", n=4.5)
    with pytest.raises(Exception, match=r"option digits=1.1 is not a string"):  # "1.10" cannot be given back
        registry.check_options("tasks", "t", digits=1.1)
    config = tmp_path / "c.yaml"
    config.write_text("task_options: {digits: '3', n: 4, lr: 1e-4}\n")
    assert load_config_file(config)["task_options"] == {"digits": "3", "n": 4, "lr": 1e-4}


def test_a_plugin_exception_of_several_lines_is_one_warning_line(capsys):
    """An extractor, a verifier or a logger whose exception message spans lines (a traceback-like text) is named
    in one line of stderr, and a verifier's reason (kept in samples.jsonl) is one line too."""
    registry = Registry()

    def boom(*_):
        raise RuntimeError("first line\n  second line\n")

    registry.add_plugin(_module("x", register_extractors=lambda register: register("e", boom),
                                register_verifiers=lambda register: register("v", boom)), "x", "d")
    registry.add_plugin(_module("logger", star_kit_iteration_end=lambda iteration: boom()),
                        "logger", "d")
    registry.collect()
    assert registry.extractor("e")("text") is None
    assert registry.verifier("v")(None, "text") == "verifier 'v' raised RuntimeError: first line; second line"
    warnings = registry.emit("star_kit_iteration_end", iteration=1, result=None, config=None, run_dir=None)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("warning: ") for line in err), err
    assert all("RuntimeError: first line; second line" in line for line in err)
    assert warnings == [err[2].removeprefix("warning: ")]


def test_an_entry_point_group_misspelt_is_said(monkeypatch):
    """`[project.entry-points.starkit]` instead of `star_kit`: pip installs it, nothing loads it; the registry says
    so (a plugin that silently never appears costs its author the most time)."""
    real = md.entry_points()
    typo = md.EntryPoint("subtract", "star_kit_subtract.plugin", "starkit")
    other = md.EntryPoint("x", "x:main", "console_scripts")
    both = md.EntryPoints([*real.select(group="star_kit"), typo, other])
    monkeypatch.setattr(md, "entry_points", lambda: both)
    registry = load_registry()
    assert "arithmetic" in registry.names("tasks")  # the real group still loads
    assert registry.problems == ["entry point subtract (?) in group 'starkit', which star-kit does not read: plugins "
                                 "go in group 'star_kit' ([project.entry-points.star_kit] in pyproject.toml)"]



def test_where_a_plugin_raised_is_found_through_partials_and_namespace_packages(tmp_path, monkeypatch, capsys):
    """The error names the line in the plugin's own code: also for a functools.partial it registered, and for a
    plugin in a namespace package (no __init__.py, so no __file__ on the package); never a line of the stdlib."""
    import functools

    (tmp_path / "nsacme").mkdir()
    (tmp_path / "nsacme" / "plug.py").write_text("def extract(text, sep):\n    raise KeyError(sep)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import nsacme.plug

    registry = Registry()

    def register(register):
        register("partial", functools.partial(nsacme.plug.extract, sep="|"))

    registry.add_plugin(_module("acme", register_extractors=register), "acme", "dist-acme")
    registry.collect()
    assert registry.extractor("partial")("x") is None
    err = capsys.readouterr().err
    assert "raised KeyError: '|' (in extract() at nsacme/plug.py:2); its outputs count as no answer" in err
    try:
        json.loads("{")
    except ValueError as exc:  # a stdlib function as the registered object: no line is claimed for it
        registry.items["extractors"]["json"] = Registered("json", json.loads, "acme", "dist-acme")
        assert registry.raised_at("extractors", "json", exc) == ""
