"""The TRL ``SFTTrainer`` trainer (``trl-sft``): full fine-tuning (or LoRA through peft) with the loss on the
completion only.

Two launchers, one training function (:meth:`TRLSFTTrainer.fit`):

* ``inprocess`` (default): the loop's own process trains on its one device.
* ``accelerate``: every fine-tune runs in fresh processes started by ``accelerate launch`` (DDP, FSDP or DeepSpeed
  ZeRO as the user's ``accelerate_config`` file says, on one or several machines). The trainer writes what the
  worker needs (``spec.json``, ``train.jsonl``) into its scratch folder and runs
  ``accelerate launch [--config_file F] [--num_processes N] -m star_kit_plugins.trl_worker SPEC``; the worker
  calls the same :meth:`~TRLSFTTrainer.fit` and rank 0 saves the checkpoint where the in-process path does. A fresh
  process per fine-tune frees all (GPU) memory between iterations. A worker that dies is one error line with its
  exit code and the end of its log (``iter_NN/train_worker.log``); ``--resume`` retrains that iteration.
"""

from __future__ import annotations

import dataclasses
import enum
import gc
import importlib.util
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing
from pathlib import Path
from typing import Any, Sequence

import star_kit
from star_kit.config import is_secret_key, option_type_problem
from star_kit.errors import StarKitError, did_you_mean
from star_kit.models import check_model_folder
from star_kit.protocols import Advance
from star_kit.records import TrainExample
from star_kit.registry import as_declared
from star_kit.store import read_jsonl, write_json, write_jsonl
from star_kit_plugins.sft_attention import use_packed_attention
from star_kit_plugins.sft_lm_head import use_compact_lm_head

LAUNCHERS = ("inprocess", "accelerate")
# options that decide where training runs, not what it computes (a resumed run may change them: outcome_options)
# options that only say where the fine-tune runs: the launcher too (in this process or accelerate's: 2 processes x
# batch 4 and 1 in process x batch 8 give the same loss curve, tests/test_scale_out.py); the settings of
# accelerate's configuration, its default file's too, count
PLACEMENT_OPTIONS = ("launcher", "num_processes", "main_process_port")
GLOBAL_BATCH = "the global batch (per_device_train_batch_size x gradient_accumulation_steps x processes)"
# settings of an accelerate config file that say where the processes run
ACCELERATE_PLACEMENT = ("num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port",
                        "gpu_ids", "same_network", "rdzv_backend", "deepspeed_hostfile",
                        "deepspeed_multinode_launcher", "compute_environment")
WORKER_MODULE = "star_kit_plugins.trl_worker"
SECRETS_ENV = "STAR_KIT_TRAINER_SECRETS"  # credential options reach the workers by environment, not spec.json

# Our defaults for SFTConfig fields (TRL's own defaults for every other field). The first six are also keyword
# parameters of the trainer's factory, so that a run's config.yaml records them (the registry's option_defaults).
SFT_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "lr_scheduler_type": "constant_with_warmup",
    "warmup_steps": 2,
    "weight_decay": 0.0,
    # Padding-free batches: the batch's examples are concatenated into one row (no padding tokens), each attending
    # only to itself (transformers builds the block-diagonal mask from the position ids). TRL applies max_length to
    # padded batches only, so an explicit max_length turns padding_free off unless padding_free is given too.
    "padding_free": True,
    "max_length": None,
}
# SFTConfig fields the trainer sets itself (from the loop's arguments or its own bookkeeping), and where instead.
SFT_RESERVED = {"output_dir": "--out", "max_steps": "--base-steps and --step-growth",
                "num_train_epochs": "--base-steps and --step-growth (steps, not epochs)",
                "completion_only_loss": "always on: the loss is on the rationale and answer",
                "seed": "--seed", "data_seed": "--seed", "save_strategy": "one checkpoint per iteration",
                "report_to": "star-kit's logger plugins (metrics.csv, TensorBoard, W&B)",
                "disable_tqdm": "--no-progress", "use_cpu": "the device star-kit finds",
                "bf16": "the trainer's own bf16=auto|true|false"}
NEEDS_PEFT = "trainer 'trl-sft': lora=true needs peft (pip install 'star-kit[lora]')"
# Fields transformers 5 removed, with what replaced them.
SFT_RENAMED = {"warmup_ratio": "warmup_steps (a value below 1 is a fraction of the steps)",
               "evaluation_strategy": "none: star-kit evaluates through lm-eval after each iteration"}
# TrainingArguments.optim values and the module each needs (checked before the sampling, not when training starts).
OPTIM_MODULES = (("adamw_torch_4bit", "torchao"), ("adamw_torch_8bit", "torchao"), ("galore", "galore_torch"),
                 ("lomo", "lomo_optim"), ("grokadamw", "grokadamw"), ("schedule_free", "schedulefree"),
                 ("apollo", "apollo_torch"), ("anyprecision", "torchdistx"), ("stable_adamw", "optimi"),
                 ("torch_xla", "torch_xla"), ("npu", "torch_npu"), ("bnb", "bitsandbytes"), ("8bit", "bitsandbytes"),
                 ("lion", "bitsandbytes"), ("paged", "bitsandbytes"), ("ademamix", "bitsandbytes"))


