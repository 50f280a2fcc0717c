"""Attention for padding-free training batches on CPUs: each packed sequence attends to itself only.

With ``padding_free`` TRL concatenates a batch's examples into one row and restarts the position ids at each
example. Under sdpa, transformers then builds a block-diagonal causal mask over the whole row and calls torch's CPU
flash-attention kernel with it: the kernel computes every block of the row (a mask cannot skip work) and its CPU
backward is slow (about 17 ms per layer for a 741-token row of nine examples on 2 cores: a fifth of the step).

:func:`use_packed_attention` registers an attention function that cuts the row into its examples at TRL's
``cu_seq_lens_q`` boundaries, lays them out as one padded batch ``[kv heads, group, examples, longest, head dim]``
(causal masking alone is exact there: an example's padding comes after its last token), and computes
softmax(QKᵀ)V with batched GEMMs in the autocast dtype and the softmax in fp32, with its own backward (torch's
softmax backward on the saved fp32 probabilities). Grouped-query heads are not repeated: each key/value head serves
its group by broadcasting. The saved probabilities cost memory a flash kernel does not (6 bytes per score): past
``MAX_KEPT`` scores per layer the backward recomputes them instead, and a row past ``MAX_SCORES`` keeps sdpa, as
does everything else (padded batches, dropout), with the mask transformers builds as before. Measured:
docs/results/training_speed.md.
"""

from __future__ import annotations

import functools
from typing import Any

NAME = "star_kit_packed_sdpa"
# Decoder families whose attention is plain causal softmax(QKᵀ·scaling)V over rotary q/k: no sliding window (checked
# below), logit soft-capping, attention sinks or ALiBi. Other models keep sdpa.
_PLAIN_ATTENTION = ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2", "granite")
# The padded layout's scores per layer (heads x examples x longest²): up to MAX_KEPT they are kept for the backward,
# in fp32 and the compute dtype (6 bytes each: 24 MiB per layer at this bound); up to MAX_SCORES the backward
# recomputes them instead (a few hundred MiB at once, nothing kept); a row that needs more keeps sdpa's kernel.
MAX_KEPT = 4 * 1024 * 1024
MAX_SCORES = 32 * 1024 * 1024


def use_packed_attention(model: Any, everywhere: bool = False) -> bool:
    """Switch ``model`` (a transformers causal LM, or a PEFT model around one) to the packed attention where it is
    exact (a plain-attention family, no sliding window) and pays (a CPU; ``everywhere``: any device). Returns whether
    it did. The mask transformers builds stays sdpa's, for the batches the packed path hands back to sdpa."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    config = model.config.get_text_config()
    if config.model_type not in _PLAIN_ATTENTION or config._attn_implementation != "sdpa":
        return False
    if getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True):
        return False
    if set(getattr(config, "layer_types", None) or ["full_attention"]) != {"full_attention"}:
        return False
    if next(model.parameters()).device.type != "cpu" and not everywhere:
        return False
    AttentionInterface.register(NAME, packed_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    config._attn_implementation = NAME
    return True


def packed_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """transformers' attention-function contract: query ``[1, heads, T, d]``, key/value ``[1, kv heads, T, d]``;
    returns (``[1, T, heads, d]``, None). Packed rows (TRL's ``cu_seq_lens_q`` over the whole row, self-attention,
    no dropout) take the padded path; anything else is transformers' sdpa with ``attention_mask``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    layout = _layout(query, key, kwargs, dropout, module)
    if layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return _function().apply(query, key, value, layout, scale), None


# The last row's layout, as one tuple (a single read, so another thread's row can never pair with this one's):
# (cu_seq_lens_q tensor, heads, device, layout). Every layer of one forward sees the same tensor.
_last: tuple | None = None


def _layout(query, key, kwargs, dropout, module):
    """(token -> padded position index, examples, longest, keep probabilities) for a packed row, or None for sdpa's
    path."""
    import torch

    global _last
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or (dropout and module.training):
        return None
    if kwargs.get("cu_seq_lens_k") is not None and kwargs["cu_seq_lens_k"] is not cu \
            and not torch.equal(kwargs["cu_seq_lens_k"], cu):
        return None
    last = _last
    if last is not None and last[0] is cu and last[1] == query.shape[1] and last[2] == query.device:
        return last[3]  # the same row in every layer: the index is built once per forward
    bounds = cu.tolist()
    total = query.shape[2]
    if len(bounds) < 2 or bounds[0] != 0 or bounds[-1] != total:
        return None
    lengths = [b - a for a, b in zip(bounds, bounds[1:])]
    examples, longest = len(lengths), max(lengths)
    scores = query.shape[1] * examples * longest * longest
    if scores > MAX_SCORES:
        layout = None
    else:
        lens = torch.tensor(lengths)
        starts = torch.tensor(bounds[:-1])
        offsets = torch.arange(total) - starts.repeat_interleave(lens)
        index = (torch.arange(examples) * longest).repeat_interleave(lens) + offsets
        layout = (index.to(query.device), examples, longest, scores <= MAX_KEPT)
    _last = (cu, query.shape[1], query.device, layout)
    return layout


