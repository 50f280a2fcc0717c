"""The product promise: a third party pip-installs a task and it appears.

``examples/star-kit-multiply`` is a separate distribution that registers the task and extractor ``multiply``
only through its own ``[project.entry-points.star_kit]``. It is pip-installed (non-editable, from a copy)
into this environment for the module and uninstalled at the end; every star-kit command runs in a fresh
subprocess, as a user would run it. Broken and clashing distributions are written as bare ``.dist-info``
folders on the subprocess's PYTHONPATH only, so nothing broken is ever installed into the shared environment.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "star-kit-multiply"
DIST = "star-kit-multiply"


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True, capture_output=True, text=True, timeout=300)


def _cli(*args: str, cwd: Path, pythonpath: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """``star-kit ARGS`` in a fresh interpreter, with only installed plugins (no STAR_KIT_* selection)."""
    env = {k: v for k, v in os.environ.items() if k not in ("STAR_KIT_LOAD_PLUGINS", "STAR_KIT_PLUGINS")}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "star_kit.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _plugins_json(cwd: Path, pythonpath: Path | None = None) -> dict:
    proc = _cli("plugins", "--json", cwd=cwd, pythonpath=pythonpath)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _entry(data: dict, kind: str, name: str) -> dict | None:
    return next((e for e in data[kind] if e["name"] == name), None)


@pytest.fixture(scope="module")
def installed_multiply(tmp_path_factory):
    """star-kit-multiply pip-installed (non-editable) from a copy of the example; uninstalled afterwards."""
    src = tmp_path_factory.mktemp("src") / "star-kit-multiply"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    _pip("install", "--no-deps", "--no-build-isolation", "-q", str(src))
    try:
        yield tmp_path_factory.mktemp("cwd")  # a neutral working directory for the subprocesses
    finally:
        _pip("uninstall", "-y", DIST)


def _fake_distribution(site: Path, dist: str, module: str, source: str) -> None:
    """A minimal installed distribution: ``<dist>.dist-info`` with METADATA and entry_points.txt, plus a module."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[star_kit]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)


