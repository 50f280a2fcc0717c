"""Scale-out for real on this machine: training in 2 processes under ``accelerate launch`` (gloo on CPU) and
sampling on a local Ray cluster with 2 CPU actors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from star_kit.errors import StarKitError
from star_kit.records import GenerationParams, TrainExample
from star_kit.store import read_jsonl

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'star-kit[ray]')")

TESTS = Path(__file__).resolve().parent
LOSS_RTOL = 1e-3  # tiny model, fp32 master weights: 1 vs 2 processes at the same effective batch and seed


# -- Ray ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A real local Ray cluster with 2 CPUs; its workers see the tests' plugin module."""
    saved = {k: os.environ.get(k) for k in ("STAR_KIT_PLUGINS", "PYTHONPATH")}
    os.environ["STAR_KIT_PLUGINS"] = "plugins_for_tests"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), saved["PYTHONPATH"]) if p)
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _prompts(n=10):
    from star_kit_plugins.arithmetic import ArithmeticTask

    task = ArithmeticTask()
    return [task.prompt(e) for e in task.examples("train", n, 0)], task.stop


def test_balance_deals_every_prompt_once_longest_first():
    from star_kit_plugins.ray_sampler import balance

    lengths = [5, 100, 7, 60, 40, 3, 90, 8]
    shards = balance(lengths, 3)
    assert sorted(i for s in shards for i in s) == list(range(len(lengths)))
    loads = [sum(lengths[i] for i in s) for s in shards]
    assert max(loads) - min(loads) <= max(lengths)  # greedy LPT bound
    for s in shards:
        assert [lengths[i] for i in s] == sorted((lengths[i] for i in s), reverse=True)
    assert balance([1, 2], 4)[2:] == [[], []]  # more workers than prompts: idle actors, no error


def test_ray_sampler_equals_hf_and_load_reaches_every_actor(ray_cluster, tiny_model, tmp_path):
    """Greedy output of 2 Ray actors equals the plain hf sampler's, in the caller's order, before and after
    load(); load() reaches both actors (each then answers like the new model)."""
    import torch
    from transformers import AutoModelForCausalLM

    from star_kit_plugins.hf_sampler import HFSampler
    from star_kit_plugins.ray_sampler import RaySampler

    other = tmp_path / "other"  # a second model that answers differently: the tiny model, perturbed
    net = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    net.save_pretrained(other)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(other)

    prompts, stop = _prompts(10)
    params = GenerationParams(max_new_tokens=12, stop=stop)
    hf = HFSampler(tiny_model, dtype="float32", batch_size=3)
    expected = hf.generate(prompts, params)
    hf.load(str(other))
    expected_other = hf.generate(prompts, params)
    hf.close()
    assert expected != expected_other  # the check below can fail

    sampler = RaySampler(tiny_model, workers=2, chunk_size=3, dtype="float32", batch_size=3)
    try:
        done = []
        assert sampler.generate(prompts, params, advance=done.append) == expected
        assert sum(done) == len(prompts) and len(done) >= 2  # progress per chunk
        sampler.load(str(other))
        assert sampler.model == str(other)
        pids = ray.get([a.load.remote(str(other)) for a in sampler.actors])
        assert len(set(pids)) == 2  # two actor processes, both loaded
        assert sampler.generate(prompts, params) == expected_other
        assert sampler.generate([], params) == []
    finally:
        sampler.close()


def test_ray_actor_that_dies_is_restarted_and_its_shard_retried(ray_cluster, tiny_model, tmp_path):
    from star_kit_plugins.hf_sampler import HFSampler
    from star_kit_plugins.ray_sampler import RaySampler

    prompts, stop = _prompts(6)
    params = GenerationParams(max_new_tokens=8, stop=stop)
    expected = HFSampler(tiny_model, dtype="float32").generate(prompts, params)
    crashes = tmp_path / "crashes"
    sampler = RaySampler(tiny_model, workers=2, backend="crashing-hf", chunk_size=2, max_restarts=2,
                         crash_file=str(crashes), crashes=1, dtype="float32")
    try:
        assert sampler.generate(prompts, params) == expected
        assert crashes.read_text() == "x"  # it really died once
    finally:
        sampler.close()

    always = tmp_path / "always"
    sampler = RaySampler(tiny_model, workers=1, backend="crashing-hf", max_restarts=1,
                         crash_file=str(always), crashes=99, dtype="float32")
    try:
        with pytest.raises(StarKitError, match=r"actor 0 died and 1 restarts did not help"):
            sampler.generate(prompts, params)
        assert always.read_text() == "xx"  # bounded: the first try and one restart
    finally:
        sampler.close()


