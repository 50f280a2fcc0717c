"""Security: credentials never reach a run directory, a report or a logger; a run directory is data (resuming or
benching it never runs the commands or imports the modules it names); ``{model}`` reaches a shell as data.

This module is also a star-kit plugin (``--plugin test_security``): a ``canned`` sampler that answers at once and
records the options it was built with, and a ``no-train`` trainer, so whole runs take seconds and load no model.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
import yaml

import star_kit
from star_kit.cli import main
from star_kit.config import (REDACTED, RunConfig, is_command_key, is_environment_key, is_secret_key, redact,
                             redact_argv)
from star_kit.errors import StarKitError

SECRET = "sk-SECRET-4f1e9c"
SEEN: list[dict] = []  # the options each canned sampler was built with


class CannedSampler:
    def __init__(self, model, **options):
        self.model = model
        SEEN.append(dict(options))

    def generate(self, prompts, params, advance=None):
        if advance is not None:
            advance(len(prompts))
        return [[" 1 + 1 = 2. The answer is 2."] * params.n for _ in prompts]

    def load(self, model):
        self.model = model

    def close(self):
        pass


class NoTrainer:
    def __init__(self, **options):
        pass

    def train(self, *args, **kwargs):
        raise AssertionError("no training in these tests")


@star_kit.hookimpl
def register_samplers(register):
    register("canned", CannedSampler)


@star_kit.hookimpl
def register_trainers(register):
    register("no-train", NoTrainer)


@pytest.fixture()
def fake_model(tmp_path):
    """A folder the model resolver accepts (config.json); the canned sampler never reads it."""
    path = tmp_path / "model"
    path.mkdir()
    (path / "config.json").write_text("{}")
    return str(path)


def _run(out, model, *extra):
    return main(["run", "--plugin", "test_security", "--sampler", "canned", "--trainer", "no-train",
                 "--model", model, "--out", str(out), "--iterations", "0", "--eval-size", "4", "--train-size", "4",
                 "--no-progress", *extra])


def _files_holding(root: Path, needle: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and needle.encode() in p.read_bytes())


# -- secrets -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["api_key", "OPENAI_API_KEY", "apiKey", "hf_token", "access_token", "token",
                                  "password", "client_secret", "Authorization", "auth_header", "credentials_file",
                                  # written without separators, numbered, plural, a qualifier or a service before key
                                  "apitoken", "authtoken", "accesstoken", "HFToken", "password1", "clientsecret",
                                  "privatekey", "OpenAIKey", "subscription_key", "Ocp-Apim-Subscription-Key",
                                  "api_keys", "apiKeys", "signing_key", "X-Amz-Signature", "key", "sig", "pw", "pass",
                                  "passcode", "wandbkey"])
def test_credential_option_names_are_recognised(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["pad_token", "eos_token_id", "max_tokens", "max_new_tokens", "tokenizer",
                                  "author", "base_url", "batch_size", "served_model", "reload_command", "sort_key",
                                  "keyword", "monkey", "passes", "bypass", "compass", "suppress_tokens",
                                  "long_prefill_token_threshold", "include_num_input_tokens_seen", "tiktoken",
                                  "use_tiktoken", "session_id", "keys", "highkey"])
def test_ordinary_option_names_are_not_credentials(name):
    assert not is_secret_key(name)


def test_no_option_of_trl_or_a_run_is_taken_for_a_credential_but_the_hubs_token():
    """A name taken for a credential is never written and must be given again on --resume: SFTConfig's fields
    and a run's keys, which config.yaml records, are not, except hub_token."""
    import dataclasses

    from trl import SFTConfig

    names = [f.name for f in dataclasses.fields(SFTConfig)] + list(RunConfig.keys())
    assert [n for n in names if is_secret_key(n)] == ["hub_token"]