class TRLSFTTrainer:
    """Options: any TRL ``SFTConfig`` field by its TRL name (``learning_rate`` 5e-5, ``per_device_train_batch_size``
    8, ``gradient_accumulation_steps`` 1, ``lr_scheduler_type`` constant_with_warmup, ``warmup_steps`` 2,
    ``weight_decay`` 0.0, ``padding_free`` true and ``max_length`` none (no truncation; setting ``max_length``
    turns ``padding_free`` off, as TRL truncates padded batches only) are star-kit's defaults; on a CPU,
    ``activation_checkpointing`` is off unless given (TRL turns it on; it recomputes the forward to save memory);
    every other field keeps TRL's), plus:
    ``bf16`` (mixed precision; auto: on where the GPU supports it, and on CPUs with bf16 instructions (AVX512-BF16 /
    AMX), where it measured 1.9x faster than fp32), ``compact_lm_head`` (auto: on where TRL's fused LM head has no
    Triton kernel, i.e. on CPUs: the LM head and loss run on the completion tokens only, with bf16 GEMMs; see
    ``star_kit_plugins.sft_lm_head``), ``packed_attention`` (auto: on CPUs with padding-free batches, for
    plain-attention model families: each packed example attends to itself as one padded batch instead of a
    block-diagonal mask over the whole row; see ``star_kit_plugins.sft_attention``), ``lora`` (False; needs
    peft), ``lora_r`` (16), ``lora_alpha`` (32), ``launcher`` (inprocess | accelerate), ``num_processes``
    (accelerate: training processes; default: what the accelerate config, or accelerate's default configuration
    file, says, else one per CUDA device, else 1), ``accelerate_config``
    (accelerate: a config file from ``accelerate config``, passed through untouched: DDP, FSDP, DeepSpeed ZeRO-2/3,
    several machines), ``main_process_port`` (accelerate: default a free port), ``launch_args`` (accelerate: more
    ``accelerate launch`` arguments, a list or a string)."""

    #: what ``**sft_options`` takes, for ``star-kit plugins trl-sft``
    passed_on_options = "any other trl.SFTConfig field (max_length, num_train_epochs, optim ...), checked against it"

    def __init__(
        self,
        bf16: str | bool = "auto",
        compact_lm_head: str | bool = "auto",
        packed_attention: str | bool = "auto",
        lora: bool = False,
        lora_r: int = 16,
        lora_alpha: int = 32,
        launcher: str = "inprocess",
        num_processes: int | None = None,
        accelerate_config: str | None = None,
        main_process_port: int | None = None,
        launch_args: Sequence[str] | str = (),
        learning_rate: float = SFT_DEFAULTS["learning_rate"],
        per_device_train_batch_size: int = SFT_DEFAULTS["per_device_train_batch_size"],
        gradient_accumulation_steps: int = SFT_DEFAULTS["gradient_accumulation_steps"],
        lr_scheduler_type: str = SFT_DEFAULTS["lr_scheduler_type"],
        warmup_steps: float = SFT_DEFAULTS["warmup_steps"],
        weight_decay: float = SFT_DEFAULTS["weight_decay"],
        **sft_options: Any,
    ) -> None:
        sft_options = {"learning_rate": learning_rate, "per_device_train_batch_size": per_device_train_batch_size,
                       "gradient_accumulation_steps": gradient_accumulation_steps,
                       "lr_scheduler_type": lr_scheduler_type, "warmup_steps": warmup_steps,
                       "weight_decay": weight_decay, **sft_options}
        if bf16 not in ("auto", True, False):
            raise StarKitError(f"trainer 'trl-sft': bf16 must be auto, true or false, got {bf16!r}", 2)
        if launcher not in LAUNCHERS:
            raise StarKitError(f"trainer 'trl-sft': launcher must be one of {', '.join(LAUNCHERS)}, "
                               f"got {launcher!r}", 2)
        if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
            raise StarKitError(f"trainer 'trl-sft': num_processes must be a positive integer, got {num_processes!r}", 2)
        port = main_process_port
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
            raise StarKitError(f"trainer 'trl-sft': main_process_port must be a port number from 1 to 65535, got "
                               f"{main_process_port!r}", 2)
        if accelerate_config is not None and not Path(accelerate_config).is_file():
            raise StarKitError(f"trainer 'trl-sft': accelerate_config {accelerate_config!r} is not a file", 2)
        if launcher == "inprocess" and (num_processes not in (None, 1) or accelerate_config or launch_args):
            raise StarKitError("trainer 'trl-sft': num_processes, accelerate_config and launch_args need "
                               "launcher=accelerate", 2)
        if compact_lm_head not in ("auto", True, False):
            raise StarKitError(f"trainer 'trl-sft': compact_lm_head must be auto, true or false, got "
                               f"{compact_lm_head!r}", 2)
        if packed_attention not in ("auto", True, False):
            raise StarKitError(f"trainer 'trl-sft': packed_attention must be auto, true or false, got "
                               f"{packed_attention!r}", 2)
        if lora and importlib.util.find_spec("peft") is None:  # fails now, not after sampling
            raise StarKitError(NEEDS_PEFT, 2)
        given = check_sft_options(sft_options)
        for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if key in given and not (isinstance(given[key], int) and given[key] >= 1):
                raise StarKitError(f"trainer 'trl-sft': {key} must be a positive integer, got {given[key]!r}", 2)
        if given.get("max_length") is not None and not given.get("packing"):
            if given.get("padding_free"):
                raise StarKitError("trainer 'trl-sft': TRL truncates to max_length in padded batches only: pass "
                                   "padding_free=false with max_length, or leave max_length unset", 2)
            given.setdefault("padding_free", False)
        self.sft_options = {**SFT_DEFAULTS, **given}
        self.padding_free_given = "padding_free" in given
        self.bf16 = bf16
        self.compact_lm_head = compact_lm_head
        self.packed_attention = packed_attention
        self.lora = bool(lora)
        self.lora_r, self.lora_alpha = int(lora_r), int(lora_alpha)
        self.launcher = launcher
        self.num_processes = num_processes
        self.accelerate_config = str(Path(accelerate_config).resolve()) if accelerate_config else None
        self.main_process_port = main_process_port
        self.launch_args = launch_args.split() if isinstance(launch_args, str) else list(launch_args)
        if self.launch_args:
            problem = launch_args_problem(self.launch_args)
            if problem:
                raise StarKitError(f"trainer 'trl-sft': launch_args {' '.join(self.launch_args)!r}: {problem}", 2)
        self._check_config()
        self._check_gpus()

    def _check_gpus(self) -> None:
        """More processes than this machine's GPUs, with no accelerate config or launch_args to say otherwise
        (several machines): accelerate would start one process on one GPU (or ranks on GPUs that do not exist),
        after the sampling; refused now. (On CPUs the processes share the cores: any count.)"""
        processes = self.num_processes
        if self.launcher != "accelerate" or not processes or processes < 2 or self.accelerate_config \
                or self.launch_args or not _has_cuda() or _default_accelerate_config():
            return
        import torch

        gpus = torch.cuda.device_count()
        if processes > gpus:
            raise StarKitError(f"trainer 'trl-sft': num_processes={processes} but torch sees {gpus} CUDA "
                               f"device{'' if gpus == 1 else 's'} here: one process per GPU (for several machines, "
                               f"pass an accelerate_config)", 2)

    @staticmethod
    def outcome_options(registry: Any, options: dict[str, Any]) -> dict[str, Any]:
        """What a resumed run must keep (see ``Registry.outcome``): every option but the launcher, the process
        count and the port, with the per-device batch and the accumulation replaced by the global batch they make
        with the process count as accelerate counts it (:func:`_processes`; on the machine where it is computed:
        the run records it in outcome.json): a run killed on 8 GPUs resumes on 4 with ``num_processes=4
        gradient_accumulation_steps=2``, one trained in process on 8 GPUs with ``launcher=accelerate``. An
        ``accelerate_config`` (or accelerate's default configuration file, under accelerate) counts by its
        settings, not its path, and ``launch_args`` by their flags, less those that say where the processes run
        (machines, addresses, ports)."""
        out = {k: v for k, v in options.items() if k not in PLACEMENT_OPTIONS}
        if options.get("launch_args"):  # less their process count (a placement, counted in the global batch)
            out["launch_args"] = _launch_args(options["launch_args"])[0]
        config = options.get("accelerate_config") or (
            _default_accelerate_config() if options.get("launcher") == "accelerate" else None)
        if config:  # accelerate's default configuration file too, which may say FSDP, DeepSpeed, a precision
            out["accelerate_config"] = _accelerate_settings(config)
        layout = ("per_device_train_batch_size", "gradient_accumulation_steps")
        per_device, accumulation = (options.get(k, SFT_DEFAULTS[k]) for k in layout)
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in (per_device, accumulation)):
            return out  # refused by the trainer itself
        for k in layout:
            out.pop(k, None)
        processes = _processes(options)
        out[GLOBAL_BATCH] = per_device * accumulation * processes if processes is not None else \
            f"{per_device} x {accumulation} x the processes of a configuration file that does not say how many"
        return out

    def uses_bf16(self, cuda: bool) -> bool:
        """bf16 mixed precision: as given, else (auto) where the device has it, unless fp16 was asked for."""
        if self.bf16 != "auto":
            return bool(self.bf16)
        return bf16_supported(cuda) and not self.sft_options.get("fp16")

    def _check_config(self) -> None:
        """What TRL and transformers would refuse only when training starts (after the sampling), refused now:
        bf16 and fp16 both on, packing without max_length (an enum field's unknown value, e.g.
        ``lr_scheduler_type=cosinee``, is :func:`check_sft_options`'s). No SFTConfig is built here: that would set
        up the launching process's devices (a CUDA context, TF32, accelerate's state) before the sampler starts."""
        options = self.sft_options
        if self.bf16 is True and options.get("fp16"):
            raise StarKitError("trainer 'trl-sft': bf16=true and fp16=true: pick one (bf16 auto yields to fp16)", 2)
        if options.get("packing") and options.get("max_length") is None:
            raise StarKitError("trainer 'trl-sft': packing=true needs max_length (TRL packs the examples into rows of "
                               "that many tokens)", 2)

    def options(self) -> dict[str, Any]:
        """The options a worker process re-creates this trainer with (the in-process launcher)."""
        return {"bf16": self.bf16, "compact_lm_head": self.compact_lm_head,
                "packed_attention": self.packed_attention, "lora": self.lora, "lora_r": self.lora_r,
                "lora_alpha": self.lora_alpha,  # padding_free as given: by default each process checks the model
                **{k: v for k, v in self.sft_options.items() if k != "padding_free" or self.padding_free_given}}

    def train(
        self,
        base_model: str,
        examples: Sequence[TrainExample],
        steps: int,
        output_dir: Path,
        seed: int = 0,
        advance: Advance | None = None,
    ) -> Path:
        if not examples:
            raise StarKitError("trainer 'trl-sft': no training examples")
        output_dir = Path(output_dir)
        work = output_dir.with_name(output_dir.name + ".work")  # scratch; a killed run's is discarded
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            if self.launcher == "accelerate":
                self._launch(base_model, examples, steps, output_dir, seed, advance, work)
            else:
                self.fit(base_model, examples, steps, output_dir, seed, advance, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return output_dir

    # -- in this process (also what each accelerate worker runs) ---------------------------------------------
    def fit(self, base_model, examples, steps, output_dir, seed, advance, work) -> None:
        import torch
        from datasets import Dataset
        from transformers import AutoTokenizer

        check_model_folder(str(base_model), "trainer 'trl-sft'")  # weights, tokenizer, no hub attention kernel
        cuda = torch.cuda.is_available()
        bf16 = self.uses_bf16(cuda)
        tokenizer = AutoTokenizer.from_pretrained(base_model, trust_remote_code=False)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        peft_config = None
        if self.lora:
            try:
                from peft import LoraConfig
            except ImportError:
                raise StarKitError(NEEDS_PEFT) from None
            peft_config = LoraConfig(r=self.lora_r, lora_alpha=self.lora_alpha, task_type="CAUSAL_LM",
                                     target_modules="all-linear")
        data = Dataset.from_list([{"prompt": e.prompt, "completion": e.completion} for e in examples])
        options = dict(self.sft_options)
        shown = [0]  # optimizer steps advanced so far: a retry after out of memory starts at step 0 again

        def progress(step: int) -> None:
            if advance is not None and step > shown[0]:
                advance(step - shown[0])
                shown[0] = step
        while True:  # out of memory: halve the per-device batch, double accumulation (same effective batch)
            try:
                trainer = self._fit(base_model, data, tokenizer, peft_config, steps, work, seed, bf16, cuda,
                                    progress, options)
                break
            except torch.OutOfMemoryError:
                if options["per_device_train_batch_size"] == 1:
                    raise StarKitError("trainer 'trl-sft': out of memory at batch size 1") from None
                options["per_device_train_batch_size"] //= 2
                options["gradient_accumulation_steps"] *= 2
                print(f"trainer 'trl-sft': out of memory; per-device batch halved to "
                      f"{options['per_device_train_batch_size']} (gradient accumulation "
                      f"{options['gradient_accumulation_steps']}, same effective batch)", file=sys.stderr)
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
        self._save(trainer, tokenizer, output_dir, checkpoint_dtype(base_model, bf16 or bool(options.get("fp16"))))

    def _fit(self, base_model, data, tokenizer, peft_config, steps, work, seed, bf16, cuda, progress, options):
        """Load the base model fresh and train it; returns the TRL trainer. ``progress(step)`` is told each
        optimizer step done (it counts each step once, across retries)."""
        import torch
        from transformers import AutoModelForCausalLM, PrinterCallback, TrainerCallback
        from trl import SFTConfig, SFTTrainer

        model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32, trust_remote_code=False)
        options = dict(options)
        # measured on the loaded model in a single process; under accelerate a rank may not hold the weights yet
        # (FSDP's rank-0 loading), so the workers train as configured
        if options.get("padding_free") and int(os.environ.get("WORLD_SIZE", "1")) == 1 and not packing_is_exact(model):
            name = type(model).__name__
            if self.padding_free_given:
                raise StarKitError(f"trainer 'trl-sft': padding_free=true, but {name} lets packed examples attend "
                                   "to each other (its attention ignores the position ids that separate them): "
                                   "pass padding_free=false", 2)
            options["padding_free"] = False
            print(f"trainer 'trl-sft': padded batches for {name}: its attention does not keep packed examples apart "
                  "(padding-free batches would mix them)", file=sys.stderr, flush=True)
        warmup = options.get("warmup_steps", 0)
        if warmup >= 1:  # steps (below 1: TRL reads a ratio of the steps)
            options["warmup_steps"] = min(int(warmup), max(steps - 1, 0))
        shortened = f"; warmup {options['warmup_steps']} of the {int(warmup)} steps asked (the fine-tune has " \
            f"{steps})" if warmup >= 1 and options["warmup_steps"] < int(warmup) else ""
        options.setdefault("logging_steps", max(1, steps // 10))
        options.setdefault("dataloader_num_workers", 0)
        if not cuda and "gradient_checkpointing" not in options:  # TRL's default recomputes the forward to save
            # memory: a CPU rarely needs it (measured 1.2x); the field's name in transformers < 5.24 (vLLM's pin)
            # is gradient_checkpointing
            field = "activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__ \
                else "gradient_checkpointing"
            options.setdefault(field, False)
        args = SFTConfig(
            output_dir=str(work),
            max_steps=steps,
            completion_only_loss=True,
            bf16=bf16,
            use_cpu=not cuda,
            seed=seed,
            data_seed=seed,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            **options,
        )

        class _Progress(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if state.is_world_process_zero:
                    progress(state.global_step)

        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=data,
            processing_class=tokenizer,
            peft_config=peft_config,
            callbacks=[_Progress()],
        )
        trainer.remove_callback(PrinterCallback)  # star-kit shows progress; the log is saved below
        patched = trainer.model.get_base_model() if peft_config is not None else trainer.model
        compact = self.compact_lm_head is not False and use_compact_lm_head(
            patched, everywhere=self.compact_lm_head is True)
        packed = self.packed_attention is not False and bool(args.padding_free) and use_packed_attention(
            patched, everywhere=self.packed_attention is True)
        world = args.world_size
        expected = getattr(self, "expected_processes", None)  # set by the launching process (accelerate)
        if expected is not None and world != expected:  # the global batch recorded would not be the one trained
            hint = ("accelerate starts a MULTI_CPU config's processes through mpirun only (with mpirun_hostfile): on "
                    "one machine without GPUs give num_processes without accelerate_config, which star-kit starts "
                    "with gloo" if self.accelerate_config and not cuda else
                    f"check {self.accelerate_config or 'the accelerate configuration'}")
            raise StarKitError(f"trainer 'trl-sft': accelerate started {world} training process"
                               f"{'es' if world > 1 else ''} where {expected} were asked ({hint})", 2)
        if trainer.is_world_process_zero():
            kind = trainer.accelerator.distributed_type.value  # accelerate's name: MULTI_GPU, FSDP, DEEPSPEED, ...
            device = trainer.accelerator.device.type
            spread = f" x {args.n_gpu} GPUs (DataParallel)" if world == 1 and args.n_gpu > 1 else ""
            print(f"trainer 'trl-sft': {world} training process{'es' if world > 1 else ''} on {device}"
                  f"{'' if kind == 'NO' else f' ({kind})'}{spread} x per-device batch "
                  f"{args.per_device_train_batch_size} x accumulation {args.gradient_accumulation_steps} = "
                  f"effective batch {world * args.train_batch_size * args.gradient_accumulation_steps}; "
                  f"{steps} optimizer step{'' if steps == 1 else 's'}"
                  + ("; padding-free batches" if args.padding_free else "") + ("; compact LM head" if compact else "")
                  + ("; packed attention" if packed else "") + shortened,
                  file=sys.stderr, flush=True)
        trainer.train()
        if packed:  # the model saved next names no attention registered only in this process
            patched.config.get_text_config()._attn_implementation = "sdpa"
        return trainer

    def _save(self, trainer, tokenizer, output_dir: Path, dtype: Any) -> None:
        """Rank 0 saves the model folder (in ``dtype``: :func:`checkpoint_dtype`) and the loss log; FSDP/DeepSpeed
        gather the full state dict first and save it as gathered (``dtype`` not applied)."""
        log = [h for h in trainer.state.log_history if "loss" in h]
        if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
            trainer.save_model(str(output_dir))  # every rank takes part in gathering the shards
        elif trainer.is_world_process_zero():
            final = trainer.accelerator.unwrap_model(trainer.model)
            if self.lora:
                final = final.merge_and_unload()
            output_dir.mkdir(parents=True, exist_ok=True)
            final.to(dtype).save_pretrained(output_dir)
        if trainer.is_world_process_zero():
            # save_model also pickles the TrainingArguments (a hub_token in it; a pickle is code to whoever loads
            # it): the run directory keeps the model, its tokenizer and the loss log only.
            (output_dir / "training_args.bin").unlink(missing_ok=True)
            tokenizer.save_pretrained(output_dir)
            write_jsonl(output_dir / "train_log.jsonl", log)
        trainer.accelerator.wait_for_everyone()

    # -- in fresh processes, started by accelerate launch ----------------------------------------------------
    def launch_command(self, spec: Path) -> list[str]:
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if self.accelerate_config:
            cmd += ["--config_file", self.accelerate_config]
        processes = self.num_processes
        if processes is not None:
            cmd += ["--num_processes", str(processes)]
        if processes and processes > 1 and not self.accelerate_config and not _has_cuda():
            # accelerate's multi-CPU path wants mpirun; its torchrun path ("multi_gpu") runs gloo on CPUs.
            cmd += ["--multi_gpu"]
        if not self.accelerate_config and "--main_process_port" not in self.launch_args:
            cmd += ["--main_process_port", str(self.main_process_port or _free_port())]
        cmd += [*self.launch_args, "-m", WORKER_MODULE, str(spec)]
        return cmd

    def _launch(self, base_model, examples, steps, output_dir, seed, advance, work) -> None:
        spec = work / "spec.json"
        progress = work / "progress.jsonl"
        write_jsonl(work / "train.jsonl", (e.to_dict() for e in examples))
        options = self.options()
        secrets = {k: options.pop(k) for k in list(options) if is_secret_key(k)}  # hub_token ...: never on disk
        expected = _processes({"launcher": "accelerate", "launch_args": self.launch_args, "num_processes":
                               self.num_processes, "accelerate_config": self.accelerate_config})
        write_json(spec, {"base_model": str(base_model), "train": str(work / "train.jsonl"), "steps": steps,
                          "output_dir": str(output_dir), "seed": seed, "work": str(work / "trl"),
                          "progress": str(progress), "options": options, "parent_pid": os.getpid(),
                          "processes": expected, "accelerate_config": self.accelerate_config})
        log_path = output_dir.parent / "train_worker.log"
        cmd = self.launch_command(spec)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **{SECRETS_ENV: json.dumps(secrets)})
        print(f"trainer 'trl-sft': accelerate launch ({' '.join(cmd[3:-3]) or 'accelerate defaults'}); "
              f"log in {log_path}", file=sys.stderr, flush=True)
        with open(log_path, "ab") as log:  # appended: a resumed iteration keeps the failed attempt's log
            log.write(f"==== star-kit: training attempt started {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
            log.flush()
            start = log.tell()
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)
            try:
                reported, echo = 0, _Echo(log_path, start)
                while True:
                    code = proc.poll()
                    done = _count_lines(progress)
                    if advance is not None and done > reported:
                        advance(done - reported)
                        reported = done
                    echo()
                    if code is not None:
                        break
                    time.sleep(0.5)
            except BaseException:  # Ctrl-C or an error here: take the workers down with us
                _kill_group(proc)
                raise
        if code != 0 or not (output_dir / "config.json").is_file():
            raise StarKitError(f"trainer 'trl-sft': the accelerate training worker exited with code {code}: "
                               f"{worker_failure(log_path, start)} (log {log_path}; --resume retrains this iteration)")


def checkpoint_dtype(base_model: str, mixed_precision: bool) -> Any:
    """The dtype a fine-tuned checkpoint is saved in: the base model's own where it is stored in 16 bits and
    training ran in mixed precision (the embedded bf16 model stays bf16: half the disk, and what the sampler loads);
    else float32 (an fp32 base, or training in fp32: small updates are not rounded away)."""
    import torch
    from transformers import AutoConfig

    stored = getattr(AutoConfig.from_pretrained(base_model, trust_remote_code=False).get_text_config(), "dtype", None)
    stored = getattr(torch, stored, None) if isinstance(stored, str) else stored
    return stored if mixed_precision and stored in (torch.bfloat16, torch.float16) else torch.float32


def packing_is_exact(model: Any) -> bool:
    """Whether ``model`` keeps the examples of a padding-free row apart, as TRL's padding-free collator feeds them
    (one row, no attention mask, position ids restarting at each example): transformers builds the block-diagonal
    mask from the position ids for the decoder families that use its masking utilities (Llama, Qwen2, Mistral,
    GPT-NeoX, GPT-2 ... in transformers 5), not necessarily for every model (remote code, older releases).
    Measured, not assumed: the second of two packed sequences must give its logits alone, to 1e-3 (a forward of 7
    tokens)."""
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    first, second = [i % vocab for i in (11, 12, 13)], [i % vocab for i in (14, 15, 16, 17)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no dropout in the comparison
    try:
        with torch.no_grad():
            packed = model(input_ids=torch.tensor([first + second], device=device),
                           position_ids=torch.tensor([[0, 1, 2, 0, 1, 2, 3]], device=device), use_cache=False)
            alone = model(input_ids=torch.tensor([second], device=device), use_cache=False)
    finally:
        model.train(was_training)
    tail = packed.logits[0, len(first):].float()
    return bool(torch.allclose(tail, alone.logits[0].float(), atol=1e-3, rtol=1e-3))


def check_sft_options(options: dict[str, Any]) -> dict[str, Any]:
    """Unknown keys, keys the trainer sets itself, and values of the wrong type for their SFTConfig field are one
    clear error each, before any model loads (TRL's SFTConfig names are accepted; see :func:`_sft_field_type`)."""
    if not options:
        return {}
    try:
        from trl import SFTConfig
    except ImportError:  # checked again when training starts
        return dict(options)
    fields = {f.name: f for f in dataclasses.fields(SFTConfig)}
    try:
        hints = typing.get_type_hints(SFTConfig)
    except Exception:  # noqa: BLE001 - some annotation does not resolve: check the fields whose type is a type
        hints = {}
    types: dict[str, Any] = {}
    for key in options:
        if key in SFT_RESERVED:
            raise StarKitError(f"trainer 'trl-sft': option {key!r} is set by star-kit (from the run config: "
                               f"{SFT_RESERVED[key]}); remove it", 2)
        if key not in fields:
            hint = (f"; use {SFT_RENAMED[key]}" if key in SFT_RENAMED
                    else did_you_mean(key, [*fields, *_trainer_options()]))
            raise StarKitError(f"trainer 'trl-sft': unknown option {key!r}{hint} (not a trl.SFTConfig field, nor "
                               f"one of {', '.join(_trainer_options())})", 2)
        hint = _sft_field_type(fields[key], hints.get(key, fields[key].type))
        if hint is not None:
            types[key] = hint
    options = as_declared(options, types)  # run_name=1 is the text "1", as for a plugin's own string options
    for key, value in options.items():
        problem = option_type_problem(key, value, types[key]) if key in types else None
        if problem:
            raise StarKitError(f"trainer 'trl-sft': {problem} (a trl.SFTConfig field)", 2)
    problem = _late_refusal(options)
    if problem:
        raise StarKitError(f"trainer 'trl-sft': {problem}", 2)
    return options


def _trainer_options() -> list[str]:
    """The trainer's own options (its factory's parameters that are not SFTConfig fields)."""
    params = inspect.signature(TRLSFTTrainer.__init__).parameters
    return [n for n, p in params.items() if n != "self" and n not in SFT_DEFAULTS and p.kind is p.POSITIONAL_OR_KEYWORD]


def _late_refusal(options: dict[str, Any]) -> str | None:
    """What transformers or torch would refuse only when training starts (after the sampling), found now."""
    for key in ("learning_rate", "warmup_steps", "weight_decay", "max_grad_norm"):
        value = options.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            return f"option {key}={value} is negative"
    strategy = options.get("eval_strategy")
    if strategy not in (None, "no"):
        return (f"eval_strategy={strategy} needs an eval_dataset, which the fine-tune does not get: star-kit "
                "evaluates each iteration through lm-eval (remove it)")
    optim = options.get("optim")
    if isinstance(optim, str):
        module = next((m for part, m in OPTIM_MODULES if part in optim), None)
        if module and importlib.util.find_spec(module) is None:
            return f"optim={optim} needs the Python package {module!r}, which is not installed"
    return None


def _sft_field_type(field: dataclasses.Field, hint: Any) -> Any:
    """The values TRL's own argument parser takes for an SFTConfig field: its annotation (an int is a float, an
    enum's value is the enum), narrowed to the field's ``choices`` and widened by its ``const`` (a bare
    ``--fsdp`` is True although the field says ``str | None``); None when the annotation does not resolve."""
    if isinstance(hint, str):
        return None
    args = typing.get_args(hint)
    enums = [a for a in args if isinstance(a, type) and issubclass(a, enum.Enum)]
    if enums and str in args:  # Union[SchedulerType, str]: TRL converts the string to the enum (its values only)
        hint = typing.Union[tuple(a for a in args if a is not str)]
    if field.metadata.get("choices"):
        choices = typing.Literal[tuple(field.metadata["choices"])]
        hint = choices | None if option_type_problem("", None, hint) is None else choices
    if "const" in field.metadata:
        hint = hint | typing.Literal[field.metadata["const"]]
    return hint


def bf16_supported(cuda: bool) -> bool:
    """Whether bf16 mixed precision pays here: a GPU that supports it, or a CPU with bf16 instructions."""
    import torch

    if cuda:
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except OSError:
        return 0


def _processes(options: dict[str, Any]) -> int | None:
    """How many data-parallel replicas ``options`` train with, as accelerate counts its processes: in process,
    one process, which transformers spreads over every CUDA device it sees (``nn.DataParallel``: the global batch
    is the per-device batch x the devices), so this machine's CUDA devices (1 without); with accelerate
    the last --num_processes of ``launch_args`` (they follow the option's on the command line), else
    ``num_processes``, else the ``accelerate_config`` file's, else accelerate's default configuration file's, else
    this machine's CUDA devices (at least 1). None where a file says nothing readable."""
    if options.get("launcher", "inprocess") != "accelerate":
        return _cuda_devices()
    found = _launch_args(options.get("launch_args") or [])[1]
    if found is not None:
        return int(found) if found.isdigit() and int(found) >= 1 else None
    if isinstance(options.get("num_processes"), int):
        return options["num_processes"]
    config = options.get("accelerate_config") or _default_accelerate_config()
    if config:
        data = _accelerate_file(config)
        count = data.get("num_processes") if data else None
        return count if isinstance(count, int) and not isinstance(count, bool) and count >= 1 else None
    return _cuda_devices()


def _cuda_devices() -> int:
    """The CUDA devices torch sees here (1 without any)."""
    if not _has_cuda():
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def _default_accelerate_config() -> str | None:
    """accelerate's default configuration file (``accelerate config`` writes it), where there is one: ``accelerate
    launch`` without --config_file reads it."""
    try:
        from accelerate.commands.config.config_args import default_config_file
    except ImportError:
        return None
    return default_config_file if os.path.isfile(default_config_file) else None


# accelerate launch's flags that say where the processes run (with a value; --same_network takes none)
_PLACEMENT_FLAGS = {f"--{name}" for name in ACCELERATE_PLACEMENT if name != "compute_environment"}


def _launch_args(args: Sequence[str] | str) -> tuple[list[str], str | None]:
    """``launch_args`` without the flags that place the processes (their count, machines, addresses, ports), and
    the last --num_processes value (None when not given)."""
    args = args.split() if isinstance(args, str) else [str(a) for a in args]
    rest, found, skip = [], None, False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        flag, eq, value = arg.partition("=")
        flag = "--" + flag[2:].replace("-", "_") if flag.startswith("--") else flag
        if flag in _PLACEMENT_FLAGS:
            skip = not eq and flag != "--same_network"
            if flag == "--num_processes":
                found = value if eq else (args[i + 1] if i + 1 < len(args) else "")
        else:
            rest.append(arg)
    return rest, found


def _accelerate_file(path: str) -> dict | None:
    """An accelerate config file's settings (YAML or JSON, read as star-kit reads its own config files, with their
    size limits), or None where it cannot be read."""
    from star_kit.config import load_config_file

    try:
        return load_config_file(path)
    except StarKitError:
        return None


def _accelerate_settings(path: str) -> Any:
    """What an accelerate config file decides about training (its settings less where the processes run); its
    path where it cannot be read (a run directory made on another machine: then the path counts)."""
    data = _accelerate_file(path)
    if data is None:
        return path
    return {k: v for k, v in data.items() if k not in ACCELERATE_PLACEMENT}


def launch_args_problem(args: list[str]) -> str | None:
    """What ``accelerate launch`` would refuse in ``args`` (an unknown flag, a value of the wrong type), read by
    its own parser now rather than by the launcher after the baseline and the sampling; None when it takes them."""
    import contextlib
    import io

    from accelerate.commands.launch import launch_command_parser

    if any(a in ("-h", "--help") for a in args):
        return "--help is not an argument to launch with"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parsed, unknown = launch_command_parser().parse_known_args([*args, "-m", WORKER_MODULE, "spec.json"])
    except SystemExit:
        lines = err.getvalue().strip().splitlines()
        return lines[-1].split("error: ", 1)[-1] if lines else "refused by accelerate launch"
    if unknown:
        return f"accelerate launch has no option {unknown[0]!r}"
    if parsed.training_script != WORKER_MODULE:  # a program of its own: star-kit's worker would be its argument
        return f"{parsed.training_script!r} is not an option (star-kit launches its own training worker)"
    return None


_LAUNCHER_ERRORS = ("ChildFailedError", "SignalException", "CalledProcessError")  # the launcher's report of a worker
_RANK_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]: ?")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|StopIteration)\b")