def test_ray_sampler_bad_options_are_one_line(ray_cluster, tiny_model):
    from star_kit_plugins.ray_sampler import RaySampler

    with pytest.raises(StarKitError, match="workers must be an integer >= 1"):
        RaySampler(tiny_model, workers=0)
    with pytest.raises(StarKitError, match=r"sampler 'ray': option backend='nope' is not a sampler \(available: .*hf, "
                                           r"openai") as err:
        RaySampler(tiny_model, backend="nope")
    assert err.value.exit_code == 2
    with pytest.raises(StarKitError, match=r"sampler 'hf' .* has no option 'nosuchopt'; its options: dtype, device"):
        RaySampler(tiny_model, workers=1, nosuchopt=1)  # the backend's signature, before any actor starts
    # A value outside the backend's declared ones: refused by its annotations, before any actor starts.
    with pytest.raises(StarKitError, match=r"sampler 'hf' .*: option dtype='float33' is not 'auto' or 'bfloat16' or "
                                           r"'float16' or 'float32' \(did you mean 'float32' or 'float16'\?\)$") as err:
        RaySampler(tiny_model, workers=1, dtype="float33")
    assert err.value.exit_code == 2
    with pytest.raises(StarKitError, match=r"option batch_size='x' is not an integer or 'auto'$"):
        RaySampler(tiny_model, workers=1, batch_size="x")
    # a value no machine takes: the backend's check_options, before any actor starts
    with pytest.raises(StarKitError, match=r"^sampler 'hf': batch_size must be auto or a positive integer, got 0$"):
        RaySampler(tiny_model, workers=1, batch_size=0)
    # A value only the backend itself checks, on its machine (in the actor): its own line and exit code, not Ray's
    # ActorDiedError.
    with pytest.raises(StarKitError) as err:
        RaySampler(tiny_model, workers=1, device="cuda:99")
    assert str(err.value).startswith("sampler 'ray': sampler 'hf': device 'cuda:99': torch sees ") \
        and err.value.exit_code == 2


def test_an_actor_whose_backend_refused_to_start_raises_that_error_on_every_call(tiny_model):
    """A restarted actor is not asked for info(): its generate/load must raise the backend's own error."""
    from star_kit_plugins.ray_sampler import SamplerActor

    actor = SamplerActor("hf", tiny_model, {"batch_size": 0}, None)  # the class itself, in this process
    assert actor.info()["error"] == ("sampler 'hf': batch_size must be auto or a positive integer, got 0", 2)
    for call in (lambda: actor.generate(["1 + 1 ="], GenerationParams(max_new_tokens=2)), lambda: actor.load("m")):
        with pytest.raises(StarKitError, match="batch_size must be auto") as err:
            call()
        assert err.value.exit_code == 2
    actor.close()  # nothing to close: no error