@pytest.mark.parametrize("text, expected", [
    ("curl -u admin:pw1 http://h/reload", "curl -u <redacted> http://h/reload"),
    ("curl --user admin:pw1 http://h/reload", "curl --user <redacted> http://h/reload"),
    ("http://h/reload?key=k1&sig=s1&X-Amz-Signature=a1&n=3",
     "http://h/reload?key=<redacted>&sig=<redacted>&X-Amz-Signature=<redacted>&n=3"),
    ("admin:pw1@host:8000/v1", "<redacted>@host:8000/v1"),  # no scheme
    ("https://user:pw/1@host/v1", "https://<redacted>@host/v1"),  # an unencoded '/' in the password
    ("https://ghp_tok@github.com/o/r", "https://<redacted>@github.com/o/r"),  # a token as the user
    ('{\\"api_key\\": \\"sk-1\\"}', '{\\"api_key\\": \\"<redacted>\\"}'),  # escaped quotes
    ("export K=sk-proj-Ab3dEfGhIjKlMnOpQrStUvWxYz012345; serve", "export K=<redacted>; serve"),  # by its shape
    ("--hub hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "--hub <redacted>"),
    ("me@example.org git@github.com:o/r https://host/@scope/pkg", None),  # not credentials: kept
    ("http://localhost:8000/@fs/x https://x.com/search?q=from:@user mailto:john@example.com 12:30@home", None),
    ("Answer key: 42. The key: to success. Signature: John. Pass: yes. note: sig=3", None),  # prose
    ("python -u serve.py; git push -u origin main; docker run --user 1000:1000 img", None),  # not curl's -u
    ("/models/sk-llama-finetune-v2-2024-and-some-more-words run_name=sk-learn-is-a-great-library", None),
    (["--key", "Answer"], None),  # (a list is redacted element by element: '--key' alone names no value)
])
def test_credentials_in_more_forms_inside_a_value_are_redacted(text, expected):
    from star_kit.config import redact_text

    if isinstance(text, list):
        assert redact(text) == text
        return
    assert redact_text(text) == (expected or text)
    assert redact_text(redact_text(text)) == redact_text(text)


def test_redact_reaches_nested_options_and_keeps_empty_values():
    cfg = RunConfig(sampler_options={"api_key": SECRET, "headers": {"Authorization": "Bearer x"}, "token": None,
                                     "batch_size": 4},
                    trainer_options={"hub_token": SECRET}, task_options={"password": ""})
    public = cfg.public_dict()
    assert public["sampler_options"] == {"api_key": REDACTED, "headers": {"Authorization": REDACTED},
                                         "token": None, "batch_size": 4}
    assert public["trainer_options"] == {"hub_token": REDACTED} and public["task_options"] == {"password": ""}
    assert cfg.sampler_options["api_key"] == SECRET  # the run itself still has it
    assert SECRET not in json.dumps(cfg.public().to_dict())
    assert redact([{"api_key": SECRET}]) == [{"api_key": REDACTED}]


def test_a_urls_user_and_password_are_redacted_and_not_compared_on_resume():
    """A base_url with credentials in it ('https://user:tok@host/v1') is written without them; the resume
    comparison does not count the redaction as a change. Linear in the text."""
    from star_kit.config import without_secrets

    cfg = RunConfig(sampler_options={"base_url": f"https://user:{SECRET}@host:8000/v1", "who": "me@example.org"})
    public = cfg.public_dict()["sampler_options"]
    assert public == {"base_url": f"https://{REDACTED}@host:8000/v1", "who": "me@example.org"}
    assert without_secrets(public) == without_secrets(cfg.sampler_options)
    assert redact_argv(["--sampler-opt", f"base_url=http://u:{SECRET}@h/v1"]) == [
        "--sampler-opt", f"base_url=http://{REDACTED}@h/v1"]
    assert redact(f"https://user:p@ss{SECRET}@host/v1") == f"https://{REDACTED}@host/v1"  # '@' in the password
    t0 = time.perf_counter()
    redact(["a://" * 100_000 + "@", "a." * 100_000 + "@"])
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("argv, expected", [
    (["--trainer-opt", "hub_token=hf_x"], ["--trainer-opt", "hub_token=<redacted>"]),
    (["--sampler-opt=openai.api_key=sk=with=equals"], ["--sampler-opt=openai.api_key=<redacted>"]),
    (["--api-key", "sk", "--seed", "3"], ["--api-key", "<redacted>", "--seed", "3"]),
    (["--sampler-opt", "max_tokens=8", "--task-opt", "digits=1-2", "--out", "token-run"],
     ["--sampler-opt", "max_tokens=8", "--task-opt", "digits=1-2", "--out", "token-run"]),  # not credentials
    (["--trainer-opt", "hub_token="], ["--trainer-opt", "hub_token=<redacted>"]),
])
def test_redact_argv_hides_the_values_of_credential_options(argv, expected):
    assert redact_argv(argv) == expected


def test_print_config_redacts_credentials(capsys):
    assert main(["run", "--sampler", "openai", "--sampler-opt", f"api_key={SECRET}", "--trainer-opt",
                 f"hub_token={SECRET}", "--print-config"]) == 0  # --print-config checks: a sampler that takes a key
    out = capsys.readouterr().out
    assert SECRET not in out
    assert yaml.safe_load(out)["sampler_options"] == {"api_key": REDACTED}


def test_a_credential_never_reaches_the_run_directory_report_or_loggers(tmp_path, fake_model, capsys):
    """``--sampler-opt api_key=...``: not in config.yaml, report.html, the TensorBoard events or anything else in
    the run directory; on resume the redacted key is no difference and the sampler gets the key from the flag
    again (or, without it, no placeholder: the openai sampler then reads $OPENAI_API_KEY)."""
    out = tmp_path / "run"
    SEEN.clear()
    assert _run(out, fake_model, "--sampler-opt", f"api_key={SECRET}", "--sampler-opt", "batch_size=4") == 0
    assert SEEN[-1]["api_key"] == SECRET  # the sampler got it
    assert (out / "report.html").is_file() and (out / "metrics.jsonl").is_file()
    assert list((out / "tensorboard").iterdir()), "the TensorBoard logger wrote its events"
    assert _files_holding(out, SECRET) == []
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["sampler_options"] == {"api_key": REDACTED, "batch_size": 4}
    assert SECRET not in capsys.readouterr().out

    # Resume with the key again (a new one, even): accepted, and the sampler gets the flag's value.
    assert main(["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--no-progress",
                 "--sampler-opt", "api_key=sk-NEW"]) == 0, capsys.readouterr().err
    assert SEEN[-1] == {"api_key": "sk-NEW", "batch_size": 4}
    # Resume without it: never the placeholder.
    assert main(["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned",
                 "--no-progress"]) == 0
    assert SEEN[-1] == {"batch_size": 4}
    assert _files_holding(out, "sk-NEW") == [] and _files_holding(out, SECRET) == []


def test_the_real_wandb_logger_leaves_a_run_that_resumes_and_reports_without_credentials(tmp_path, fake_model,
                                                                                          monkeypatch, capsys):
    """W&B (offline) writes its own files, with links, into RUN/wandb: the run still resumes and reports (a run
    directory's links are refused everywhere else), and neither a credential option nor the environment's keys
    reach any file there."""
    import importlib.util
    import os

    if importlib.util.find_spec("wandb") is None:
        if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
            pytest.fail("CI=true and wandb is missing: scripts/setup.sh installs the 'wandb' extra")
        pytest.skip("wandb is not installed (pip install 'star-kit[wandb]')")
    from star_kit_plugins import wandb_logger

    env_secret = "hf_EnvSecretAbCdEfGhIjKlMnOpQrStUv12"
    for name, value in {"WANDB_PROJECT": "star-kit-test", "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                        "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567", "HF_TOKEN": env_secret,
                        "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(tmp_path / "config"),
                        "WANDB_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setattr(wandb_logger, "_state", {"run": None, "dir": None, "defined": set()})
    out = tmp_path / "run"
    try:
        assert _run(out, fake_model, "--sampler-opt", f"api_key={SECRET}") == 0, capsys.readouterr().err
        assert _run(out, fake_model, "--resume", str(out), "--sampler-opt", f"api_key={SECRET}") == 0, \
            capsys.readouterr().err
    finally:
        if wandb_logger._state["run"] is not None:
            wandb_logger._state["run"].finish()
    runs = sorted((out / "wandb").glob("offline-run-*"))
    assert runs and any(p.is_symlink() for p in (out / "wandb").rglob("*")), "W&B wrote its files and links"
    assert main(["report", str(out)]) == 0 and (out / "report.html").is_file()
    for needle in (SECRET, env_secret, "0123456789abcdef0123456789abcdef01234567"):
        assert _files_holding(out, needle) == [], needle
    recorded = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    assert b"api_key" in recorded and b"<redacted>" in recorded  # the run's config, as W&B keeps it
    # the exemption is W&B's folder itself, not a link named like it
    (out / "wandb").rename(tmp_path / "elsewhere")
    (out / "wandb").symlink_to(tmp_path / "elsewhere")
    assert main(["report", str(out)]) == 2
    assert "wandb is a symbolic link" in capsys.readouterr().err


def test_report_of_an_older_run_hides_its_plaintext_credentials(tmp_path):
    from star_kit.report import write_report
    from star_kit.store import write_jsonl, write_yaml

    write_yaml(tmp_path / "config.yaml", RunConfig(sampler_options={"api_key": SECRET}).to_dict())  # pre-fix run
    write_jsonl(tmp_path / "metrics.jsonl", [{"iteration": 0, "accuracy": 0.5, "eval_examples": 4}])
    html_path, _ = write_report(tmp_path)
    text = html_path.read_text()
    assert SECRET not in text and "&lt;redacted&gt;" in text  # the config table, HTML-escaped


def test_loggers_keep_no_credentials(tmp_path, monkeypatch, capsys):
    from star_kit.records import IterationResult
    from star_kit_plugins import tensorboard_logger, wandb_logger

    config = RunConfig(sampler_options={"api_key": SECRET})
    result = IterationResult(iteration=0, accuracy=0.5, eval_examples=4)
    monkeypatch.setattr(tensorboard_logger, "_config_logged", set())
    tensorboard_logger.star_kit_iteration_end(iteration=0, result=result, config=config, run_dir=tmp_path)
    events = list((tmp_path / "tensorboard").iterdir())
    assert events and _files_holding(tmp_path, SECRET) == []

    inits = []

    class FakeWandb:
        def init(self, **kwargs):
            inits.append(kwargs)
            return type("Run", (), {"log": lambda self, data: None, "define_metric": lambda self, *a, **k: None,
                                    "finish": lambda self: None})()

    monkeypatch.setitem(sys.modules, "wandb", FakeWandb())
    monkeypatch.setattr(wandb_logger, "_state", {"run": None, "dir": None, "defined": set()})
    monkeypatch.setenv("WANDB_PROJECT", "star-tests")
    wandb_logger.star_kit_iteration_end(iteration=0, result=result, config=config, run_dir=tmp_path)
    assert "could not log to W&B" not in capsys.readouterr().err
    assert inits and inits[0]["config"]["sampler_options"] == {"api_key": REDACTED}


# -- a run directory is data -----------------------------------------------------------------------------------
def _crafted_run(tmp_path, fake_model, **keys) -> Path:
    run = tmp_path / "crafted"
    run.mkdir()
    config = RunConfig(model=fake_model, out=str(run), iterations=0, eval_size=4, train_size=4).to_dict()
    config.update(keys)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def test_resume_does_not_run_the_command_a_run_directory_names(tmp_path, fake_model, capsys, monkeypatch):
    pwned = tmp_path / "PWNED"
    monkeypatch.chdir(tmp_path)
    run = _crafted_run(tmp_path, fake_model, sampler="openai", sampler_options={
        "reload_command": f"touch {pwned}", "reload_timeout": 1})
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not pwned.exists()
    assert "config.yaml names sampler 'openai' (it sends the prompts out of this process) and sampler option " \
           "reload_command; a run directory is data" in err
    assert "--sampler openai / --sampler-opt reload_command=... again" in err and len(err.strip().splitlines()) == 1
    # Passed again on the command line, it is the user's command: accepted (shown here, not run).
    assert main(["run", "--resume", str(run), "--print-config", "--sampler", "openai",
                 "--sampler-opt", f"reload_command=touch {pwned}"]) == 0
    assert f"reload_command: touch {pwned}" in capsys.readouterr().out
    assert is_command_key("reload_command") and is_command_key("start_cmd") and not is_command_key("commands_seen")


def test_resume_takes_commands_and_addresses_as_given_now(tmp_path, fake_model, capsys):
    """A server's restart script or address is the user's environment, not a result-changing key: on --resume it
    may be added (a run started without reload_command) or changed, and config.yaml records it as given now."""
    out = tmp_path / "run"
    assert _run(out, fake_model, "--sampler-opt", "base_url=http://127.0.0.1:8001/v1") == 0
    assert main(["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--no-progress",
                 "--iterations", "0", "--sampler-opt", "base_url=http://127.0.0.1:8002/v1",
                 "--sampler-opt", "reload_command=echo restart {model}"]) == 0, capsys.readouterr().err
    saved = yaml.safe_load((out / "config.yaml").read_text())["sampler_options"]
    assert saved == {"base_url": "http://127.0.0.1:8002/v1", "reload_command": "echo restart {model}"}
    # a key that changes results is still refused by name, a command-like one (launch_args) too
    assert main(["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--no-progress",
                 "--sampler-opt", "base_url=http://127.0.0.1:8002/v1", "--sampler-opt", "reload_command=x",
                 "--sampler-opt", "launch_args=--num_processes 4"]) == 2
    assert "config key 'sampler_options.launch_args' differs (unset in config.yaml, '--num_processes 4' now)" in \
        " ".join(capsys.readouterr().err.split())
    assert is_environment_key("reload_command") and is_environment_key("base_url")
    assert not is_environment_key("launch_args") and not is_environment_key("accelerate_config")
    assert main(["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--no-progress",
                 "--sampler-opt", "base_url=http://127.0.0.1:8002/v1", "--sampler-opt", "reload_command=x",
                 "--sampler-opt", "temperature_scale=2"]) == 2
    assert "config key 'sampler_options.temperature_scale' differs (unset in config.yaml, 2 now)" in \
        " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("kind,options,flag", [
    ("trainer", {"launcher": "accelerate",
                 "launch_args": ["--no_python", "/bin/sh", "-c", "touch PWNED; exit 3"]}, "--trainer-opt launch_args"),
    ("trainer", {"launcher": "accelerate", "accelerate_config": "evil.yaml"}, "--trainer-opt accelerate_config"),
    ("sampler", {"address": "ray://203.0.113.9:10001"}, "--sampler-opt address"),
    ("sampler", {"base_url": "http://203.0.113.9/v1"}, "--sampler-opt base_url"),  # every prompt, and the key
    ("trainer", {"push_to_hub": True, "hub_model_id": "someone/else"}, "--trainer-opt push_to_hub"),
    ("trainer", {"trust_remote_code": True}, "--trainer-opt trust_remote_code"),  # an SFTConfig field
    ("trainer", {"deepspeed": {"wandb": {"enabled": True}}}, "--trainer-opt deepspeed"),  # its monitors
])
def test_resume_does_not_take_what_runs_or_where_from_a_run_directory(tmp_path, fake_model, capsys, monkeypatch,
                                                                      kind, options, flag):
    """accelerate's launch arguments can name any program; its config file, the machines; a Ray address, a cluster
    whose replies the driver unpickles: like a *_command, each is used only when the command line names it again."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "evil.yaml").write_text("compute_environment: LOCAL_MACHINE\n")
    extra = {"sampler": "openai" if "base_url" in options else "ray"} if kind == "sampler" else {}
    run = _crafted_run(tmp_path, fake_model, **extra, **{f"{kind}_options": options})
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()
    name = flag.split()[1]
    assert f"{kind} option {name}" in err and "config.yaml names" in err and "a run directory is data" in err
    assert f"{flag}=..." in err and len(err.strip().splitlines()) == 1
    assert is_command_key(name)


@pytest.mark.parametrize("sampler", ["openai", "ray"])
def test_a_run_directory_does_not_choose_a_sampler_that_sends_the_prompts_out(tmp_path, fake_model, capsys, sampler):
    """A run directory naming ``sampler: openai`` and no base_url would send every prompt, with $OPENAI_API_KEY,
    to $OPENAI_BASE_URL or a local port anyone may listen on (``ray``: start a cluster or join $RAY_ADDRESS): on
    --resume and bench --run such a sampler is used only when the command line names it again."""
    run = _crafted_run(tmp_path, fake_model, sampler=sampler)
    for command in (["run", "--resume", str(run), "--no-progress"], ["bench", "--run", str(run), "--no-progress"]):
        assert main(command) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"config.yaml names sampler {sampler!r} (it sends the prompts out of this process); a run " \
               f"directory is data, pass --sampler {sampler} again to run it" in err, err
    assert main(["run", "--resume", str(run), "--print-config", "--sampler", sampler]) == 0
    assert f"sampler: {sampler}" in capsys.readouterr().out
    for local in ("auto", "hf", "vllm", "canned"):  # decoders in this process: taken from config.yaml
        (run / "config.yaml").write_text((run / "config.yaml").read_text().replace(f"sampler: {sampler}",
                                                                                  f"sampler: {local}"))
        sampler = local
        plugin = ["--plugin", "test_security"] if local == "canned" else []
        assert main(["run", "--resume", str(run), "--print-config", *plugin]) == 0, capsys.readouterr().err
        assert f"sampler: {local}" in capsys.readouterr().out


def test_an_empty_value_of_such_an_option_is_nothing_to_refuse(tmp_path, fake_model, capsys):
    run = _crafted_run(tmp_path, fake_model, trainer_options={"launch_args": [], "push_to_hub": False,
                                                              "accelerate_config": None})
    assert main(["run", "--resume", str(run), "--print-config"]) == 0


@pytest.fixture()
def evil_module(tmp_path, monkeypatch):
    """A module that leaves a mark when imported."""
    mark = tmp_path / "IMPORTED"
    (tmp_path / "evil_plugin_sec.py").write_text(f"open({str(mark)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "evil_plugin_sec", raising=False)
    return mark


def test_resume_does_not_import_the_plugins_a_run_directory_names(tmp_path, fake_model, capsys, evil_module):
    run = _crafted_run(tmp_path, fake_model, plugins=["evil_plugin_sec"])
    assert main(["run", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not evil_module.exists()
    assert "config.yaml names plugins ['evil_plugin_sec']; a run directory is data, pass --plugin evil_plugin_sec" \
           in err


def test_bench_of_a_run_directory_does_not_import_its_plugins(tmp_path, fake_model, capsys, evil_module):
    run = _crafted_run(tmp_path, fake_model, plugins=["evil_plugin_sec"],
                       sampler_options={"reload_command": "touch x"})
    assert main(["bench", "--run", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert not evil_module.exists()
    assert f"--run {run}: config.yaml names plugins ['evil_plugin_sec'] and sampler option reload_command" in err


def test_reload_command_gets_the_model_path_as_data(tmp_path, monkeypatch):
    """``{model}`` is shell-quoted: a checkpoint path like ``m$(touch PWNED)`` reaches the command as text."""
    from star_kit_plugins.openai_sampler import OpenAISampler

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(OpenAISampler, "_lists", lambda self, served: False)
    monkeypatch.setattr(OpenAISampler, "_wait_for", lambda self, served, timeout: None)
    got = tmp_path / "got"
    sampler = OpenAISampler("base", base_url="http://127.0.0.1:9/v1",
                            reload_command=f"printf '%s|%s' {{model}} {{served_model}} > {got}")
    for model in ("m$(touch PWNED)", "m`touch PWNED`; touch PWNED", "m' ; touch PWNED; '"):
        sampler.load(model)
        assert got.read_text() == f"{model}|{model}"
    assert not (tmp_path / "PWNED").exists()


def test_the_lock_file_is_never_written_through_a_link_or_into_a_fifo(tmp_path, fake_model, capsys):
    """A planted ``.lock`` (a link to a user's file, a FIFO) is refused before anything is written: the lock was
    truncated and overwritten through the link even when the resume was then refused."""
    import os

    victim = tmp_path / "victim.txt"
    victim.write_text("IMPORTANT USER DATA\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    assert _run(out, fake_model) == 2
    err = capsys.readouterr().err
    assert f"{out / '.lock'}: it is a symbolic link" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "IMPORTANT USER DATA\n"
    (out / ".lock").unlink()
    os.mkfifo(out / ".lock")
    assert _run(out, fake_model) == 2
    assert "is not a regular file" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["link to a folder", "link to a file", "fifo"])
def test_resume_report_and_bench_refuse_a_run_directory_holding_links_or_fifos(tmp_path, fake_model, capsys, kind):
    """Through a link a resume would delete (a checkpoint folder published over) or append to (a worker log)
    files elsewhere, and the report would embed them; a FIFO would block a read for ever. Refused in one line."""
    import os

    out = tmp_path / "run"
    assert _run(out, fake_model) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("keep me")
    entry = out / "iter_01" if kind == "link to a folder" else out / "iter_00" / "eval_samples.jsonl"
    if kind == "link to a folder":
        entry.symlink_to(elsewhere, target_is_directory=True)
    else:
        entry.unlink()
        entry.symlink_to(elsewhere / "precious.txt") if kind == "link to a file" else os.mkfifo(entry)
    capsys.readouterr()
    for argv in (["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--no-progress",
                  "--iterations", "1"],
                 ["run", "--resume", str(out), "--plugin", "test_security", "--sampler", "canned", "--print-config"],
                 ["report", str(out)],
                 ["bench", "--run", str(out), "--plugin", "test_security", "--sampler", "canned"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{entry} is " in err and "a run directory holds only the files and folders star-kit writes" in err
        assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]
    assert (elsewhere / "precious.txt").read_text() == "keep me"


def test_a_checkpoint_path_recorded_in_metrics_is_never_loaded_from_elsewhere(tmp_path):
    """metrics.jsonl names checkpoints; whatever path a row holds, the run reads its own iter_NN/checkpoint (a
    crafted row pointed a resume at a folder elsewhere, whose custom code transformers offered to run)."""
    from star_kit.store import RunStore, write_jsonl

    write_jsonl(tmp_path / "metrics.jsonl", [{"iteration": 0, "accuracy": 0.1, "checkpoint": None},
                                             {"iteration": 1, "accuracy": 0.2, "checkpoint": "/elsewhere/evil"},
                                             {"iteration": "1", "accuracy": 0.2, "checkpoint": "/elsewhere/evil"}])
    rows = RunStore(tmp_path).metrics()
    assert [r["checkpoint"] for r in rows] == [None, str(tmp_path / "iter_01" / "checkpoint"), None]
    (tmp_path / "iter_0\u00b2").mkdir()  # '²'.isdigit() is true: not an iteration folder
    (tmp_path / "iter_01").mkdir()
    assert RunStore(tmp_path).iterations() == [1]


def test_a_checkpoint_with_custom_code_is_never_run(tmp_path, smollm2, monkeypatch):
    """A model folder whose config names its own Python (``auto_map``) is refused, never imported: star-kit loads
    every model with trust_remote_code=False (transformers would otherwise ask on the terminal, and one 'y' ran
    it: here every question is answered 'y')."""
    import builtins
    import shutil

    from star_kit_plugins.hf_sampler import HFSampler

    asked = []
    monkeypatch.setattr(builtins, "input", lambda *a: asked.append(a) or "y")
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    for name in Path(smollm2).iterdir():  # a real tokenizer: the model's own config is what gets read
        if name.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(name, folder / name.name)
    marker = tmp_path / "PWNED"
    (folder / "config.json").write_text(json.dumps({"model_type": "evilcfg", "auto_map": {
        "AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}}))
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (folder / "model.safetensors").write_bytes(b"")  # weights are there to be read: the config is refused first
    with pytest.raises(Exception, match="custom code"):
        HFSampler(str(folder), device="cpu")
    assert not marker.exists() and not asked


def test_report_and_resume_of_an_edited_metrics_file_show_what_they_can(tmp_path, fake_model, capsys):
    """Values of the wrong type, TeX '$' in names, a YAML date, escape sequences and rich markup in a run's files:
    the report is written and its table printed, each bad value named once, nothing driving the terminal."""
    out = tmp_path / "r_$\\frac$"
    assert _run(out, fake_model) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rows[0].update(accuracy="0.5", kept=None, seconds={"evaluate": "fast", "$\\frac$": 1.0},
                   eval_labels={"[link=https://evil.example]click[/link]": 1, "\x1b]0;TITLE\x07\x1b[41mRED": 2})
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = (out / "config.yaml").read_text().replace(f"model: {fake_model}", "model: cost$\\frac{1$")
    (out / "config.yaml").write_text(config + "since: 2024-01-01\n")
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out and "\x07" not in captured.out
    assert "[link=https://evil.example]click[/link]" in captured.out  # shown as written, not as a hyperlink
    assert "accuracy holds '0.5', not a number or null; left out" in captured.err and "Traceback" not in captured.err
    assert (out / "report.html").is_file() and (out / "accuracy.png").is_file()


@pytest.mark.parametrize("text, expected", [
    ("http://bob:pw@h:9/v1?api_key=QS&x=1", f"http://{REDACTED}@h:9/v1?api_key={REDACTED}&x=1"),
    ("curl -H 'Authorization: Bearer CS' http://x", f"curl -H 'Authorization: {REDACTED}' http://x"),
    ("curl -H 'X-Api-Key: sk-1' -H 'authorization: basic dXNlcjpw'",
     f"curl -H 'X-Api-Key: {REDACTED}' -H 'authorization: {REDACTED}'"),
    # a command's flags (a reload_command starting a server with its key) and a dict or JSON a server prints
    ("vllm serve {model} --api-key sk-1 --port 8000", f"vllm serve {{model}} --api-key {REDACTED} --port 8000"),
    ("vllm serve m --hf-token=hf_2 -v", f"vllm serve m --hf-token={REDACTED} -v"),
    ("serve --api-key 'sk 3' --port 1", f"serve --api-key '{REDACTED}' --port 1"),
    ("args: {'api_key': ['sk-4'], 'port': 8000}", f"args: {{'api_key': ['{REDACTED}'], 'port': 8000}}"),
    ("args: {'api_key': ['sk-4', 'sk-6'], 'x': ('a',)}", f"args: {{'api_key': ['{REDACTED}'], 'x': ('a',)}}"),
    ("{'hf_token': ('hf_7',)}", f"{{'hf_token': ('{REDACTED}')}}"),
    ("serve m --api-key \\\n  sk-8 --port 1", f"serve m --api-key \\\n  {REDACTED} --port 1"),
    ('{"hf_token": "hf_5", "seed": 0}', f'{{"hf_token": "{REDACTED}", "seed": 0}}'),
    ("serve --api-key --port 1 --token-budget 9 --max-tokens 5", None),  # a flag without a value; not secrets
    ("Solve this basic sum; Bearer of news: none", None),  # ordinary words: a resume reads options back
    ("vllm serve m --max-num-batched-tokens=4096 --port 8000", None),  # nothing secret: unchanged
    ("max_tokens=5, eos_token_id: 3, sort_key=x", None),
])
def test_credentials_written_inside_a_value_are_redacted(text, expected):
    """A secret inside an option's value (a URL's query, a header in a reload_command) reaches config.yaml,
    eval.json and the report as redacted as a credential-named option; redacting again changes nothing, so the
    resume comparison does not count it."""
    from star_kit.config import redact_text, without_secrets

    assert redact_text(text) == (expected or text)
    assert redact_text(redact_text(text)) == redact_text(text)
    public = RunConfig(sampler_options={"base_url": text}).public_dict()["sampler_options"]["base_url"]
    assert public == (expected or text) and without_secrets(public) == without_secrets(text)
    for name in ("openai_key", "hf_key", "github_pat", "pwd", "sentry_dsn"):
        assert is_secret_key(name), name
    t0 = time.perf_counter()
    redact_text("a=b:c=d" * 30_000 + "x: " * 30_000 + "a." * 100_000 + "--a " * 30_000 + "-" * 100_000
                + "--api-key '" * 30_000 + "'x': " * 30_000 + "--api-key [" * 30_000 + "api_key=('" * 30_000)
    assert time.perf_counter() - t0 < 2.0


def test_openai_sampler_sends_a_urls_user_and_password_as_basic_auth_and_never_shows_them(capsys):
    """'http://user:pw@host/v1': urllib does not send a URL's userinfo, so it is sent as Basic auth; a failure's
    message names the server without it (it reached the terminal and job logs)."""
    import base64
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            body = json.dumps({"data": [{"id": "m"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from star_kit.registry import load_registry

        port = server.server_address[1]
        load_registry().create("samplers", "openai", "m", base_url=f"http://bob:{SECRET}@127.0.0.1:{port}/v1")
        assert seen == ["Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()]
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(StarKitError) as failed:
        load_registry().create("samplers", "openai", "m", max_retries=0,
                               base_url=f"http://bob:{SECRET}@127.0.0.1:1/v1?api_key={SECRET}")
    assert SECRET not in str(failed.value) and "127.0.0.1:1/v1" in str(failed.value)


def test_a_missing_checkpoint_folder_is_never_read_as_a_hub_id(tmp_path, fake_model, capsys, monkeypatch):
    """metrics.jsonl records iteration 1's checkpoint, its folder is gone, the run is resumed from inside its
    directory (``--resume .``): ``iter_01/checkpoint`` is a valid hub id, and the sampler would have asked the hub
    for it with $HF_TOKEN. The row's path is this directory's, absolute, and the missing folder stops the resume."""
    run = _crafted_run(tmp_path, fake_model, iterations=2, sampler="hf")
    (run / "metrics.jsonl").write_text('{"iteration": 0, "accuracy": 0.25, "eval_examples": 4}\n'
                                       '{"iteration": 1, "accuracy": 0.5, "steps": 40, "eval_examples": 4, '
                                       '"checkpoint": "iter_01/checkpoint"}\n')
    monkeypatch.chdir(run)
    from star_kit.store import RunStore

    assert RunStore(Path(".")).metrics()[1]["checkpoint"] == str(run / "iter_01" / "checkpoint")
    assert main(["run", "--resume", ".", "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"metrics.jsonl records iteration 1's checkpoint, but {run / 'iter_01' / 'checkpoint'} holds no model" \
           in err, err


def test_a_config_file_a_run_directory_names_is_read_only_if_it_is_a_small_regular_file(tmp_path):
    """An accelerate config path in a foreign config.yaml is read on --resume to compare what it decides: a FIFO
    would block for ever, /dev/zero fill the memory."""
    import os
    import signal

    from star_kit.config import MAX_CONFIG_BYTES, load_config_file

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" + "#" * MAX_CONFIG_BYTES)
    signal.alarm(20)  # a regression would hang here
    try:
        for path, said in ((fifo, "not a regular file"), ("/dev/zero", "not a regular file"),
                           (big, "larger than 1 MiB")):
            with pytest.raises(StarKitError, match=said):
                load_config_file(path)
    finally:
        signal.alarm(0)
    from star_kit_plugins.trl_trainer import _accelerate_settings

    assert _accelerate_settings(str(fifo)) == str(fifo)  # unreadable: its path counts, as for another machine's
    r, w = os.pipe()  # the user's own --config may be a pipe: star-kit run --config <(...)
    os.write(w, b"iterations: 2\n")
    os.close(w)
    assert load_config_file(f"/dev/fd/{r}", pipe=True) == {"iterations": 2}
    os.close(r)


def test_bench_run_takes_only_a_star_kit_task_from_config_yaml(tmp_path, fake_model, capsys):
    """``task: lm-eval:arc_easy`` (or ``arc_easy``) in a foreign config.yaml would make bench fetch that dataset
    from the hub: a run's task is one of star-kit's, anything else is refused; --tasks names one explicitly."""
    for task in ("lm-eval:arc_easy", "arc_easy"):
        folder = tmp_path / task.replace(":", "_")
        folder.mkdir()
        run = _crafted_run(folder, fake_model, task=task, sampler="hf")
        assert main(["bench", "--run", str(run), "--no-progress"]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"config.yaml names task {task!r}, which no installed plugin provides" in err, err
        assert "never one of lm-eval's: name what to bench with --tasks" in err


def test_a_run_whose_plugin_is_gone_says_which_distribution_made_it(tmp_path, fake_model, capsys):
    """A run made with a third party's task, resumed or benched after that distribution was uninstalled: the
    one line says where the task came from, as the run's eval.json recorded it (and nothing is imported)."""
    run = _crafted_run(tmp_path, fake_model, task="subtract", sampler="hf")
    (run / "iter_00").mkdir()
    (run / "iter_00" / "eval.json").write_text(json.dumps({"accuracy": 0.5, "plugins": {
        "task": "star-kit-subtract 0.0.1 (plugin 'subtract')\nsecond line", "sampler": "star-kit 0.1.0 (plugin 'hf')"}}))
    used = (f"the run used task 'subtract' from star-kit-subtract 0.0.1 (plugin 'subtract'), as "
            f"{run / 'iter_00' / 'eval.json'} records: install that distribution (pip install star-kit-subtract) "
            f"or load its module with --plugin")
    for command in (["run", "--resume", str(run), "--no-progress"], ["run", "--resume", str(run), "--print-config"],
                    ["bench", "--run", str(run), "--no-progress"]):
        assert main(command) == 2, command
        err = " ".join(capsys.readouterr().err.split())
        assert used in err and "second line" not in err, (command, err)
    assert main(["run", "--out", str(tmp_path / "new"), "--task", "subtract", "--print-config"]) == 2
    assert "the run used" not in capsys.readouterr().err  # a new run: nothing recorded
    # what the run directory says is data: control characters dropped, no command made of a name that is none
    record = run / "iter_00" / "eval.json"
    record.write_text(json.dumps({"plugins": {"task": "star-kit-subtract 0.0.1\x1b[2K\x07 (plugin 'subtract')"}}))
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "from star-kit-subtract 0.0.1[2K (plugin" in err
    record.write_text(json.dumps({"plugins": {"task": "git+https://evil.example/x.git 1.0"}}))
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown task 'subtract'" in err and "evil" not in err and "pip install" not in err
    # a run directory holding a link: nothing in it is read for the message
    (run / "iter_00").rename(tmp_path / "elsewhere")
    (run / "iter_00").symlink_to(tmp_path / "elsewhere")
    record = tmp_path / "elsewhere" / "eval.json"
    record.write_text(json.dumps({"plugins": {"task": "star-kit-subtract 0.0.1 (plugin 'subtract')"}}))
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    assert "the run used" not in capsys.readouterr().err