def worker_failure(log_path: Path, start: int = 0) -> str:
    """What a failed multi-process fine-tune's log (from byte ``start``: this attempt's part) says went wrong, as
    one line: the rank and exit code of torchrun's "Root Cause" block ('rank 1 exitcode -9 (SIGKILL)') and the
    last exception a worker raised ('RuntimeError: ...'), else the log's last line."""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(start, fh.seek(0, 2) - 1_000_000))  # the end of the log: where the failure is
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return "no log"
    parts, rank, signal = [], None, None
    roots = [i for i, line in enumerate(lines) if line == "Root Cause (first observed failure):"]
    if roots:  # the last report's block
        fields = {}
        for line in lines[roots[-1]:]:
            key, sep, value = line.strip().partition(":")
            if sep and key.strip() in ("rank", "exitcode") and key.strip() not in fields:
                fields[key.strip()] = " ".join(value.split())
        if fields:
            rank = fields.get("rank", "?").split(" (")[0]
            exit_code = fields.get("exitcode", "?").split(" (pid")[0]
            signal = re.search(r"\((SIG\w+)\)", fields.get("exitcode", ""))
            parts.append(f"rank {rank} exitcode {exit_code}" + (f" ({signal.group(1)})" if signal else ""))
    # The exception that ends each traceback, per rank (torchrun's "[rankN]:" prefixes; ranks' lines interleave).
    inside: dict[str, bool] = {}
    exceptions: list[tuple[str, str]] = []
    for line in lines:
        match = _RANK_PREFIX.match(line)
        who = match.group(1) if match else ""
        line = line[match.end():] if match else line
        if line.startswith("Traceback (most recent call last)"):
            inside[who] = True
        elif inside.get(who) and _EXCEPTION_LINE.match(line):
            exceptions.append((who, line.strip()))
            inside[who] = False
    worker = [(who, e) for who, e in exceptions if not any(name in e.split(":")[0] for name in _LAUNCHER_ERRORS)]
    of_rank = [e for who, e in worker if rank is not None and who == rank]
    if worker and not signal:  # a rank killed by a signal raised nothing: the others' errors are its echo
        parts.append((of_rank or [e for _, e in worker])[-1][:300])
    if not parts:
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        parts.append(last[:300] or "empty log")
    return ": ".join(parts)