@functools.lru_cache(maxsize=32)
def _causal(longest: int, device) -> Any:
    """The positions a padded example's query must not see (those after it)."""
    import torch

    return torch.ones(longest, longest, dtype=torch.bool, device=device).triu(1)


def _pad(x, index, examples: int, longest: int):
    """[heads, T, d] -> [heads, examples, longest, d], zeros after each example's last token."""
    out = x.new_zeros(x.shape[0], examples * longest, x.shape[-1])
    out.index_copy_(1, index, x)
    return out.view(x.shape[0], examples, longest, x.shape[-1])


def _compute_dtype(*tensors):
    import torch

    device = tensors[0].device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return torch.promote_types(torch.promote_types(tensors[0].dtype, tensors[1].dtype), tensors[2].dtype)


def _probs(q, k, longest: int):
    """softmax(q·kᵀ) over the padded layout, causal: fp32, and in the compute dtype for the GEMMs."""
    import torch

    scores = torch.matmul(q, k.transpose(-1, -2)).float()
    scores.masked_fill_(_causal(longest, q.device), float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return probs, probs.to(q.dtype)


@functools.cache
def _function():
    """The autograd function (made on first use: the trainer plugin loads without importing torch)."""
    import torch

    class PackedAttention(torch.autograd.Function):
        forward = staticmethod(_forward)
        backward = staticmethod(_backward)

    return PackedAttention


def _forward(ctx, query, key, value, layout, scale):
    import torch

    index, examples, longest, keep = layout
    heads, kv_heads, d = query.shape[1], key.shape[1], query.shape[-1]
    group = heads // kv_heads
    dtype = _compute_dtype(query, key, value)
    # scaled before the product (as sdpa's math kernel does), so neither pass scales a score tensor
    q = _pad((query[0] * scale).to(dtype), index, examples, longest).view(kv_heads, group, examples, longest, d)
    k = _pad(key[0].to(dtype), index, examples, longest).unsqueeze(1)  # [kv, 1, examples, longest, d]
    v = _pad(value[0].to(dtype), index, examples, longest).unsqueeze(1)
    with torch.autocast(query.device.type, enabled=False):
        probs, probs_low = _probs(q, k, longest)
        out = torch.matmul(probs_low, v)  # [kv, group, examples, longest, d]
    ctx.save_for_backward(q, k, v, index, *((probs, probs_low) if keep else ()))
    ctx.shape = (examples, longest, scale, query.dtype, key.dtype, value.dtype)
    out = out.view(heads, examples * longest, d).index_select(1, index)  # [heads, T, d]
    return out.transpose(0, 1).unsqueeze(0)  # [1, T, heads, d], in the compute dtype (as sdpa under autocast)


def _backward(ctx, grad_out):
    import torch

    q, k, v, index, *kept = ctx.saved_tensors
    examples, longest, scale, q_dtype, k_dtype, v_dtype = ctx.shape
    kv_heads, group, d = q.shape[0], q.shape[1], q.shape[-1]
    heads = kv_heads * group
    dtype = q.dtype
    g = _pad(grad_out[0].transpose(0, 1).to(dtype), index, examples, longest).view(q.shape)
    with torch.autocast(q.device.type, enabled=False):
        probs, probs_low = kept or _probs(q, k, longest)
        grad_v = torch.matmul(probs_low.transpose(-1, -2), g).sum(1)
        grad_p = torch.matmul(g, v.transpose(-1, -2)).float()
        grad_s = torch.ops.aten._softmax_backward_data(grad_p, probs, -1, torch.float32).to(dtype)
        grad_q = torch.matmul(grad_s, k).mul_(scale)
        grad_k = torch.matmul(grad_s.transpose(-1, -2), q).sum(1)  # q is scaled already

    def unpad(x, n, dt):
        return x.reshape(n, examples * longest, d).index_select(1, index).unsqueeze(0).to(dt)

    return unpad(grad_q, heads, q_dtype), unpad(grad_k, kv_heads, k_dtype), unpad(grad_v, kv_heads, v_dtype), \
        None, None


