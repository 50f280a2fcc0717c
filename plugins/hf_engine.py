"""The ``hf`` sampler's decoding engine for Llama-family models: a shared-prefix KV cache, a static per-row cache
and continuous batching, on the model's own modules (no second copy of the weights, no compilation).

Why it exists: on the STaR workload every prompt is the same few-shot prefix (~400 tokens, ~96% of the prompt)
plus a short question, and completions are short and stop at different lengths. ``model.generate`` copies the
prefix's KV cache into every row and grows a dynamic cache by concatenation each step (memory traffic that grows
with the prefix), and a batch runs until its longest row is done. Here the prefix's keys and values are computed
once and kept once: each decode step attends to them with one fused attention call per layer, all rows' queries
as one matrix, plus one over the row's own keys in a preallocated buffer, the two merged by their log-sum-exps;
q/k/v and gate/up are one GEMM each (the modules' weights rebound to slices of the stacked ones). Rows that
finish (a stop string, EOS, the token budget) free their slot, which the next waiting prompts fill (continuous
batching); at the end the batch is compacted to the rows still running.

The engine reuses the model's own layers (norms, projections, MLP, rotary embedding), so it supports exactly the
architectures whose decoder layer is the Llama one: ``llama``, ``mistral``, ``qwen2`` (their attention biases come
with the projections). Anything else (sliding windows, q/k norms, soft-capping, ...) decodes with
``model.generate``; :func:`unsupported_reason` says why.
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence

ARCHITECTURES = ("llama", "mistral", "qwen2")
DEVICES = ("cpu", "cuda")  # where the engine's attention kernels are


def unsupported_reason(model) -> str | None:
    """None when the engine can decode ``model``, else why not (one short phrase)."""
    cfg = model.config
    if cfg.model_type not in ARCHITECTURES:
        return f"architecture {cfg.model_type!r}"
    windowed = cfg.model_type != "qwen2" or getattr(cfg, "use_sliding_window", False)
    if getattr(cfg, "sliding_window", None) and windowed:
        return "a sliding attention window"
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None or not hasattr(inner, "rotary_emb") or not hasattr(model, "lm_head"):
        return "an unexpected module layout"
    for layer in layers:
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj")):
            return "an unexpected attention module"
        if hasattr(attn, "q_norm") or hasattr(attn, "k_norm"):
            return "q/k norms"
        if not all(hasattr(layer.mlp, n) for n in ("gate_proj", "up_proj", "down_proj", "act_fn")):
            return "an unexpected MLP module"
    return None


def _fuse(linears) -> tuple:
    """(weight, bias) of several linear layers that read the same input, stacked by output rows. Each module's
    weight is rebound to its rows of the stacked one, so the model keeps working and no weight is held twice;
    the biases (small) are copied, zeros where a layer has none. The layers must be on one device and dtype."""
    import torch

    weight = torch.cat([m.weight for m in linears])
    start = 0
    for m in linears:
        rows = m.weight.shape[0]
        m.weight = torch.nn.Parameter(weight[start : start + rows], requires_grad=m.weight.requires_grad)
        start += rows
    if all(m.bias is None for m in linears):
        return weight, None
    return weight, torch.cat([m.bias if m.bias is not None else weight.new_zeros(m.weight.shape[0])
                              for m in linears])


class DecodeEngine:
    """Decodes token rows that share a prefix. One instance per loaded model; the prefix's cache is kept
    between calls (the few-shot prefix is the same for a whole run) and dropped with the engine.

    ``slots``: rows decoded at once; None = as many as a per-row cache of ``cache_bytes`` in all holds for the
    call's longest row, between 16 and ``max_slots`` (on CPU 1 GiB and 256: arithmetic on SmolLM2 gets 256 slots;
    measured on 2 cores, 256 prompts: 645 tokens/s at 256 slots, 609 at 128, 521 at 64; on a GPU, where a step's
    time is launches more than arithmetic, an eighth of its free memory up to 8 GiB, and 2048: on an H200, 2048
    arithmetic prompts, 24.1k tokens/s at 2048 slots, 19.6k at 1024; 1024 prompts, 15.9k at 1024, 9.3k at 512,
    8.2k at 256)."""

    def __init__(self, model, slots: int | None = None, cache_bytes: int | None = None,
                 max_slots: int | None = None) -> None:
        import torch
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self.torch = torch
        self.rope = apply_rotary_pos_emb
        self.model = model
        self.inner = model.model
        self.layers = list(model.model.layers)
        cfg = model.config
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.group = self.heads // self.kv_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scaling = self.head_dim**-0.5
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.slots = slots
        if self.device.type not in DEVICES:
            raise ValueError(f"the prefix engine runs on {' or '.join(DEVICES)}, not {self.device.type}")
        cpu = self.device.type == "cpu"
        # an eighth of the GPU's free memory, up to 8 GiB: the cache is grown by copying (old and new at once)
        if cache_bytes is None and not cpu:
            cache_bytes = min(8 << 30, torch.cuda.mem_get_info(self.device)[0] // 8)
        self.cache_bytes = cache_bytes or 1 << 30
        self.max_slots = max_slots or (256 if cpu else 2048)
        self.last_slots = 0  # the slots the last call used
        self._prefix: tuple[tuple[int, ...], list] | None = None
        # Decoding multiplies each layer's input by q/k/v (and its normed residual by gate/up) as one GEMM each:
        # fewer, larger matmuls. The projections' weights become row slices of the fused ones (no second copy).
        with torch.no_grad():
            self.fused = [(_fuse([l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj]),
                           _fuse([l.mlp.gate_proj, l.mlp.up_proj])) for l in self.layers]
        # how the decode step attends to the shared prefix (:meth:`_prefix_attention`): a kernel behind torch's
        # scaled_dot_product_attention that also returns each query's log-sum-exp (the step attends to the prefix
        # and to the row's own keys separately, then merges): on CPU its flash kernel, on CUDA its
        # memory-efficient kernel; "math" where that has no kernel for the shapes
        self.prefix_kernel = "cpu" if cpu else "efficient"
        # prefill passes of about this many padded suffix tokens: on CPU the attention's float32 scores stay
        # cache-sized; a GPU takes larger passes (fewer launches), bounded by their scores' size (_prefill)
        self.prefill_tokens = 1024 if cpu else 16384

    # -- the model, layer by layer ---------------------------------------------------------------------------
    def _qkv(self, layer, h, positions):
        """Projections of ``h`` [B, L, H] with rotary embeddings at ``positions``: q [kv, B, g·L, d] (the layout
        the attention below multiplies without copies), k and v [kv, B, L, d]."""
        attn = layer.self_attn
        b, n = h.shape[:2]
        q = attn.q_proj(h).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(h).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(h).view(b, n, self.kv_heads, self.head_dim)
        cos, sin = positions
        q, k = self.rope(q, k, cos, sin)
        q = q.view(b, self.kv_heads, self.group, n, self.head_dim).transpose(0, 1)
        return q.reshape(self.kv_heads, b, self.group * n, self.head_dim), k.transpose(0, 1), v.permute(2, 0, 1, 3)

    def _attend(self, q, prefix_kv, keys, values, mask):
        """softmax(q·[prefix keys | own keys]) · [prefix values | own values], the prefix shared by every row.
        q [kv, B, g·L, d]; prefix_kv (keys, values [1, kv, P, d]) or None; keys/values
        [kv, B, T, d]; mask additive, broadcast to [kv, B, g·L, T]. Returns [B, L, heads·d]."""
        torch = self.torch
        kv, b, gn, d = q.shape
        n = gn // self.group
        dtype = values.dtype
        wide = dtype == torch.float16  # float16 scores could overflow: multiplied in float32
        q = q.float() * self.scaling if wide else q * self.scaling  # exact where head_dim is a power of 4
        scores = torch.matmul(q, (keys.float() if wide else keys).transpose(-1, -2)).float() + mask  # [kv, B, g·L, T]
        if prefix_kv is not None:
            pk_t, pv = prefix_kv[0][0].transpose(1, 2), prefix_kv[1][0]  # the transpose: a BLAS flag, no copy
            p = pk_t.shape[2]
            shared = torch.bmm(q.reshape(kv, b * gn, d), pk_t.float() if wide else pk_t).view(kv, b, gn, p)
            scores = torch.cat([shared.float(), scores], dim=-1)
        else:
            p = 0
        probs = torch.softmax(scores, dim=-1).to(dtype)
        out = torch.matmul(probs[..., p:], values)  # [kv, B, g·L, d]
        if prefix_kv is not None:
            out = out + torch.bmm(probs[..., :p].reshape(kv, b * gn, p), pv).view(kv, b, gn, d)
        out = out.view(kv, b, self.group, n, d).permute(1, 3, 0, 2, 4)
        return out.reshape(b, n, self.heads * d)

    def _block(self, layer, x, positions, attend):
        h = layer.input_layernorm(x)
        q, k, v = self._qkv(layer, h, positions)
        x = x + layer.self_attn.o_proj(attend(q, k, v))
        return x + layer.mlp(layer.post_attention_layernorm(x))

    def _decode_layer(self, li, x, rope, prefix_kv, keys, values, rows, lengths, mask):
        """One decoder layer for one new token per row: the new key and value go into the row's cache at
        ``lengths``, then attention over the shared prefix and the row's cache (``mask`` hides the unused
        positions). x [B, H]; rope (cos, sin with its first half negated) [B, 1, d]; prefix (keys, values)
        [1, kv, P, d] or None; keys/values [kv, B, T, d]; mask [B, T] (float32). Returns x.
        Written for few, large ops: a decode step is ~30 layers of small tensors, each op dispatched from Python.
        (``torch.compile`` of the earlier version of this function was measured: ~1.1x the tokens/s after a 10 s
        compile; not used.)"""
        torch, F = self.torch, self.torch.nn.functional
        layer = self.layers[li]
        (w_qkv, b_qkv), (w_gu, b_gu) = self.fused[li]
        b, heads, kv, g, d = x.shape[0], self.heads, self.kv_heads, self.group, self.head_dim
        qkv = F.linear(self._norm(layer.input_layernorm, x), w_qkv, b_qkv)  # [B, (heads + 2·kv)·d]
        qk = qkv[:, : (heads + kv) * d].view(b, heads + kv, d)
        # rotary embedding of q and k at once: rotate_half(x)·sin = roll(x, d/2)·(sin, first half negated).
        # Written head-major, [heads + kv, B, d]: per kv head the query rows are (group, row), the layout the
        # prefix attention takes as one matrix; k is then [kv, B, d], the cache's.
        cos, sin = rope
        rot = qk.new_empty((heads + kv, b, d))
        torch.add(qk * cos, qk.roll(d // 2, -1).mul_(sin), out=rot.transpose(0, 1))
        q = rot[:heads].view(kv, g, b, d)
        keys[:, rows, lengths] = rot[heads:]
        values[:, rows, lengths] = qkv[:, (heads + kv) * d :].view(b, kv, d).transpose(0, 1)
        # softmax over [prefix | own keys] in two parts, merged by their log-sum-exps: the prefix's keys are
        # shared by every row (one [kv, g·B, P] product, torch's fused attention kernel), the row's own are
        # per row (~50 positions each: batched matmuls and a float32 softmax; 3x faster than that kernel on a CPU
        # without AMX, where its per-(row, head) blocks dominate; docs/results/sampling_speed.md)
        out, lse = self._own_attention(q.permute(0, 2, 1, 3), keys, values, mask)  # [kv, B, g, d], [kv, B, g]
        out, lse = out.transpose(0, 1), lse.transpose(0, 1)  # [B, kv, g, d], [B, kv, g]: views
        attn = x.new_empty((b, kv, g, d))  # o_proj's input layout, written by the merge
        if prefix_kv is None:
            attn.copy_(out)
        else:
            shared, shared_lse = self._prefix_attention(q.view(1, kv, g * b, d), *prefix_kv, self.scaling)
            # the prefix's share of the softmax, from float32 log-sum-exps; lerp takes it in the model's dtype
            weight = torch.sigmoid(shared_lse.view(kv, g, b).permute(2, 0, 1) - lse)[..., None].to(out.dtype)
            torch.lerp(out, shared.view(kv, g, b, d).permute(2, 0, 1, 3), weight, out=attn)
        o_proj = layer.self_attn.o_proj
        x += F.linear(attn.view(b, heads * d), o_proj.weight, o_proj.bias)
        gate_up = F.linear(self._norm(layer.post_attention_layernorm, x), w_gu, b_gu)
        inter = gate_up.shape[1] // 2
        act = layer.mlp.act_fn(gate_up[:, :inter]).mul_(gate_up[:, inter:])
        down = layer.mlp.down_proj
        x += F.linear(act, down.weight, down.bias)
        return x

    def _prefix_attention(self, q, k, v, scale):
        """(output [1, kv, L, d], log-sum-exp [1, kv, L]) of q [1, kv, L, d] over the prefix's k, v [1, kv, P, d]:
        torch's fused kernel for the device (:attr:`prefix_kernel`). Where CUDA's has no kernel for the shapes
        (seen on an H200 in bfloat16 with a head_dim of 8 or 12: "cutlassF: no kernel found to launch!"), this and
        later calls use :meth:`_math_attention`, said once on stderr."""
        torch = self.torch
        if self.prefix_kernel == "cpu":
            return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)
        if self.prefix_kernel == "efficient":
            try:
                out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True,
                                                                                  scale=scale)[:2]
                return out, lse[..., : q.shape[2]]  # its log-sum-exp is padded to a multiple of 32 queries
            except (NotImplementedError, RuntimeError) as exc:
                if not isinstance(exc, NotImplementedError) and "no kernel found" not in str(exc):
                    raise  # out of memory, a launch failure: not a missing kernel
                self.prefix_kernel = "math"
                print(f"sampler 'hf': torch's memory-efficient attention has no kernel here ({q.dtype}, head_dim "
                      f"{q.shape[-1]}): the prefix engine attends with matmuls", file=sys.stderr)
        return self._math_attention(q, k, v, scale)

    def _math_attention(self, q, k, v, scale):
        """What the fused kernels compute, as matmuls with float32 scores: (output [.., L, d], log-sum-exp)."""
        torch = self.torch
        scores = torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(scale)
        lse = torch.logsumexp(scores, dim=-1)
        probs = scores.sub_(lse[..., None]).exp_()
        return torch.matmul(probs.to(v.dtype), v), lse

    def _own_attention(self, q, keys, values, mask):
        """softmax(q·keys + mask)·values per row, and its log-sum-exp: q [kv, B, g, d], keys/values [kv, B, T, d],
        mask [B, T] additive float32 (-inf past each row's length). The scores in the model's dtype, the softmax in
        float32; the log-sum-exp from the softmax itself: at a row's maximum score m, p = exp(m - lse), so
        lse = m - log(max p) (max p >= 1/T: no cancellation). float16 multiplies in float32 (its scores could
        overflow)."""
        torch = self.torch
        if q.dtype == torch.float16:
            q, keys = q.float(), keys.float()
        scores = torch.matmul(q, keys.transpose(-1, -2)).float().mul_(self.scaling).add_(mask[None, :, None])
        top = scores.amax(-1)
        probs = torch.softmax(scores, dim=-1)
        lse = top.sub_(probs.amax(-1).log_())
        return torch.matmul(probs.to(values.dtype), values), lse

    def _norm(self, norm, x):
        """The model's RMSNorm (float32 statistics, the weight applied in the model's dtype), its steps in place."""
        h = x.float()
        h = h * h.pow(2).mean(-1, keepdim=True).add_(norm.variance_epsilon).rsqrt_()
        return norm.weight * h.to(x.dtype)

    def _positions(self, x, position_ids):
        return self.inner.rotary_emb(x, position_ids)

    # -- the shared prefix -----------------------------------------------------------------------------------
    def prefix_cache(self, prefix: Sequence[int]) -> list | None:
        """Per layer (keys, values [1, kv, P, d]) of ``prefix``; kept for the next call."""
        torch = self.torch
        if not prefix:
            return None
        key = tuple(prefix)
        if self._prefix is not None and self._prefix[0] == key:
            return self._prefix[1]
        ids = torch.tensor([prefix], device=self.device)
        x = self.inner.embed_tokens(ids)
        positions = self._positions(x, torch.arange(len(prefix), device=self.device)[None])
        causal = self._causal(len(prefix))
        kv: list = []
        for layer in self.layers:
            def attend(q, k, v):
                kv.append((k.transpose(0, 1).contiguous(), v.transpose(0, 1).contiguous()))  # [1, kv, P, d]
                return self._attend(q, None, k, v, causal)
            x = self._block(layer, x, positions, attend)
        self._prefix = (key, kv)
        return kv

    def _causal(self, n: int):
        torch = self.torch
        mask = torch.full((n, n), float("-inf"), device=self.device).triu(1)
        return mask.repeat(self.group, 1).view(1, 1, self.group * n, n)  # query rows are (group, position)

    # -- decoding --------------------------------------------------------------------------------------------
    def generate(
        self,
        rows: Sequence[Sequence[int]],
        prefix_len: int,
        max_new_tokens: int,
        is_done: Callable[[list[int]], bool],
        eos: set[int],
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        finished: Callable[[int], None] | None = None,
    ) -> list[list[int]]:
        """New tokens for every row (EOS excluded). ``rows`` all start with the same ``prefix_len`` tokens;
        ``is_done(tokens)`` says when a row's completion has reached a stop string; ``finished(i)`` is called
        as row ``i`` completes."""
        torch = self.torch
        with torch.inference_mode():
            return self._generate(rows, prefix_len, max_new_tokens, is_done, eos, temperature, top_p, seed, finished)

    def _generate(self, rows, prefix_len, max_new_tokens, is_done, eos, temperature, top_p, seed, finished):
        torch = self.torch
        prefix = self.prefix_cache(rows[0][:prefix_len])
        suffixes = [list(r[prefix_len:]) for r in rows]
        out: list[list[int]] = [[] for _ in rows]
        if max_new_tokens <= 0:
            for i in range(len(rows) if finished is not None else 0):
                finished(i)
            return out
        generator = torch.Generator(device=self.device).manual_seed(seed) if temperature > 0 else None
        waiting = sorted(range(len(rows)), key=lambda i: -len(suffixes[i]))  # long first: the tail is short rows
        width = max(map(len, suffixes)) + max_new_tokens
        n_layers, kv, d = len(self.layers), self.kv_heads, self.head_dim
        per_slot = 2 * n_layers * kv * width * d * self.dtype.itemsize
        slots = self.slots or max(16, min(self.max_slots, self.cache_bytes // per_slot))
        slots = self.last_slots = min(slots, len(rows))
        # The per-row cache grows in steps of GROW positions (a copy every GROW steps) and is used whole, masked:
        # a slice of a longer buffer would make every batched matmul copy it, at every layer of every step.
        grow = 16
        keys = torch.zeros((n_layers, kv, slots, max(map(len, suffixes)) + grow, d), device=self.device,
                           dtype=self.dtype)
        values = torch.zeros_like(keys)
        owner = [-1] * slots  # the row a slot decodes, -1 when free
        lengths = [0] * slots  # tokens in each slot's own cache
        last = [0] * slots  # each slot's next input token
        p = prefix_len if prefix is not None else 0

        def pick(logits):
            if temperature <= 0:
                return logits.max(-1).indices  # the first maximum, as argmax; several times faster on CPU in bf16
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_p, order = probs.sort(dim=-1, descending=True)
                drop = sorted_p.cumsum(-1) - sorted_p > top_p
                sorted_p[drop] = 0.0
                probs = torch.zeros_like(probs).scatter_(-1, order, sorted_p)
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

        def accept(slot_ids, tokens) -> None:
            for s, t in zip(slot_ids, tokens):
                row = owner[s]
                if t in eos:
                    done = True
                else:
                    out[row].append(t)
                    done = len(out[row]) >= max_new_tokens or is_done(out[row])
                if done:
                    owner[s] = -1
                    if finished is not None:
                        finished(row)
                else:
                    last[s] = t

        while waiting or any(o >= 0 for o in owner):
            free = [s for s in range(slots) if owner[s] < 0]
            if waiting and (len(free) >= max(1, slots // 4) or len(free) == slots):
                new = [waiting.pop(0) for _ in range(min(len(free), len(waiting)))]
                for s, i in zip(free, new):
                    owner[s], lengths[s] = i, len(suffixes[i])
                first = self._prefill([suffixes[i] for i in new], free[: len(new)], prefix, p, keys, values, pick)
                accept(free[: len(new)], first.tolist())
                continue
            active = [s for s in range(slots) if owner[s] >= 0]
            if not waiting and len(active) <= slots * 3 // 4:  # the tail: compact to the running rows
                idx = torch.tensor(active, device=self.device)
                keys, values = keys[:, :, idx].contiguous(), values[:, :, idx].contiguous()
                owner, lengths, last = ([x[s] for s in active] for x in (owner, lengths, last))
                slots = len(active)
                active = list(range(slots))
            if max(lengths) >= keys.shape[3]:
                more = keys.new_zeros((*keys.shape[:3], grow, d))
                keys, values = torch.cat([keys, more], dim=3), torch.cat([values, more], dim=3)
            tokens = self._decode_step(prefix, p, keys, values, lengths, last, pick).tolist()
            for s in active:
                lengths[s] += 1
            accept(active, [tokens[s] for s in active])
        return out

    def _prefill(self, suffixes, slot_ids, prefix, p, keys, values, pick):
        """Run the new rows' suffixes into their slots' caches, a few rows at a time (about ``prefill_tokens``
        padded tokens per pass: the attention's float32 scores stay cache-sized; measured on 2 cores, 256
        arithmetic rows at once took 6.8 s, in passes of 64 rows 3.7 s); returns their first new tokens."""
        torch = self.torch
        tokens = self.prefill_tokens
        if self.device.type != "cpu":  # a pass's float32 scores, heads x tokens x (prefix + suffix), within 512 MiB
            tokens = min(tokens, max(256, (512 << 20) // (4 * self.heads * (p + max(map(len, suffixes))))))
        firsts, start = [], 0
        while start < len(suffixes):
            end, longest = start, 0
            while end < len(suffixes) and (end == start or max(longest, len(suffixes[end])) * (end + 1 - start)
                                           <= tokens):
                longest = max(longest, len(suffixes[end]))
                end += 1
            firsts.append(self._prefill_rows(suffixes[start:end], slot_ids[start:end], prefix, p, keys, values,
                                             pick))
            start = end
        return torch.cat(firsts)

    def _prefill_rows(self, suffixes, slot_ids, prefix, p, keys, values, pick):
        """One prefill pass: the rows' suffixes right-padded (causal attention never sees the padding)."""
        torch = self.torch
        n = max(map(len, suffixes))
        ids = torch.zeros((len(suffixes), n), dtype=torch.long)
        for j, row in enumerate(suffixes):
            ids[j, : len(row)] = torch.tensor(row)
        x = self.inner.embed_tokens(ids.to(self.device))
        positions = self._positions(x, (p + torch.arange(n, device=self.device))[None].expand(len(suffixes), n))
        causal = self._causal(n)
        slot_idx = torch.tensor(slot_ids, device=self.device)
        for li, layer in enumerate(self.layers):
            def attend(q, k, v, li=li):
                keys[li, :, slot_idx, :n] = k
                values[li, :, slot_idx, :n] = v
                return self._attend(q, prefix[li] if prefix is not None else None, k, v, causal)
            x = self._block(layer, x, positions, attend)
        ends = torch.tensor([len(row) - 1 for row in suffixes], device=self.device)
        return pick(self.model.lm_head(self.inner.norm(x[torch.arange(len(suffixes)), ends])))

    def _decode_step(self, prefix, p, keys, values, lengths, last, pick):
        """One token for every slot (free slots compute too and are ignored: cheaper than gathering).
        ``lengths[s]`` tokens are in slot ``s``'s cache; the new one goes at that index."""
        torch = self.torch
        slots = keys.shape[2]
        t = keys.shape[3]
        lengths = torch.tensor(lengths, device=self.device)
        x = self.inner.embed_tokens(torch.tensor(last, device=self.device))  # [B, H]
        cos, sin = self._positions(x, (p + lengths)[:, None])  # [B, 1, d]
        half = self.head_dim // 2
        rope = cos, torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        mask = torch.zeros((slots, t), device=self.device)
        mask.masked_fill_(torch.arange(t, device=self.device)[None] > lengths[:, None], float("-inf"))
        rows = torch.arange(slots, device=self.device)
        for li in range(len(self.layers)):
            x = self._decode_layer(li, x, rope, prefix[li] if prefix is not None else None, keys[li], values[li],
                                   rows, lengths, mask)
        return pick(self.model.lm_head(self.inner.norm(x)))
