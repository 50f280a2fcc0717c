"""``--trainer-opt`` keys that the ``trl-sft`` trainer passes through to TRL's ``SFTConfig`` are checked against the
field's type when the trainer is created, before any model loads: one line naming the trainer, the option, the
value and the expected type. No model is loaded here."""

from __future__ import annotations

import dataclasses
import enum
import typing

import pytest

from star_kit.cli import main
from star_kit.config import option_type_problem
from star_kit.errors import StarKitError

trl = pytest.importorskip("trl")
from star_kit_plugins.trl_trainer import TRLSFTTrainer, _sft_field_type  # noqa: E402


@pytest.mark.parametrize("option,message", [
    ({"learning_rate": "abc"}, "option learning_rate='abc' is not a number"),
    ({"logging_steps": True}, "option logging_steps=True is not a number"),  # a boolean is not a number
    ({"max_length": 2.5}, "option max_length=2.5 is not an integer or null"),
    ({"gradient_checkpointing": "yes"}, "option gradient_checkpointing='yes' is not true or false"),
    ({"packing": 1}, "option packing=1 is not true or false"),
    ({"loss_type": "mse"}, "option loss_type='mse' is not 'nll' or 'dft' or 'chunked_nll'"),  # field choices
    ({"hub_model_id": ["a"]}, "option hub_model_id=['a'] is not a string or null"),
])
def test_a_value_of_the_wrong_type_is_one_line_naming_the_trainer(option, message):
    with pytest.raises(StarKitError) as err:
        TRLSFTTrainer(**option)
    assert str(err.value) == f"trainer 'trl-sft': {message} (a trl.SFTConfig field)"
    assert err.value.exit_code == 2


@pytest.mark.parametrize("option", [
    {"learning_rate": 1},  # an int is a float
    {"learning_rate": 2e-5, "max_length": None, "gradient_checkpointing": True},
    {"lr_scheduler_type": "cosine"},  # SchedulerType | str
    {"debug": ["underflow_overflow"]},  # str | list[DebugOption]: a list of the enum's values
    {"fsdp": True},  # annotated str | None, but a bare --fsdp (const True) is what TRL's own parser gives
    {"gradient_checkpointing_kwargs": {"use_reentrant": False}},
    {"loss_type": "dft"},
])
def test_values_that_trl_accepts_pass(option):
    assert {k: v for k, v in TRLSFTTrainer(**option).sft_options.items() if k in option} == option


def test_an_integer_given_for_a_string_field_is_its_text():
    """``--trainer-opt run_name=1`` reads 1 as a number, as every option value is read; TRL's ``run_name`` is a
    string, so it gets "1", as a plugin's own string options do (``star_kit.registry.as_declared``)."""
    options = TRLSFTTrainer(run_name=1, hub_model_id=7, learning_rate=1).sft_options
    assert options["run_name"] == "1" and options["hub_model_id"] == "7"
    assert options["learning_rate"] == 1  # a number field keeps the number
    with pytest.raises(StarKitError, match=r"option run_name=1.5 is not a string"):  # a decimal's text is not kept
        TRLSFTTrainer(run_name=1.5)


@pytest.mark.parametrize("option,message", [
    ({"warmup_steps": -1}, "option warmup_steps=-1 is negative"),
    ({"learning_rate": -0.1}, "option learning_rate=-0.1 is negative"),
    ({"eval_strategy": "steps"}, "eval_strategy=steps needs an eval_dataset"),
    ({"optim": "adamw_8bit"}, "optim=adamw_8bit needs the Python package 'bitsandbytes', which is not installed"),
    ({"optim": "galore_adamw"}, "optim=galore_adamw needs the Python package 'galore_torch'"),
    ({"seed": 3}, "option 'seed' is set by star-kit (from the run config: --seed); remove it"),
    ({"num_train_epochs": 2}, "(from the run config: --base-steps and --step-growth (steps, not epochs))"),
    ({"warmup_ratio": 0.1}, "unknown option 'warmup_ratio'; use warmup_steps (a value below 1 is a fraction"),
    ({"learning_rte": 1e-4}, "unknown option 'learning_rte' (did you mean 'learning_rate'?)"),
])
def test_what_training_would_refuse_after_the_sampling_is_refused_before_it(option, message):
    """transformers/torch refuse these only when the fine-tune starts, after the baseline and the sampling: they
    are refused when the trainer is created (with the flag to use instead, where star-kit sets the field)."""
    import importlib.util

    if "optim" in option and importlib.util.find_spec("bitsandbytes" if "8bit" in option["optim"] else "galore_torch"):
        pytest.skip("the optimizer's package is installed here")
    with pytest.raises(StarKitError) as err:
        TRLSFTTrainer(**option)
    assert message in str(err.value) and err.value.exit_code == 2