def test_ray_workers_that_do_not_fit_the_local_instance_are_refused_not_left_waiting(tiny_model, tmp_path):
    """A local Ray instance has this machine's CPUs: actors that cannot be placed would wait forever."""
    proc = subprocess.run([sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out",
                           str(tmp_path / "run"), "--no-progress", "--sampler", "ray", "--sampler-opt", "workers=4",
                           "--sampler-opt", "cpus_per_worker=1024"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "error: sampler 'ray': workers=4 x cpus_per_worker=1024 needs 4096 CPUs; this machine's Ray instance " \
           "has" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_ray_cluster_that_is_not_there_is_refused_in_seconds(tiny_model, tmp_path):
    """Ray retries a dead address for ~13 minutes, printing its C++ warnings; star-kit probes it first."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out",
                           str(tmp_path / "run"), "--no-progress", "--sampler", "ray", "--sampler-opt",
                           "address=127.0.0.1:1"], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: sampler 'ray': no Ray cluster to join at address=127.0.0.1:1 (127.0.0.1:1: Connection refused; start "
        "one with `ray start --head`, or leave it unset for a local instance)")
    assert time.monotonic() - started < 60


def test_ray_actors_a_joined_cluster_cannot_place_or_start_are_not_left_waiting(ray_cluster, tiny_model, capsys):
    """A joined cluster (here the tests' 2-CPU one) with too few CPUs for the actors: said at once (an autoscaling
    cluster may add nodes), and actors that do not start within start_timeout stop with one line naming what the
    cluster has free; never a silent hang."""
    from star_kit_plugins.ray_sampler import RaySampler

    with pytest.raises(StarKitError, match=r"^sampler 'ray': [123] of 3 actors did not start within "
                                           r"start_timeout=3s \(the Ray cluster at address=auto has") as err:
        RaySampler(tiny_model, workers=3, address="auto", start_timeout=3)
    assert err.value.exit_code == 2
    assert ("warning: sampler 'ray': workers=3 x cpus_per_worker=1 needs 3 CPUs; the Ray cluster at address=auto has "
            "2 now: the actors wait for nodes to join (an autoscaling cluster) for at most start_timeout=3s"
            ) in capsys.readouterr().err
    with pytest.raises(StarKitError, match=r"cpus_per_worker must be a number >= 0, got -1"):
        RaySampler(tiny_model, cpus_per_worker=-1)
    with pytest.raises(StarKitError, match=r"^sampler 'ray': [12] of 2 actors did not start within "
                                           r"start_timeout=0.001s \(the Ray cluster at address=auto has .* CPUs and "
                                           r"0 GPUs free now\); ask for fewer workers, or raise start_timeout$"):
        RaySampler(tiny_model, workers=2, address="auto", start_timeout=0.001)
    with pytest.raises(StarKitError, match="start_timeout must be a number of seconds > 0, got 0"):
        RaySampler(tiny_model, start_timeout=0)
    deadline = time.monotonic() + 30  # the refused sampler's actors were killed: their CPUs are free again
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray.available_resources().get("CPU", 0) == 2


def test_sigterm_with_the_ray_sampler_is_the_commands_one_line(tiny_model, tmp_path):
    """ray.init sets its own SIGTERM handler (sys.exit); the command's is kept: one line, exit 143, lock released."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out", str(out),
                             "--no-progress", "--sampler", "ray", "--sampler-opt", "workers=1", "--iterations", "1",
                             "--train-size", "8", "--eval-size", "4", "--base-steps", "4",
                             "--trainer-opt", "per_device_train_batch_size=2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not (out / "iter_00" / "eval_docs.jsonl").exists():
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err[-2000:]
    # the command said works as said: the Ray sampler is named again (a run directory does not pick it alone)
    assert err.strip().splitlines()[-1] == \
        f"terminated (SIGTERM); continue with `star-kit run --resume {out} --sampler ray`"
    assert not (out / ".lock").exists()


# -- accelerate --------------------------------------------------------------------------------------------
def _pairs(n=32):
    return [TrainExample(str(i), f"What is {i} + {i + 1}?", f" {i} + {i + 1} = {2 * i + 1}. The answer is "
                         f"{2 * i + 1}.\n", "sampled") for i in range(n)]


def _train(model, out, **options):
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    steps = []
    TRLSFTTrainer(learning_rate=1e-3, logging_steps=1, **options).train(
        model, _pairs(), 6, out, seed=3, advance=steps.append)
    assert sum(steps) == 6  # the worker's steps reach the caller's progress bar
    return [row["loss"] for row in read_jsonl(out / "train_log.jsonl")]


def test_accelerate_two_processes_match_one(tiny_model, tmp_path, capfd):
    """2 processes x batch 4 (gloo) give the loss curve of 1 process x batch 8; the checkpoint loads and samples."""
    from star_kit_plugins.hf_sampler import HFSampler

    one = _train(tiny_model, tmp_path / "one" / "checkpoint", per_device_train_batch_size=8)
    two = _train(tiny_model, tmp_path / "two" / "checkpoint", per_device_train_batch_size=4,
                 launcher="accelerate", num_processes=2)
    assert len(one) == len(two) == 6
    for a, b in zip(one, two):
        assert abs(a - b) <= LOSS_RTOL * abs(a), (one, two)
    err = capfd.readouterr().err
    assert "2 training processes on cpu (MULTI_CPU) x per-device batch 4 x accumulation 1 = effective batch 8" in err
    log = (tmp_path / "two" / "train_worker.log").read_text()
    assert "effective batch 8" in log
    assert not (tmp_path / "two" / "checkpoint.work").exists()  # scratch (spec, data copy) removed
    texts = HFSampler(str(tmp_path / "two" / "checkpoint"), dtype="float32").generate(
        ["1 + 2 ="], GenerationParams(max_new_tokens=4))
    assert len(texts) == 1 and isinstance(texts[0][0], str)


def test_trainer_options_are_checked():
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    with pytest.raises(StarKitError, match="unknown option 'learning_rte'"):
        TRLSFTTrainer(learning_rte=1e-4)
    with pytest.raises(StarKitError, match="'max_steps' is set by star-kit"):
        TRLSFTTrainer(max_steps=3)
    with pytest.raises(StarKitError, match="launcher must be one of inprocess, accelerate"):
        TRLSFTTrainer(launcher="slurm")
    with pytest.raises(StarKitError, match="need launcher=accelerate"):
        TRLSFTTrainer(num_processes=2)
    assert TRLSFTTrainer(gradient_checkpointing=True).sft_options["gradient_checkpointing"] is True  # TRL's name
    cmd = TRLSFTTrainer(launcher="accelerate", num_processes=2).launch_command(Path("s.json"))
    assert cmd[-3:] == ["-m", "star_kit_plugins.trl_worker", "s.json"] and "--num_processes" in cmd
    # what accelerate or the socket would refuse only when training starts (after the baseline and the sampling)
    for port in (70000, 0, -5, "x", True):
        with pytest.raises(StarKitError, match=r"main_process_port must be a port number from 1 to 65535, got"):
            TRLSFTTrainer(launcher="accelerate", num_processes=2, main_process_port=port)
    with pytest.raises(StarKitError, match=r"launch_args '--bogus_flag': accelerate launch has no option "
                                           r"'--bogus_flag'$"):
        TRLSFTTrainer(launcher="accelerate", launch_args="--bogus_flag")
    with pytest.raises(StarKitError, match=r"launch_args '--num_machines x': argument --num_machines.*invalid int "
                                           r"value: 'x'$"):
        TRLSFTTrainer(launcher="accelerate", launch_args="--num_machines x")
    for args, problem in [("foo.py", "'foo.py' is not an option (star-kit launches its own training worker)"),
                          ("--help", "--help is not an argument to launch with")]:
        with pytest.raises(StarKitError, match=re.escape(f"launch_args '{args}': {problem}")):
            TRLSFTTrainer(launcher="accelerate", launch_args=args)
    assert TRLSFTTrainer(launcher="accelerate", launch_args="--mixed_precision bf16", main_process_port=29601)


def test_more_training_processes_than_gpus_is_refused_before_anything(monkeypatch):
    """On a CUDA machine accelerate would start 1 process for num_processes=4 on one GPU (a quarter of the batch
    asked for), after the sampling: refused when the trainer is built. CPUs, a config file (several machines) or
    launch_args say otherwise."""
    import torch

    from star_kit_plugins import trl_trainer
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    monkeypatch.setattr(trl_trainer, "_has_cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(StarKitError, match=r"^trainer 'trl-sft': num_processes=4 but torch sees 1 CUDA device here: "
                                           r"one process per GPU \(for several machines, pass an accelerate_config\)$"):
        TRLSFTTrainer(launcher="accelerate", num_processes=4)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert TRLSFTTrainer(launcher="accelerate", num_processes=4).num_processes == 4
    monkeypatch.setattr(trl_trainer, "_has_cuda", lambda: False)  # CPU processes share the cores
    assert TRLSFTTrainer(launcher="accelerate", num_processes=8).num_processes == 8


# torchrun's summary after `kill -9` of rank 1 (the tail of a real train_worker.log), the launcher's traceback first
_KILLED_RANK_LOG = """\
[rank0]:[W1127 14:20:40.1 reducer.cpp:1529] Warning: find_unused_parameters=True was specified in DDP constructor
W1127 14:20:49.1 torch/distributed/elastic/multiprocessing/api.py:908] Sending process 17599 closing signal SIGTERM
Traceback (most recent call last):
  File "/venv/bin/accelerate", line 8, in <module>
    sys.exit(main())
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
=======================================================
star_kit_plugins.trl_worker FAILED
-------------------------------------------------------
Failures:
[1]:
  time      : 2026-11-27_14:20:49
  host      : localhost
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 17599)  (SIGTERM)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 17599
-------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-11-27_14:20:49
  host      : localhost
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 17600)  (SIGKILL)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 17600
=======================================================
"""


def test_a_failed_training_worker_is_one_line_naming_the_rank_and_the_exception(tmp_path):
    """The failure of a multi-process fine-tune in one line: the root cause's rank and signal, and the exception a
    worker raised (with torchrun's "[rankN]:" prefix), never the launcher's ChildFailedError; only this attempt's
    part of the log is read (a resumed iteration appends to it)."""
    from star_kit_plugins.trl_trainer import worker_failure

    log = tmp_path / "train_worker.log"
    log.write_text(_KILLED_RANK_LOG)
    assert worker_failure(log) == "rank 1 exitcode -9 (SIGKILL)"
    raised = ("[rank1]: Traceback (most recent call last):\n[rank1]:   File \"w.py\", line 3, in <module>\n"
              "[rank1]:     main()\n[rank1]: torch.OutOfMemoryError: CPU out of memory (tried 2 GiB)\n")
    log.write_text(raised + _KILLED_RANK_LOG.replace("-9 (pid: 17600)  (SIGKILL)", "1 (pid: 17600)"))
    assert worker_failure(log) == "rank 1 exitcode 1: torch.OutOfMemoryError: CPU out of memory (tried 2 GiB)"
    # the ranks' lines interleave: another rank's warning inside rank 1's traceback is not its exception
    interleaved = ("[rank1]: Traceback (most recent call last):\n[rank0]:[W1127 ProcessGroupGloo] Warning: rank 1 "
                   "closed the connection\n[rank1]:   File \"w.py\", line 3, in <module>\n[rank0]: RuntimeError: "
                   "Connection reset by peer\n[rank1]: ValueError: bad batch\n")
    log.write_text(interleaved + _KILLED_RANK_LOG.replace("-9 (pid: 17600)  (SIGKILL)", "1 (pid: 17600)"))
    assert worker_failure(log) == "rank 1 exitcode 1: ValueError: bad batch"
    log.write_text(interleaved + _KILLED_RANK_LOG)  # killed: the others' errors are its echo, not its cause
    assert worker_failure(log) == "rank 1 exitcode -9 (SIGKILL)"
    start = log.stat().st_size
    with open(log, "a") as fh:
        fh.write("==== next attempt ====\nValueError: a bad option\n")
    assert worker_failure(log, start) == "ValueError: a bad option"  # this attempt's last line: not the OOM above
    assert worker_failure(tmp_path / "missing.log") == "no log"


# -- the whole loop ----------------------------------------------------------------------------------------
def _run_cmd(model, out, *extra):
    return [sys.executable, "-m", "star_kit.cli", "run", "--model", model, "--out", str(out), "--no-progress",
            "--task", "lenient-arithmetic", "--iterations", "1", "--train-size", "8", "--eval-size", "4",
            "--trainer-opt", "launcher=accelerate", "--trainer-opt", "num_processes=2",
            "--trainer-opt", "per_device_train_batch_size=2", "--sampler", "ray", "--sampler-opt", "workers=2",
            "--sampler-opt", "batch_size=4", *extra]


def _workers():
    """PIDs of the training ranks (not the accelerate launcher)."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "star_kit_plugins.trl_worker" in cmd and "accelerate.commands.launch" not in cmd:
            found.append(p.info["pid"])
    return found


def test_worker_killed_is_one_error_and_resume_retrains(tiny_model, tmp_path, plugin_env):
    """SIGKILL of a training rank: the run stops with one line (exit code, log tail); --resume retrains the
    iteration under accelerate and evaluates its checkpoint."""
    out = tmp_path / "run"
    proc = subprocess.Popen(_run_cmd(tiny_model, out, "--base-steps", "150", "--no-baseline"), env=plugin_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = out / "iter_01" / "checkpoint.partial.work" / "progress.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if progress.exists() and progress.read_text().count("\n") >= 2 and _workers():
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    victims = _workers()
    assert len(victims) == 2
    os.kill(victims[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "the accelerate training worker exited with code" in err, err
    assert "Traceback" not in err.split("error:")[1].splitlines()[0]
    assert not (out / "iter_01" / "checkpoint").exists()
    assert not _workers()  # nothing left training beside a resumed run

    done = subprocess.run([sys.executable, "-m", "star_kit.cli", "run", "--resume", str(out), "--no-progress",
                           "--sampler", "ray"],
                          env=plugin_env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 training processes" in done.stderr and "2 sampling actors" in done.stderr
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [1] and rows[0]["steps"] == 150
    assert (out / "iter_01" / "checkpoint" / "config.json").exists()
    assert rows[0]["checkpoint"].endswith("checkpoint") and rows[0]["eval_examples"] == 4
    assert len(read_jsonl(out / "iter_01" / "checkpoint" / "train_log.jsonl")) >= 1
    json.loads((out / "iter_01" / "eval.json").read_text())


@pytest.mark.slow
def test_scaled_out_run_on_smollm2(smollm2, tmp_path):
    """The issue's command on the real SmolLM2: 2 training processes, 2 sampling actors, the checkpoint evaluated;
    the 2-process loss curve equals the 1-process one (same effective batch and seed) within bf16 noise."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "star_kit.cli", "run", "--out", str(out), "--no-progress", "--iterations", "1",
           "--train-size", "16", "--eval-size", "8", "--base-steps", "4", "--task-opt", "digits=1-2",
           "--trainer-opt", "launcher=accelerate", "--trainer-opt", "num_processes=2",
           "--trainer-opt", "per_device_train_batch_size=2", "--trainer-opt", "logging_steps=1",
           "--sampler", "ray", "--sampler-opt", "workers=2"]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 sampling actors ('hf' backend" in done.stderr
    assert "2 training processes on cpu (MULTI_CPU) x per-device batch 2 x accumulation 1 = effective batch 4" in done.stderr
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["iteration"] for r in rows] == [0, 1]
    it1 = rows[1]
    assert it1["kept"] > 0 and it1["steps"] == 4 and it1["checkpoint"] and it1["eval_examples"] == 8
    two = [r["loss"] for r in read_jsonl(out / "iter_01" / "checkpoint" / "train_log.jsonl")]

    from star_kit.records import TrainExample
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    pairs = [TrainExample(**r) for r in read_jsonl(out / "iter_01" / "train.jsonl")]
    one_dir = tmp_path / "one" / "checkpoint"
    TRLSFTTrainer(per_device_train_batch_size=4, logging_steps=1).train(smollm2, pairs, 4, one_dir, seed=0)
    one = [r["loss"] for r in read_jsonl(one_dir / "train_log.jsonl")]
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        assert abs(a - b) <= 0.02 * abs(a), (one, two)  # bf16 autocast on CPU: 2% per step


def test_a_credential_option_never_reaches_the_workers_spec_file(tmp_path, monkeypatch):
    """`hub_token` (an SFTConfig field) goes to the accelerate workers through their environment, not spec.json."""
    import star_kit_plugins.trl_trainer as trl_trainer

    seen = {}

    class Launched:
        def __init__(self, cmd, env, **kwargs):
            seen["spec"] = Path(cmd[-1]).read_text()
            seen["env"] = env[trl_trainer.SECRETS_ENV]
            self.pid = os.getpid()

        def poll(self):
            return 1

    monkeypatch.setattr(trl_trainer.subprocess, "Popen", Launched)
    trainer = trl_trainer.TRLSFTTrainer(launcher="accelerate", num_processes=2, hub_token="hf_SECRET123")
    with pytest.raises(StarKitError, match="exited with code 1"):
        trainer.train("unused-model", _pairs(2), 1, tmp_path / "checkpoint")
    assert "hf_SECRET123" not in seen["spec"] and "hub_token" not in seen["spec"]
    assert json.loads(seen["env"]) == {"hub_token": "hf_SECRET123"}


def test_print_config_checks_the_ray_samplers_own_options_and_its_backends(capsys):
    """The ray sampler passes every option but its own to its backend; --print-config checks both, and a misspelt
    option of its own is named as such, not as an unknown option of the backend."""
    from star_kit.cli import main

    for opt, message in [("worker=2", "sampler 'ray' has no option 'worker' (did you mean 'workers'?)"),
                         ("workers=0", "sampler 'ray': workers must be an integer >= 1, got 0"),
                         ("backend=hff", "option backend='hff' is not a sampler (available: "),
                         ("batch_sise=4", "sampler 'hf' (plugin 'hf', distribution 'star-kit') has no option "
                                          "'batch_sise' (did you mean 'batch_size'?)"),
                         ("nosuch=1", "has no option 'nosuch'; its options: dtype, device, batch_size, prefix_cache, "
                                      "static_cache, engine (through sampler 'ray', whose own options are workers, "
                                      "backend, address,"),
                         ("dtype=bogus", "option dtype='bogus' is not 'auto' or 'bfloat16'")]:
        assert main(["run", "--sampler", "ray", "--sampler-opt", opt, "--print-config"]) == 2, opt
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err, (opt, captured.err)
    assert main(["run", "--sampler", "ray", "--sampler-opt", "workers=2", "--sampler-opt", "batch_size=4",
                 "--print-config"]) == 0


def test_what_a_resume_on_another_cluster_may_change(tmp_path, monkeypatch):
    """Registry.outcome: the options that only place the work drop out (a batch size, a device, workers, the
    process count, the port), the trainer's batch layout counts as the global batch it makes, an accelerate config
    by its settings (not its path, not where its processes run); what changes results still counts."""
    from star_kit.protocols import placement_options
    from star_kit.registry import load_registry

    import torch

    from star_kit_plugins import trl_trainer

    monkeypatch.setattr(trl_trainer, "_default_accelerate_config", lambda: None)  # as on a machine without one
    here = max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1  # in process: DataParallel over all
    registry = load_registry()
    outcome = registry.outcome
    batch = "the global batch (per_device_train_batch_size x gradient_accumulation_steps x processes)"
    eight = {"launcher": "accelerate", "num_processes": 8, "per_device_train_batch_size": 8, "learning_rate": 5e-5}
    four = {**eight, "num_processes": 4, "gradient_accumulation_steps": 2, "main_process_port": 29600}
    assert outcome("trainers", "trl-sft", eight) == outcome("trainers", "trl-sft", four) == {
        "learning_rate": 5e-5, batch: 64}
    assert outcome("trainers", "trl-sft", {"per_device_train_batch_size": 4})[batch] == 4 * here
    # the launcher only places the work: in process at batch 8 = 2 processes of accelerate at batch 4 (on a CPU)
    assert outcome("trainers", "trl-sft", {"per_device_train_batch_size": 8 * here, "launcher": "inprocess"}) == \
        outcome("trainers", "trl-sft", {"per_device_train_batch_size": 4, "launcher": "accelerate",
                                        "num_processes": 2 * here})
    # launch_args' own --num_processes (the last one wins, as accelerate's parser takes it) is a placement too
    a = outcome("trainers", "trl-sft", {"launcher": "accelerate", "launch_args": "--num_processes 2 --mixed_precision"
                                        " bf16"})
    b = outcome("trainers", "trl-sft", {"launcher": "accelerate", "num_processes": 9, "gradient_accumulation_steps": 2,
                                        "launch_args": ["--mixed_precision", "bf16", "--num_processes=1"]})
    assert a == b == {"launch_args": ["--mixed_precision", "bf16"], batch: 16}
    # an accelerate config file: its process count and placement drop out, its settings count
    one, other = tmp_path / "a.yaml", tmp_path / "b.yaml"
    one.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\nnum_machines: 2\nmain_process_ip: 10.0.0.1\n"
                   "mixed_precision: bf16\n")
    other.write_text("distributed_type: MULTI_GPU\nnum_processes: 4\nnum_machines: 1\nmixed_precision: bf16\n")
    on = {"launcher": "accelerate", "per_device_train_batch_size": 8}
    a = outcome("trainers", "trl-sft", {**on, "accelerate_config": str(one)})
    b = outcome("trainers", "trl-sft", {**on, "accelerate_config": str(other), "gradient_accumulation_steps": 2})
    assert a == b == {"accelerate_config": {"distributed_type": "MULTI_GPU", "mixed_precision": "bf16"}, batch: 64}
    other.write_text("distributed_type: FSDP\nnum_processes: 8\n")
    assert outcome("trainers", "trl-sft", {**on, "accelerate_config": str(other)}) != a
    # no count given: as accelerate counts it here (no default configuration file, no GPU: 1), recorded by the run
    counted = outcome("trainers", "trl-sft", {"launcher": "accelerate", "per_device_train_batch_size": 8})
    assert counted == {batch: 8 * here}
    assert outcome("trainers", "trl-sft", {"launcher": "accelerate", "per_device_train_batch_size": 8,
                                           "main_process_port": 29500}) == counted  # the port only places it
    # launch_args' placement flags (machines, addresses, ports) drop out as the config file's do
    assert outcome("trainers", "trl-sft", {"launcher": "accelerate", "launch_args": "--main_process_ip 10.0.0.1 "
                                           "--num-machines=2 --same_network --machine_rank 1 --mixed_precision bf16 "
                                           "--num_processes 4"})["launch_args"] == ["--mixed_precision", "bf16"]
    # the launcher only places the work, but accelerate's default configuration (FSDP, DeepSpeed, precision) counts
    assert outcome("trainers", "trl-sft", {"launcher": "inprocess"}) == outcome(
        "trainers", "trl-sft", {"launcher": "accelerate", "num_processes": 1})
    default = tmp_path / "default_config.yaml"
    default.write_text("distributed_type: FSDP\nnum_processes: 1\n")
    monkeypatch.setattr(trl_trainer, "_default_accelerate_config", lambda: str(default))
    assert outcome("trainers", "trl-sft", {"launcher": "accelerate"}) == {
        "accelerate_config": {"distributed_type": "FSDP"}, batch: 8}
    assert outcome("trainers", "trl-sft", {"launcher": "inprocess"}) == {batch: 8 * here}
    # samplers: where and how fast, not what (the dtype, the seed, vLLM's context length count)
    assert outcome("samplers", "hf", {"batch_size": 8, "device": "cuda:1", "engine": "generate",
                                      "dtype": "float32"}) == {"dtype": "float32"}
    assert outcome("samplers", "vllm", {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.5, "seed": 1,
                                        "max_model_len": 4096}) == {"seed": 1, "max_model_len": 4096}
    assert outcome("samplers", "openai", {"concurrency": 2, "timeout": 9, "served_model": "m"}) == {
        "served_model": "m"}
    assert outcome("samplers", "ray", {"workers": 16, "gpus_per_worker": 1, "batch_size": 64, "dtype": "float32",
                                       "backend": "hf"}) == {"backend": "hf", "dtype": "float32"}
    assert outcome("tasks", "arithmetic", {"digits": "1-3"}) == {"digits": "1-3"}  # no placement: all count

    # a third party's declaration, on a function factory; a wrong one is named
    def factory(model, batch_size=1, temperature_scale=1.0):
        raise AssertionError("not built")

    factory.outcome_options = placement_options("batch_size")
    registry._register("samplers", "placed", factory, "test", "test-dist")
    assert outcome("samplers", "placed", {"batch_size": 3, "temperature_scale": 2.0}) == {"temperature_scale": 2.0}
    factory.outcome_options = lambda registry, options: None
    with pytest.raises(StarKitError, match=r"sampler 'placed' \(plugin 'test', distribution 'test-dist'\): "
                                           r"outcome_options returned NoneType, not a dict of options"):
        outcome("samplers", "placed", {})


