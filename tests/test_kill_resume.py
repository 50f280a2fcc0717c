"""SIGKILL a real run (subprocess, tiny model, CPU, fixed seed) during sampling, training and evaluation; resume
it; the final metrics.jsonl, samples and train.jsonl are identical to an uninterrupted run's."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from star_kit.store import read_jsonl

from test_security import fake_model  # noqa: F401 - the canned sampler's model fixture



def _cmd(tiny_model, out, resume=False):
    if resume:
        return [sys.executable, "-m", "star_kit.cli", "run", "--resume", str(out), "--no-progress"]
    return [sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out", str(out),
            "--task", "lenient-arithmetic", "--iterations", "1", "--seed", "7", "--no-progress", "--no-merge-passes",
            "--train-size", "24", "--eval-size", "16", "--base-steps", "25", "--chunk-size", "2",
            "--sampler-opt", "batch_size=2", "--trainer-opt", "per_device_train_batch_size=2"]


def _results(out):
    it = out / "iter_01"
    metrics = [{k: v for k, v in r.items() if k not in ("seconds", "checkpoint")}
               for r in read_jsonl(out / "metrics.jsonl")]
    return metrics, (it / "samples.jsonl").read_text(), (it / "train.jsonl").read_text()


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory, plugin_env):
    out = tmp_path_factory.mktemp("ref") / "run"
    subprocess.run(_cmd(tiny_model, out), env=plugin_env, check=True, capture_output=True, timeout=600)
    return _results(out)


def _partial_lines(path):
    try:
        return path.read_text().count("\n")
    except OSError:
        return 0


MARKERS = {
    # sampling: two chunks of samples are on disk, more are coming
    "sampling": lambda it: _partial_lines(it / "samples.jsonl.partial") >= 4,
    # training: the trainer's work folder exists, no checkpoint yet
    "training": lambda it: any(it.glob("*.work")) and not (it / "checkpoint").exists(),
    # evaluation: the evaluation input is written, no result yet
    "evaluation": lambda it: (it / "eval_docs.jsonl").exists() and not (it / "eval.json").exists(),
}


@pytest.mark.parametrize("phase", list(MARKERS))
def test_sigkill_then_resume_matches_uninterrupted(phase, tiny_model, tmp_path, reference, plugin_env):
    out = tmp_path / "run"
    it = out / "iter_01"
    proc = subprocess.Popen(_cmd(tiny_model, out), env=plugin_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if MARKERS[phase](it):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed, f"the run ended before reaching {phase}: {proc.stderr.read().decode()[-1500:]}"
    assert not (out / "metrics.jsonl").exists() or len(read_jsonl(out / "metrics.jsonl")) < 2
    done = subprocess.run(_cmd(tiny_model, out, resume=True), env=plugin_env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _results(out) == reference
    assert not list(it.glob("*.partial")) and not list(it.glob("*.work"))
    said = " ".join(done.stderr.split())  # the resume says what it read back and what it does again
    assert f"resuming {out}: iteration 0 finished (read back); iteration 1: " in said
    if phase == "sampling":
        assert re.search(r"iteration 1: nothing finished, \d+ rows of samples.jsonl \(the rest is sampled\); the "
                         r"rest runs again", said)
    if phase == "evaluation":
        assert "iteration 1: kept samples.jsonl, rationalized.jsonl, train.jsonl, checkpoint; the rest runs" in said


def test_sigterm_is_one_line_releases_the_lock_and_resumes(tiny_model, tmp_path, reference, plugin_env):
    """SIGTERM (docker stop, scancel, systemd) during training: the line Ctrl-C gets, exit 143, the lock released
    (not left to the next run to take over), and the resumed run ends as an uninterrupted one."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(tiny_model, out), env=plugin_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not MARKERS["training"](out / "iter_01"):
        time.sleep(0.005)
    assert proc.poll() is None, f"the run ended before training: {proc.stderr.read()[-1500:]}"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == f"terminated (SIGTERM); continue with `star-kit run --resume {out}`"
    assert "Traceback" not in err and not (out / ".lock").exists()
    done = subprocess.run(_cmd(tiny_model, out, resume=True), env=plugin_env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _results(out) == reference


def test_an_interrupted_start_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch, fake_model):
    """Ctrl-C while the sampler loads (config.yaml written, nothing computed): the start is undone, so the line
    says to run the command again (not `--resume DIR`, which would find nothing), and the same command runs."""
    import test_security

    def loading(self, model, **options):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(test_security.CannedSampler, "__init__", loading)
        assert test_security._run(out, fake_model) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "interrupted before anything was computed; run the same command again"
    assert not out.exists()
    assert test_security._run(out, fake_model) == 0