def test_no_sft_config_default_is_refused():
    """What TRL itself defaults to always passes the check: the check never blocks a value TRL takes."""
    from trl import SFTConfig

    hints = typing.get_type_hints(SFTConfig)
    checked = 0
    for f in dataclasses.fields(SFTConfig):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = _sft_field_type(f, hints[f.name])
        assert hint is None or option_type_problem(f.name, default, hint) is None, (f.name, default, hint)
        checked += hint is not None
    assert checked > 100


def test_an_annotation_that_does_not_resolve_takes_any_value():
    field = dataclasses.field(default=None)
    field.name = "future_option"
    assert _sft_field_type(field, "SomeTypeOnlyImportedForTypeChecking | None") is None


def test_enums_and_literals_in_the_shared_type_check():
    class Mode(enum.Enum):
        FAST = "fast"
        SLOW = "slow"

    assert option_type_problem("mode", "fast", Mode) is None and option_type_problem("mode", Mode.SLOW, Mode) is None
    assert option_type_problem("mode", "quick", Mode) == "option mode='quick' is not 'fast' or 'slow'"
    assert option_type_problem("flag", 0, typing.Literal[False]) == "option flag=0 is not False"  # 0 is not False
    assert option_type_problem("n", 3, int | None) is None


def test_the_run_command_refuses_a_bad_trainer_option_before_anything(tmp_path, capsys):
    """``star-kit run --trainer-opt learning_rate=abc`` stops with one line, before the model (which does not
    exist here) is even resolved, and leaves nothing that blocks the corrected command."""
    out = tmp_path / "run"
    rc = main(["run", "--out", str(out), "--model", str(tmp_path / "no-such-model"), "--no-progress",
               "--trainer-opt", "learning_rate=abc"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err == ["error: trainer 'trl-sft' (plugin 'trl-sft', distribution 'star-kit'): option "
                   "learning_rate='abc' is not a number"]
    assert not (out / "config.yaml").exists()
    # an SFTConfig field the trainer does not declare itself: checked against TRL's field
    rc = main(["run", "--out", str(out), "--model", str(tmp_path / "no-such-model"), "--no-progress",
               "--trainer-opt", "max_grad_norm=abc"])
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: trainer 'trl-sft': option max_grad_norm='abc' is not a number (a trl.SFTConfig field)"]


@pytest.mark.parametrize("options, message", [
    ({"lr_scheduler_type": "cosinee"}, r"option lr_scheduler_type='cosinee' is not 'linear' or 'cosine' or .* "
                                       r"\(did you mean 'cosine'\?\)"),
    # forty-odd optimizers: counted, not listed, with the nearest names
    ({"optim": "adamw_foo"}, r"option optim='adamw_foo' is not one of the \d+ values of OptimizerNames \(did you "
                             r"mean 'adamw_torch'"),
    ({"optim": "adamw"}, r"\(did you mean 'adamw_torch' or 'adamw_torch_fused'\?\) \(a trl.SFTConfig field\)$"),
    ({"bf16": True, "fp16": True}, "bf16=true and fp16=true: pick one"),
    ({"packing": True}, "packing=true needs max_length"),
])
def test_options_trl_would_refuse_late_fail_when_the_trainer_is_built(options, message):
    """What TRL and transformers refuse only when training starts (after the sampling) is refused when the trainer
    is built, before any model loads: an enum field's unknown value, bf16 with fp16, packing without max_length."""
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    with pytest.raises(StarKitError, match=message) as info:
        TRLSFTTrainer(**options)
    assert info.value.exit_code == 2 and str(info.value).startswith("trainer 'trl-sft': ")


def test_fp16_turns_the_automatic_bf16_off(monkeypatch):
    from star_kit_plugins import trl_trainer

    monkeypatch.setattr(trl_trainer, "bf16_supported", lambda cuda: True)
    assert trl_trainer.TRLSFTTrainer().uses_bf16(cuda=False) is True
    assert trl_trainer.TRLSFTTrainer(fp16=True).uses_bf16(cuda=False) is False
    assert trl_trainer.TRLSFTTrainer(bf16=False).uses_bf16(cuda=False) is False


def test_warmup_below_one_is_a_ratio_as_in_trl():
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    assert TRLSFTTrainer(warmup_steps=0.1).sft_options["warmup_steps"] == 0.1


def test_worker_processes_measure_padding_free_batches_unless_it_was_given():
    """options() re-creates the trainer in accelerate's processes: padding_free only when the user gave it, so a
    default stays the trainer's choice there."""
    from star_kit_plugins.trl_trainer import TRLSFTTrainer

    assert "padding_free" not in TRLSFTTrainer().options()
    assert TRLSFTTrainer(padding_free=False).options()["padding_free"] is False
    assert TRLSFTTrainer(max_length=64).options()["padding_free"] is False  # max_length implies padded batches