def test_a_run_trained_on_two_processes_resumes_on_one_with_the_same_global_batch(tiny_model, tmp_path, plugin_env):
    """The allocation shrank between a run and its resume: iteration 1 trained on 2 accelerate processes x batch 2,
    iteration 2 trains on 1 process x batch 2 x accumulation 2 (the same global batch, a note says so); 1 process
    without the accumulation is refused before anything runs, naming the global batch."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out", str(out), "--no-progress",
           "--task", "lenient-arithmetic", "--iterations", "1", "--train-size", "8", "--eval-size", "4",
           "--base-steps", "2", "--trainer-opt", "launcher=accelerate", "--trainer-opt", "num_processes=2",
           "--trainer-opt", "per_device_train_batch_size=2", "--sampler-opt", "batch_size=4"]
    first = subprocess.run(cmd, env=plugin_env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "effective batch 4" in first.stderr
    resume = [sys.executable, "-m", "star_kit.cli", "run", "--resume", str(out), "--no-progress", "--iterations", "2",
              "--trainer-opt", "num_processes=1"]
    refused = subprocess.run(resume, env=plugin_env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert "trainer_options num_processes 2 -> 1 changes the global batch" in " ".join(refused.stderr.split())
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]  # nothing ran
    done = subprocess.run([*resume, "--trainer-opt", "gradient_accumulation_steps=2"], env=plugin_env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    said = " ".join(done.stderr.split())
    assert "trainer_options changed (num_processes 2 -> 1, gradient_accumulation_steps 1 -> 2)" in said, said
    assert "1 training process" in said and "effective batch 4" in said, said
    assert [r["iteration"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]
    assert (out / "iter_02" / "checkpoint" / "config.json").is_file()


def test_an_accelerate_config_that_starts_fewer_processes_than_it_names_stops_the_fine_tune(tiny_model, tmp_path,
                                                                                            plugin_env):
    """A MULTI_CPU accelerate config with num_processes 2 on one machine: accelerate starts one process (its CPU
    processes run through mpirun only), while star-kit counted 2 for the global batch it records. The fine-tune
    stops before training, naming both counts and what to do."""
    config = tmp_path / "cpu2.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_CPU\nnum_machines: 1\n"
                      "num_processes: 2\nmixed_precision: 'no'\nuse_cpu: true\n")
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "star_kit.cli", "run", "--model", tiny_model, "--out", str(out),
                           "--no-progress", "--task", "lenient-arithmetic", "--iterations", "1", "--train-size", "8",
                           "--eval-size", "4", "--base-steps", "2", "--no-baseline", "--trainer-opt",
                           "launcher=accelerate", "--trainer-opt", f"accelerate_config={config}"],
                          env=plugin_env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    err = " ".join(done.stderr.split())
    assert "accelerate started 1 training process where 2 were asked (accelerate starts a MULTI_CPU config's " \
           "processes through mpirun only" in err, done.stderr[-3000:]
    assert not (out / "iter_01" / "checkpoint").exists()