def test_the_example_imports_only_star_kits_public_modules():
    """A third party's plugin needs nothing from star-kit's own plugin modules (``star_kit_plugins``,
    ``star_kit_tasks``): what the example uses from star-kit comes from the ``star_kit`` package."""
    import ast

    tree = ast.parse((EXAMPLE / "star_kit_multiply" / "plugin.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    star_kit_modules = {m for m in imported if m.split(".")[0].startswith("star_kit")}
    assert star_kit_modules == {"star_kit", "star_kit.arith", "star_kit.errors", "star_kit.records", "star_kit.task"}


# -- installed through pip: listed, and one STaR iteration runs on it -------------------------------------
def test_installed_distribution_appears_in_star_kit_plugins(installed_multiply):
    data = _plugins_json(installed_multiply)
    for kind in ("tasks", "extractors"):
        assert _entry(data, kind, "multiply") == {"name": "multiply", "plugin": "multiply", "distribution": DIST}
    assert _entry(data, "tasks", "arithmetic")["distribution"] == "star-kit"  # the built-ins are still there
    assert not [p for p in data["problems"] if DIST in p]
    # It is the installed copy that loads (package data included), not the source folder.
    proc = subprocess.run(
        [sys.executable, "-c", "import star_kit_multiply.plugin as p; print(p.HERE); print(p.MultiplyTask().extractor)"],
        cwd=installed_multiply, capture_output=True, text=True, timeout=60, check=True)
    here, extractor = proc.stdout.split()
    assert Path(here).parent == Path(sysconfig.get_paths()["purelib"]) and extractor == "multiply"


def test_one_star_iteration_on_the_installed_task(installed_multiply, tiny_model, tmp_path):
    out = tmp_path / "run"
    proc = _cli("run", "--task", "multiply", "--task-opt", "digits=1-2", "--iterations", "1",
                "--model", tiny_model, "--out", str(out), "--train-size", "6", "--eval-size", "4",
                "--base-steps", "2", "--no-progress", "--sampler-opt", "batch_size=4",
                "--trainer-opt", "per_device_train_batch_size=2", cwd=installed_multiply, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[1]["sampled"] == 6 and rows[1]["kept"] + rows[1]["no_answer"] <= 6
    evaluated = [json.loads(line) for line in (out / "iter_01" / "eval_samples.jsonl").read_text().splitlines()]
    assert [e["correct"] for e in evaluated] == [e["predicted"] == e["gold"] for e in evaluated]  # is_correct
    assert rows[1]["accuracy"] == sum(e["correct"] for e in evaluated) / 4
    assert set(rows[1]["seconds"]) >= {"sample", "evaluate"}
    samples = [json.loads(line) for line in (out / "iter_01" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    for s in samples:  # the task's questions and gold answers, whatever the random model wrote
        a, b = re.fullmatch(r"(\d+) \* (\d+) = \?", s["question"]).groups()
        assert s["gold"] == str(int(a) * int(b)) and len(a) == len(b) <= 2
    ev = json.loads((out / "iter_01" / "eval.json").read_text())
    assert ev["task"] == "star_kit_multiply" and ev["n"] == 4  # the plugin's own lm-eval YAML
    docs = (out / "iter_00" / "eval_docs.jsonl").read_text()  # the base model is evaluated few-shot ...
    assert "23 * 47 = 23 * 40 + 23 * 7 = 920 + 161 = 1081. The answer is 1081." in docs  # its own exemplars
    # ... M(1) as trained (the question alone); a random model keeps nothing, and an M(1) that trained nothing is the
    # base model, prompted as M0
    assert ("23 * 40 + 23 * 7" in (out / "iter_01" / "eval_docs.jsonl").read_text()) == (rows[1]["checkpoint"] is None)


# -- broken and clashing distributions ----------------------------------------------------------------------
def test_a_distribution_that_fails_to_import_is_named_and_the_rest_still_load(installed_multiply, tmp_path):
    site = tmp_path / "site"
    _fake_distribution(site, "broken-star-plugin", "broken_star_plugin",
                       "raise ImportError('needs libfoo, which is not installed')\n")
    proc = _cli("plugins", cwd=installed_multiply, pythonpath=site)
    assert proc.returncode == 0, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "warning:" in err and "'broken-star-plugin'" in err and "needs libfoo" in err
    assert "multiply" in proc.stdout and "arithmetic" in proc.stdout and "star-kit-multiply" in proc.stdout
    data = _plugins_json(installed_multiply, pythonpath=site)
    assert _entry(data, "tasks", "multiply")["distribution"] == DIST
    assert _entry(data, "tasks", "arithmetic")["distribution"] == "star-kit"
    assert [p for p in data["problems"] if "broken-star-plugin" in p]


def test_a_duplicate_task_name_warns_naming_both_distributions(installed_multiply, tmp_path):
    site = tmp_path / "site"
    _fake_distribution(site, "another-multiply", "another_multiply", (
        "import star_kit\n\n"
        "@star_kit.hookimpl\n"
        "def register_tasks(register):\n"
        "    register('multiply', object)\n"))
    proc = _cli("plugins", cwd=installed_multiply, pythonpath=site)
    assert proc.returncode == 0, proc.stderr
    warnings = [w for w in " ".join(proc.stderr.split()).split("warning:") if "'multiply'" in w]
    assert len(warnings) == 1
    assert "'another-multiply'" in warnings[0] and f"'{DIST}'" in warnings[0]
    data = _plugins_json(installed_multiply, pythonpath=site)
    assert {e["distribution"] for e in data["tasks"] if e["name"] == "multiply"} <= {DIST, "another-multiply"}
    assert _entry(data, "extractors", "multiply")["distribution"] == DIST  # only the task name clashed


# -- the example's own pieces (loaded from the source folder, nothing installed) ----------------------------
@functools.cache
def _source_plugin():
    """``examples/star-kit-multiply/star_kit_multiply/plugin.py`` loaded by path (never the installed copy)."""
    path = EXAMPLE / "star_kit_multiply" / "plugin.py"
    spec = importlib.util.spec_from_file_location("_star_kit_multiply_source", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def multiply_source():
    return _source_plugin()


def test_rationale_format_and_exemplars(multiply_source):
    p = multiply_source
    assert p.multiply_rationale(23, 47) == "23 * 47 = 23 * 40 + 23 * 7 = 920 + 161 = 1081"
    assert p.multiply_rationale(312, 205) == "312 * 205 = 312 * 200 + 312 * 5 = 62400 + 1560 = 63960"
    assert p.multiply_rationale(6, 7) == "6 * 7 = 42" and p.multiply_rationale(58, 30) == "58 * 30 = 1740"
    task = p.MultiplyTask()
    assert task.name == "multiply" and task.extractor == "multiply" and task.lm_eval_config["task"] == "star_kit_multiply"
    for ex in task.fewshot():
        a, b = (int(x) for x in re.fullmatch(r"(\d+) \* (\d+) = \?", ex.question).groups())
        assert ex.answer == str(a * b) and ex.rationale == p.multiply_rationale(a, b)
    # Seeded, balanced over digit counts, eval_digits separate from digits.
    task = p.MultiplyTask(digits="2-3", eval_digits="4")
    train = task.examples("train", 10, seed=1)
    assert train == task.examples("train", 10, seed=1) != task.examples("train", 10, seed=2)
    assert sorted({e.fields["digits"] for e in train}) == [2, 3]
    assert {len(str(e.fields["a"])) for e in task.examples("eval", 5, seed=1)} == {4}


def test_extractor(multiply_source):
    ex = multiply_source.extract_product
    assert ex("23 * 47 = 920 + 161 = 1081. The answer is 1081.") == "1081"
    assert ex("the answer is 1,081 ... The Answer is: 0042") == "42"
    assert ex("The answer is -0.") == "0" and ex("The answer is -12.") == "-12"
    assert ex("no number here") is None and ex("") is None and ex(None) is None
    assert ex("The answer is \u0663.") is None  # ASCII digits only (an Arabic-Indic three is not an answer)
    assert ex("The answer is " + "9" * 100_000) == "9" * 100_000  # no int() of unbounded strings


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_extractor_never_raises(text):
    result = _source_plugin().extract_product(text)
    assert result is None or re.fullmatch(r"-?[0-9]+", result)
