"""The Hugging Face transformers sampler (``hf``): batched ``generate`` with per-sequence stop strings."""

from __future__ import annotations

import copy
import gc
import sys
import warnings
from typing import Any, Literal, Sequence

import star_kit
from star_kit.errors import StarKitError, one_line
from star_kit.models import check_model_folder
from star_kit.protocols import Advance, placement_options
from star_kit.records import GenerationParams, cut_at_stop


ENGINES = ("auto", "prefix", "generate")


class HFSampler:
    """Options: ``dtype`` (auto | bfloat16 | float16 | float32; auto = bf16 where supported, on CPU too),
    ``device`` (auto | cpu | cuda[:N]), ``engine`` (auto | prefix | generate: ``prefix`` is star-kit's decoding
    engine for Llama-family models (``hf_engine``: the few-shot prefix's KV cache computed once and shared by every
    row, a static per-row cache, continuous batching); ``generate`` is transformers' ``model.generate``; auto =
    ``prefix`` on CPU or a CUDA GPU where the architecture is supported, else ``generate``; measured on the STaR
    workload, 256 prompts on 2 CPU cores: 3.7x generate's tokens/s; an H200, 1024-2048 prompts a call: 3.8-5.9x,
    less for fewer prompts, ``docs/results/sampling_speed.md``), ``batch_size`` (sequences decoded at once; auto =
    with the prefix engine as many as a 1 GiB cache holds on CPU (16 to 256), or a cache of an eighth of the GPU's
    free memory up to 8 GiB (16 to 2048); with generate 32 on CPU and 256 on a GPU; whatever it is, an
    out-of-memory error halves it and the smaller size is kept for later calls),
    ``prefix_cache`` (reuse the KV cache of the prompts' shared prefix, default true), ``static_cache`` (auto |
    true | false: a static KV cache, which transformers compiles with ``torch.compile`` on a GPU; it replaces the
    prefix cache; auto = off: on an H200 it made ``generate`` slower on the STaR workload, 1,967 vs 3,732
    tokens/s on 512 arithmetic prompts after a 50 s compile, and the default job 148 s vs 88 s,
    ``benchmarks/gpu_check.py``)."""

    _leading_tokens: list[int] = []  # set by load(): see leading_special_tokens
    # where and how the decoding runs, not what it decodes: a resumed run may change them (dtype counts)
    outcome_options = placement_options("device", "batch_size", "engine", "prefix_cache", "static_cache")

    @staticmethod
    def check_options(registry: Any, model: str, dtype: str = "auto", device: str = "auto",
                      batch_size: Any = "auto", prefix_cache: bool = True, static_cache: Any = "auto",
                      engine: str = "auto") -> None:
        """The options' values, before a model loads (``--print-config`` runs it too); what depends on this
        machine (is there a CUDA device N?) is checked where the sampler starts, which under the ray sampler is
        another machine."""
        import torch

        if device != "auto":
            try:
                torch.device(device)
            except RuntimeError:
                raise StarKitError(f"sampler 'hf': device {device!r} is not a device (auto, cpu, cuda or cuda:N)",
                                   2) from None
        if dtype not in ("auto", "bfloat16", "float16", "float32"):
            raise StarKitError(f"sampler 'hf': dtype must be auto, bfloat16, float16 or float32, got {dtype!r}", 2)
        if engine not in ENGINES:
            raise StarKitError(f"sampler 'hf': engine must be one of {', '.join(ENGINES)}, got {engine!r}", 2)
        if batch_size != "auto" and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                     or batch_size < 1):
            raise StarKitError(f"sampler 'hf': batch_size must be auto or a positive integer, got {batch_size!r}", 2)
        if static_cache != "auto" and not isinstance(static_cache, bool):
            raise StarKitError(f"sampler 'hf': static_cache must be auto, true or false, got {static_cache!r}", 2)

    def __init__(
        self, model: str, dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto", device: str = "auto",
        batch_size: int | Literal["auto"] = "auto", prefix_cache: bool = True,
        static_cache: bool | Literal["auto"] = "auto", engine: Literal["auto", "prefix", "generate"] = "auto"
    ) -> None:  # the annotations are what `check_options` holds a value to before anything starts (a Ray actor)
        import torch

        self.torch = torch
        HFSampler.check_options(None, model, dtype=dtype, device=device, batch_size=batch_size,
                                static_cache=static_cache, engine=engine)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":  # torch's own word for it is an AssertionError, later
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            if (self.device.index or 0) >= count:
                raise StarKitError(f"sampler 'hf': device {device!r}: torch sees {count or 'no'} CUDA "
                                   f"device{'' if count == 1 else 's'} on this machine", 2)
        if dtype == "auto":
            if self.device.type == "cuda":  # bf16 where the GPU has it natively (not emulated: a T4, a V100)
                try:
                    native = torch.cuda.is_bf16_supported(including_emulation=False)
                except TypeError:  # an older torch
                    native = torch.cuda.is_bf16_supported()
                dtype = "bfloat16" if native else "float16"
            else:
                dtype = "bfloat16"  # measured faster than fp32 for decoding on CPU
        self.dtype = getattr(torch, dtype)
        self.engine_option = engine
        self.auto_batch = batch_size == "auto"
        if batch_size == "auto":
            batch_size = 256 if self.device.type == "cuda" else 32  # generate on CPU: 64 no faster, 16 slower
        self.batch_size = int(batch_size)
        if static_cache == "auto":  # measured slower on a GPU (see above); nothing is compiled on CPU
            static_cache = False
        self.static_cache = static_cache
        self.prefix_cache = bool(prefix_cache) and not static_cache
        self.model = ""
        self._model = None
        self._engine = None
        self.tokenizer = None
        self.load(model)

    def load(self, model: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.close()
        check_model_folder(model, "sampler 'hf'")
        try:
            tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=False)
            net = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype, trust_remote_code=False)
        except OSError as exc:
            raise StarKitError(f"sampler 'hf': cannot load model {model!r}: {one_line(exc)}") from exc
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        net.to(self.device).eval()
        # generate fills every field a call leaves unset from the model's generation config (a checkpoint's
        # repetition_penalty, top_k, no_repeat_ngram_size, ...): only its token ids are kept, so that completions
        # follow GenerationParams alone, as with the prefix engine and the vLLM sampler.
        gen = net.generation_config
        net.generation_config = GenerationConfig(bos_token_id=gen.bos_token_id, eos_token_id=gen.eos_token_id,
                                                 pad_token_id=tokenizer.pad_token_id)
        self.tokenizer, self._model, self.model = tokenizer, net, model
        self._leading_tokens = leading_special_tokens(tokenizer)
        self._engine = self._make_engine(net)

    def _make_engine(self, net):
        """The prefix engine for this model, or None (``model.generate``)."""
        from star_kit_plugins.hf_engine import DEVICES, DecodeEngine, unsupported_reason

        if self.engine_option == "generate" or (self.engine_option == "auto" and self.static_cache):
            return None
        if self.device.type not in DEVICES:  # e.g. mps: its attention kernels are CPU's and CUDA's
            if self.engine_option == "prefix":
                raise StarKitError(f"sampler 'hf': engine=prefix runs on {' or '.join(DEVICES)}, not on "
                                   f"{self.device.type!r} (use engine=generate, the default there)", 2)
            return None
        reason = unsupported_reason(net)
        if reason is not None:
            if self.engine_option == "prefix":
                raise StarKitError(f"sampler 'hf': engine=prefix does not support this model ({reason})", 2)
            return None
        return DecodeEngine(net, slots=None if self.auto_batch else self.batch_size)

    def close(self) -> None:
        self._model = None
        self._engine = None
        gc.collect()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    def generate(
        self, prompts: Sequence[str], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        """Greedy or sampled completions. The prompts' shared token prefix (the few-shot exemplars, ~95% of
        every prompt) is run through the model once and its KV cache reused by every batch; each batch holds
        ``[prefix | left-padded suffix]`` and stops each sequence at the first stop string. Prompts of several
        kinds in one call (M(n)'s evaluation prompts, the question alone, beside iteration n+1's few-shot
        sampling prompts) are decoded kind by kind, each with its own shared prefix (:func:`prefix_groups`)."""
        if not prompts:
            return []
        lead = self._leading_tokens
        rows = [lead + row for row in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
        groups = prefix_groups(rows) if self.prefix_cache else [list(range(len(rows)))]
        if len(groups) == 1:
            return self._generate_kind(rows, params, advance)
        done: list[list[str]] = [[] for _ in prompts]
        for group in groups:
            for i, texts in zip(group, self._generate_kind([rows[i] for i in group], params, advance)):
                done[i] = texts
        return done

    def _generate_kind(
        self, rows: Sequence[list[int]], params: GenerationParams, advance: Advance | None = None
    ) -> list[list[str]]:
        """:meth:`generate` for the token rows of prompts of one kind (one shared prefix, or none)."""
        from transformers import GenerationConfig

        torch = self.torch
        tok = self.tokenizer
        # n completions per prompt: repeat the prompt (one code path for greedy and sampling).
        ids = [row for row in rows for _ in range(params.n)]
        prefix_len = shared_prefix_length(ids) if self.prefix_cache else 0
        if self._engine is not None:
            return self._generate_engine(rows, ids, prefix_len, params, advance)
        prefix_cache = self._prefix_cache(ids[0][:prefix_len]) if prefix_len else None
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # long first: OOM shows up at once
        sample = params.temperature > 0
        gen_cfg = GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None,
            top_k=0 if sample else None,  # None would be transformers' default, 50
            pad_token_id=tok.pad_token_id,
            eos_token_id=self._model.generation_config.eos_token_id,
            stop_strings=[s for s in params.stop if s] or None,
            cache_implementation="static" if self.static_cache else None,
        )
        texts: list[str] = [""] * len(ids)
        left = [params.n] * len(rows)  # rows of each prompt still to decode (progress counts prompts)
        start, batch_index, batch_size = 0, 0, self.batch_size
        while start < len(order):
            idx = order[start : start + batch_size]
            try:
                out = self._generate_batch([ids[i] for i in idx], prefix_len, prefix_cache, gen_cfg,
                                           params.seed + batch_index)
            except torch.OutOfMemoryError:
                if batch_size == 1:
                    raise StarKitError("sampler 'hf': out of memory at batch size 1") from None
                batch_size = self.batch_size = max(1, batch_size // 2)  # remembered for later calls
                print(f"sampler 'hf': out of memory; batch size halved to {batch_size}", file=sys.stderr)
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            done = 0
            for j, i in enumerate(idx):
                texts[i] = cut_at_stop(out[j], params.stop)
                left[i // params.n] -= 1
                done += left[i // params.n] == 0
            start += len(idx)
            batch_index += 1
            if advance is not None and done:
                advance(done)
        return [texts[k * params.n : (k + 1) * params.n] for k in range(len(rows))]

    def _generate_engine(self, rows, ids, prefix_len, params, advance) -> list[list[str]]:
        tok = self.tokenizer
        stop = [s for s in params.stop if s]
        # tokens: a stop string spans at most one per UTF-8 byte (byte-level tokens split a character), +1
        window = max((len(s.encode()) for s in stop), default=0) + 2

        def is_done(tokens: list[int]) -> bool:
            tail = tok.decode(tokens[-window:])
            return any(s in tail for s in stop)

        left = [params.n] * len(rows)
        shown = [False] * len(rows)  # a retry after an out-of-memory error does not count a prompt twice

        def finished(row: int) -> None:
            k = row // params.n
            left[k] -= 1
            if left[k] == 0 and not shown[k]:
                shown[k] = True
                if advance is not None:
                    advance(1)

        eos = self._model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
        while True:
            try:
                new = self._engine.generate(ids, prefix_len, params.max_new_tokens, is_done, eos,
                                            params.temperature, params.top_p, params.seed, finished)
                break
            except self.torch.OutOfMemoryError:
                if self._engine.last_slots <= 1:
                    raise StarKitError("sampler 'hf': out of memory at batch size 1") from None
                self.batch_size = self._engine.slots = max(1, self._engine.last_slots // 2)
                self.auto_batch = False  # the smaller size is kept for later calls and models
                print(f"sampler 'hf': out of memory; batch size halved to {self.batch_size}", file=sys.stderr)
                left[:] = [params.n] * len(rows)
                gc.collect()
                if self.device.type == "cuda":
                    self.torch.cuda.empty_cache()
        if self.device.type == "cuda":  # the rows' caches (up to 8 GiB) go back to the device, not to torch's
            self.torch.cuda.empty_cache()  # pool: a trainer in another process (accelerate) may need them
        texts = [cut_at_stop(tok.decode(t, skip_special_tokens=True), params.stop) for t in new]
        return [texts[k * params.n : (k + 1) * params.n] for k in range(len(rows))]

    def _prefix_cache(self, prefix: list[int]):
        torch = self.torch
        with torch.inference_mode():
            out = self._model(torch.tensor([prefix], device=self.device), use_cache=True)
        return out.past_key_values

    def _generate_batch(self, rows: list[list[int]], prefix_len: int, prefix_cache, gen_cfg, seed: int) -> list[str]:
        torch = self.torch
        width = max(len(r) for r in rows) - prefix_len
        input_ids = torch.full((len(rows), prefix_len + width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for r, row in enumerate(rows):
            suffix = row[prefix_len:]
            input_ids[r, :prefix_len] = torch.tensor(row[:prefix_len])
            input_ids[r, prefix_len + width - len(suffix) :] = torch.tensor(suffix)
            attention[r, :prefix_len] = 1
            attention[r, prefix_len + width - len(suffix) :] = 1
        kwargs = {}
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            kwargs["past_key_values"] = cache
        if gen_cfg.do_sample:
            torch.manual_seed(seed)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # newer transformers prefer `cache=`; older lack it
            out = self._model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=gen_cfg,
                tokenizer=self.tokenizer,
                **kwargs,
            )
        return self.tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)


def leading_special_tokens(tokenizer) -> list[int]:
    """The special tokens the tokenizer itself puts before a text (Gemma's ``<bos>``; none for SmolLM2): prompts
    start with them, as in training (TRL tokenizes ``tokenizer(text)``) and in lm-eval's HFLM (the tokenizer's
    default); Gemma degrades without its ``<bos>``. Trailing ones (an EOS some tokenizers append) are not wanted
    before a completion."""
    text = "a"
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    full = tokenizer(text)["input_ids"]
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i])
    return []


def shared_prefix_length(ids: Sequence[Sequence[int]], minimum: int = 16) -> int:
    """Length of the longest token prefix shared by every row, leaving each row at least one token of its
    own; 0 when shorter than ``minimum`` (not worth a cache)."""
    first = ids[0]
    limit = min(len(r) for r in ids) - 1
    n = 0
    while n < limit and all(r[n] == first[n] for r in ids):
        n += 1
    return n if n >= minimum else 0


def prefix_groups(ids: Sequence[Sequence[int]], minimum: int = 16) -> list[list[int]]:
    """The prompts (token rows) split into groups that each share a prefix of at least ``minimum`` tokens, so that
    each group's prefix is cached once: the indices of each group, in order, and last the rows that share no such
    prefix with enough others (a group must hold at least 2 rows and 1/16 of all). One group (all rows) when the
    rows share one prefix, or no group has one. Sorting brings rows with a common prefix together: O(n log n)
    comparisons of token rows."""
    if len(ids) < 2 or shared_prefix_length(ids, minimum):
        return [list(range(len(ids)))]
    order = sorted(range(len(ids)), key=lambda i: list(ids[i]))
    smallest = max(2, len(ids) // 16)
    groups: list[list[int]] = []
    rest: list[int] = []
    runs = [[order[0]]]
    for a, b in zip(order, order[1:]):
        if shared_prefix_length([ids[a], ids[b]], minimum):
            runs[-1].append(b)
        else:
            runs.append([b])
    for run in runs:
        if len(run) >= smallest:
            groups.append(run)
        else:
            rest.extend(run)
    if not groups:
        return [list(range(len(ids)))]
    return [sorted(g) for g in groups] + ([sorted(rest)] if rest else [])


@star_kit.hookimpl
def register_samplers(register):
    register("hf", HFSampler)
