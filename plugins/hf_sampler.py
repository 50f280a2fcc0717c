"""The Hugging Face transformers sampler (``hf``): batched ``generate`` with per-sequence stop strings."""

from __future__ import annotations

import gc
from typing import Sequence

import star_kit
from star_kit.errors import StarKitError
from star_kit.protocols import Advance
from star_kit.records import GenerationParams


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """The text before the earliest stop string."""
    end = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                end = min(end, i)
    return text[:end]


class HFSampler:
    """Options: ``dtype`` (auto | bfloat16 | float16 | float32; auto = bf16 where supported, on CPU too),
    ``device`` (auto | cpu | cuda[:N]), ``batch_size`` (prompts per generate call, default 32)."""

    def __init__(self, model: str, dtype: str = "auto", device: str = "auto", batch_size: int = 32) -> None:
        import torch

        self.torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype == "auto":
            if self.device.type == "cuda":
                dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
            else:
                dtype = "bfloat16"  # measured faster than fp32 for decoding on CPU
        if dtype not in ("bfloat16", "float16", "float32"):
            raise StarKitError(f"sampler 'hf': dtype must be auto, bfloat16, float16 or float32, got {dtype!r}", 2)
        self.dtype = getattr(torch, dtype)
        self.batch_size = int(batch_size)
        self.model = ""
        self._model = None
        self.tokenizer = None
        self._warned_oom = False
        self.load(model)

    def load(self, model: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.close()
        try:
            tokenizer = AutoTokenizer.from_pretrained(model)
            net = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype)
        except OSError as exc:
            raise StarKitError(f"sampler 'hf': cannot load model {model!r}: {exc}".splitlines()[0]) from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        net.to(self.device).eval()
        net.generation_config.pad_token_id = tokenizer.pad_token_id
        self.tokenizer, self._model, self.model = tokenizer, net, model

    def close(self) -> None:
        self._model = None
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        from transformers import GenerationConfig

        torch = self.torch
        tok = self.tokenizer
        lengths = [len(ids) for ids in tok(list(prompts), add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])  # long first: OOM shows up at once
        sample = params.temperature > 0
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=None,
            num_return_sequences=params.n,
            pad_token_id=tok.pad_token_id,
            eos_token_id=self._model.generation_config.eos_token_id,
            stop_strings=[s for s in params.stop if s] or None,
        )
        results: list[list[str]] = [[] for _ in prompts]
        start, batch_index, batch_size = 0, 0, self.batch_size
        while start < len(order):
            idx = order[start : start + batch_size]
            try:
                texts = self._generate_batch([prompts[i] for i in idx], gen_cfg, params.seed + batch_index)
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise StarKitError("sampler 'hf': out of memory at batch size 1") from None
                batch_size = max(1, batch_size // 2)
                if not self._warned_oom:
                    print(f"sampler 'hf': out of memory; batch size halved to {batch_size}")
                    self._warned_oom = True
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            for j, i in enumerate(idx):
                results[i] = [cut_at_stop(t, params.stop) for t in texts[j * params.n : (j + 1) * params.n]]
            start += len(idx)
            batch_index += 1
            if advance is not None:
                advance(len(idx))
        return results

    def _generate_batch(self, prompts: list[str], gen_cfg, seed: int) -> list[str]:
        torch = self.torch
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if gen_cfg.do_sample:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = self._model.generate(**enc, generation_config=gen_cfg, tokenizer=self.tokenizer)
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


@star_kit.hookimpl
def register_samplers(register):
    register("hf", HFSampler)
