"""Reliability: one run per run directory (a lock).

Runs use the ``canned`` sampler and ``no-train`` trainer of ``tests/test_security.py`` (loaded as a plugin), so
nothing here loads a model.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from star_kit.cli import main
from star_kit.config import RunConfig
from star_kit.errors import StarKitError, UnknownNameError
from star_kit.store import RunLock, write_json

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ["--plugin", "test_security", "--sampler", "canned", "--trainer", "no-train"]


@pytest.fixture()
def fake_model(tmp_path):
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return str(path)


def _run(out, model, *extra):
    return main(["run", *PLUGIN, "--model", model, "--out", str(out), "--iterations", "0", "--eval-size", "4",
                 "--train-size", "4", "--no-progress", *extra])


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


# -- a lock on the run directory -------------------------------------------------------------------------------
def _hold_lock(run: Path) -> subprocess.Popen:
    """Another process holding ``run``'s lock until its stdin closes."""
    code = ("import sys; from star_kit.store import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); sys.stdin.read(); lock.release()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_a_locked_directory_is_refused_naming_the_holder(tmp_path, fake_model, capsys):
    run = tmp_path / "run"
    assert _run(run, fake_model) == 0
    assert not (run / ".lock").exists()  # released (and removed) when the run ended
    capsys.readouterr()
    holder = _hold_lock(run)
    try:
        assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 2
        err = _one_line(capsys)
        assert f"{run} is in use by another star-kit run (pid {holder.pid} on {socket.gethostname()}, since " in err
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    # The holder is gone: the same command runs.
    assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 0
    assert not (run / ".lock").exists()


def test_a_stale_lock_file_is_taken_over(tmp_path, fake_model):
    run = tmp_path / "run"
    assert _run(run, fake_model) == 0
    # A run killed with SIGKILL leaves its lock file; the kernel dropped its flock.
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "yesterday"}))
    assert main(["run", "--resume", str(run), "--plugin", "test_security", "--no-progress"]) == 0
    with RunLock(run) as lock:  # and it is free again
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    assert not (run / ".lock").exists()


def test_the_lock_is_held_while_the_run_works(tmp_path, fake_model, monkeypatch):
    """While a run samples, evaluates or trains, a second taker of its directory is refused."""
    import test_security

    seen = []
    real = test_security.CannedSampler.generate

    def generate(self, prompts, params, advance=None):
        with pytest.raises(StarKitError, match="is in use by another star-kit run"):
            RunLock(tmp_path / "run").acquire()
        seen.append(len(prompts))
        return real(self, prompts, params, advance)

    monkeypatch.setattr(test_security.CannedSampler, "generate", generate)
    assert _run(tmp_path / "run", fake_model) == 0
    assert seen  # the baseline evaluation ran under the lock