class _Echo:
    """Repeats the workers' own star-kit lines (effective batch, out-of-memory retries) from their log as they
    appear; the rest of the log (library output) stays in the file."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path, self.offset = path, offset

    def __call__(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self.offset += end
        for line in data[:end].decode(errors="replace").splitlines():
            if line.startswith("trainer 'trl-sft': "):
                print(line, file=sys.stderr, flush=True)


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_worker(spec_path: str) -> None:
    """What each process started by ``accelerate launch`` runs: the in-process fine-tune on its rank."""
    spec = json.loads(Path(spec_path).read_text())
    _exit_with_parent(spec["parent_pid"])
    examples = [TrainExample(**row) for row in read_jsonl(Path(spec["train"]))]
    progress = Path(spec["progress"])

    def advance(k: int) -> None:  # one line per optimizer step, counted by the launching process
        with open(progress, "a") as fh:
            fh.write("1\n" * k)

    trainer = TRLSFTTrainer(**spec["options"], **json.loads(os.environ.get(SECRETS_ENV) or "{}"))
    trainer.expected_processes = spec.get("processes")  # as star-kit counted them (the global batch it records)
    trainer.accelerate_config = spec.get("accelerate_config")
    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    trainer.fit(spec["base_model"], examples, int(spec["steps"]), Path(spec["output_dir"]), int(spec["seed"]),
                advance, work)


def _exit_with_parent(pid: int) -> None:
    """A worker whose star-kit process died (SIGKILL) stops too, so it never trains beside a resumed run."""

    def watch() -> None:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="star-kit-parent-watch").start()


@star_kit.hookimpl
def register_trainers(register):
    register("trl-sft", TRLSFTTrainer)