def test_a_model_folder_naming_a_hub_kernel_as_its_attention_is_refused(tmp_path):
    from star_kit.models import check_model_folder

    folder = tmp_path / "ckpt"
    folder.mkdir()
    for config in ({"attn_implementation": "kernels-community/flash-attn3"},
                   {"text_config": {"_attn_implementation": "someone/kernel"}}):
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(StarKitError, match=r"sampler 'hf': model folder .*ckpt: config.json names the attention "
                                               r"implementation '.*/.*', a kernel from the hub \(code\): refused"):
            check_model_folder(str(folder), "sampler 'hf'")
    (folder / "config.json").write_text(json.dumps({"attn_implementation": "sdpa"}))
    with pytest.raises(StarKitError, match="no weights"):  # past the kernel check: the folder's other checks
        check_model_folder(str(folder), "sampler 'hf'")


@pytest.mark.parametrize("cut", ["empty", "lines"])
def test_a_damaged_config_yaml_stops_the_resume_instead_of_taking_the_defaults(tmp_path, fake_model, capsys, cut):
    """An emptied or cut config.yaml was filled with today's defaults and the run went on with other sizes."""
    run = _crafted_run(tmp_path, fake_model, sampler="hf", train_size=32, eval_size=16)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("" if cut == "empty" else "\n".join(text.splitlines()[:7]) + "\n")
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    said = "is empty" if cut == "empty" else "has no"
    assert f"{run / 'config.yaml'} {said}" in err and "damaged or cut short (a run writes every key)" in err, err


