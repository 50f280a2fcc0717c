"""The run configuration: one dataclass whose fields map 1:1 onto CLI flags and YAML keys."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import StarKitError


@dataclass
class RunConfig:
    """Everything that defines a STaR run (``RUN/config.yaml`` holds exactly these keys)."""

    task: str = "arithmetic"
    model: str = "smollm2-135m"
    sampler: str = "hf"
    trainer: str = "trl-sft"
    out: str = "runs/star"
    iterations: int = 3  # the default job (128/64 questions, 40, 48, 58 steps): about 8 min on 2 CPU cores
    patience: int = 2
    train_size: int | None = 128
    eval_size: int | None = 64
    rationalize: bool = True
    verifier: str = "auto"  # auto: the task's own rationale verifier; none: no check beyond the answer; or a name
    baseline: bool = True
    seed: int = 0
    temperature: float = 0.0
    samples: int = 1  # rationales sampled per question (k > 1 needs temperature > 0); identical ones train once
    top_p: float = 1.0
    base_steps: int = 40
    step_growth: float = 1.2
    step_schedule: str = "exponential"  # exponential: base·growth^(n-1); linear: base + 20·(n-1)
    train_fewshot: bool = False  # fine-tune on the few-shot prompt too (10x the tokens), not just the question
    data_dir: str | None = None
    skip_bad_rows: bool = False  # drop (and count) malformed data rows instead of stopping at the first
    chunk_size: int = 128  # questions sampled (and saved for resume) per chunk
    task_options: dict[str, Any] = field(default_factory=dict)
    sampler_options: dict[str, Any] = field(default_factory=dict)
    trainer_options: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "RunConfig":
        unknown = sorted(set(data) - set(cls.keys()))
        if unknown:
            raise StarKitError(f"{source}: unknown key {unknown[0]!r}; known keys: {', '.join(cls.keys())}", 2)
        return cls(**data)

    # Keys that may change when a run is resumed (they do not change what was already computed).
    RESUMABLE = ("iterations", "patience", "out", "plugins")

    def validate(self) -> None:
        if self.iterations < 0:
            raise StarKitError(f"--iterations must be >= 0, got {self.iterations}", 2)
        if self.samples < 1:
            raise StarKitError(f"--samples must be >= 1, got {self.samples}", 2)
        if self.samples > 1 and self.temperature <= 0:
            raise StarKitError(f"--samples {self.samples} needs --temperature > 0 (greedy decoding gives "
                               f"{self.samples} identical rationales)", 2)
        if self.step_schedule not in ("exponential", "linear"):
            raise StarKitError(f"--step-schedule must be exponential or linear, got {self.step_schedule!r}", 2)
        for key in ("train_size", "eval_size"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise StarKitError(f"--{key.replace('_', '-')} must be positive, got {value}", 2)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StarKitError(f"cannot read config file {path}: {exc.strerror}", 2) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise StarKitError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}", 2) from exc
    if not isinstance(data, dict):
        raise StarKitError(f"{path}: expected a mapping of config keys, got {type(data).__name__}", 2)
    return {k.replace("-", "_"): v for k, v in data.items()}


def steps_for(iteration: int, config: RunConfig) -> int:
    """Training steps for iteration ``iteration`` (1-based): 40·1.2^(n-1) by default, as in the STaR code."""
    if iteration < 1:
        raise ValueError("iterations are 1-based")
    if config.step_schedule == "linear":
        return config.base_steps + 20 * (iteration - 1)
    return int(round(config.base_steps * config.step_growth ** (iteration - 1)))