def test_the_resume_command_said_on_an_interrupt_names_what_must_be_given_again(tmp_path, fake_model):
    from star_kit.cli import _given_again

    run = _crafted_run(tmp_path, fake_model, sampler="openai", plugins=["my_plugin"],
                       sampler_options={"reload_command": "curl http://h/reload"})
    assert _given_again(str(run)) == " --sampler openai --plugin my_plugin --sampler-opt reload_command=..."
    (run / "config.yaml").write_text(yaml.safe_dump(RunConfig(model=fake_model, sampler="hf").to_dict()))
    assert _given_again(str(run)) == ""
    assert _given_again(str(tmp_path / "nowhere")) == ""


def test_a_command_nested_in_a_plugins_option_is_withheld_as_one(tmp_path, fake_model, capsys):
    """A plugin's option holding a dict of settings: a command key inside it names code as a top-level one does."""
    run = _crafted_run(tmp_path, fake_model, sampler="hf", sampler_options={
        "server": {"port": 8000, "hooks": [{"start_command": "touch PWNED"}]}})
    assert main(["run", "--resume", str(run), "--print-config"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "config.yaml names sampler option server; a run directory is data, pass --sampler-opt server=... " \
           "again" in err, err
    from star_kit.config import flags_to_give_again

    assert flags_to_give_again({"sampler_options": {"server": {"port": 8000, "start_command": ""}}}) == []  # empty
    assert flags_to_give_again({"trainer_options": {"x": [{"start_cmd": "y"}]}}) == ["--trainer-opt x=..."]
    assert flags_to_give_again({"task_options": {"labels": {"command": "imperative"}}}) == []  # a word in data


def test_a_damaged_checkpoint_on_resume_is_named_as_the_runs_own(tmp_path, tiny_model, capsys):
    """The sampler's load error (safetensors' 'incomplete metadata') read as a sampler crash: it now names the
    iteration's checkpoint as where the damaged file may be."""
    import shutil

    run = _crafted_run(tmp_path, tiny_model, sampler="hf", iterations=2)
    ckpt = run / "iter_01" / "checkpoint"
    shutil.copytree(tiny_model, ckpt)
    weights = next(ckpt.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # a copy cut short
    (run / "metrics.jsonl").write_text('{"iteration": 0, "accuracy": 0.25, "eval_examples": 4}\n'
                                       '{"iteration": 1, "accuracy": 0.5, "steps": 40, "eval_examples": 4, '
                                       f'"checkpoint": "{ckpt}"}}\n')
    assert main(["run", "--resume", str(run), "--no-progress"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"(loading iteration 1's checkpoint {ckpt}: a file there may be damaged)" in err, err
