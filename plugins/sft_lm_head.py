"""The LM head and per-token log-probabilities of TRL's SFT loss on devices without Triton (CPU).

TRL's ``SFTTrainer`` patches the model's forward with a fused LM head (``fused_lm_head=True`` returns per-token
log-probabilities instead of logits). On CUDA it is a Triton kernel that scores only the labelled positions. Its
fallback for other devices scores *every* position (prompt and padding included), folds the vocabulary tiles with a
dozen full-width elementwise passes, recomputes the logits in the backward and runs the backward GEMMs in fp32 --
on a CPU with bf16 matrix units that is several times slower than the rest of the LM head. Measured on 2 cores with
SmolLM2-135M: about a quarter of each training step (docs/results/training_speed.md).

:func:`use_compact_lm_head` keeps TRL's contract (the same ``FusedCausalLMOutput`` fields, so ``SFTTrainer``'s loss,
``dft`` loss type, entropy and token-accuracy metrics are unchanged) and computes it the way the model's own
``labels=`` loss does: the backbone, then the LM head on the positions whose next-token label is not -100 only, the
log-softmax in fp32. Autograd does the GEMMs' backward (bf16 under autocast, like every other layer). The
vocabulary-wide part -- log-softmax, the target's log-probability, entropy, top-1, and its backward -- is one autograd
function over blocks of ``ROWS`` labelled positions: a block's fp32 temporaries stay in the cores' caches, where the
same ops over the whole ``[positions, vocab]`` tensor (logsumexp, softmax, their backward: a dozen passes of ~100 MB
each) went to memory (measured 573 -> 142 ms a step for 620 positions of a 49,152-token vocabulary on 2 cores:
docs/results/training_speed.md). It saves the probabilities in the logits' dtype for the backward (half the fp32
logits the autograd ops kept).
"""

from __future__ import annotations

import functools
import types
from typing import Any

# Labelled positions per block of the vocabulary-wide softmax on a CPU: 16 x 49,152 fp32 scores are 3 MiB.
ROWS = 16
# Config fields that change the logits (TRL's head applies them); a model with any of them keeps TRL's head.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier",
                     "logits_scaling")


def use_compact_lm_head(model: Any, everywhere: bool = False) -> bool:
    """Replace TRL's fused-head forward of ``model`` (already patched by ``SFTTrainer``) by the compact one, where
    TRL has no Triton kernel for the model's device (``everywhere``: on every device) and the model's logits are the
    plain LM head's. Returns whether it did. ``model`` is what TRL patched: the trainer's model, or its base model
    under PEFT."""
    import torch

    try:
        from trl.trainer.utils import FusedCausalLMOutput
    except ImportError:  # another TRL: keep its head
        return False
    if "forward" not in vars(model) or not hasattr(model, "base_model"):
        return False  # not patched by TRL, or no backbone to call
    config = model.config.get_text_config()
    if any(getattr(config, name, None) is not None for name in _LOGIT_TRANSFORMS):
        return False
    if getattr(config, "output_router_logits", False):
        return False  # MoE auxiliary loss: TRL's head computes it
    device = next(model.parameters()).device
    if device.type in ("cuda", "xpu") and not everywhere:
        return False  # TRL's Triton kernel scores the labelled positions only
    trl_forward = model.forward  # TRL's patched forward: the plain forward when fused_lm_head is False

    @functools.wraps(type(model).forward)  # the model's signature: generate() checks its kwargs against it
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        if not fused_lm_head:
            return trl_forward(*args, labels=labels, shift_labels=shift_labels, num_items_in_batch=num_items_in_batch,
                               **kwargs)
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:  # position t predicts label t + 1
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        targets = labels[mask]
        logits = self.get_output_embeddings()(hidden[mask])  # [labelled positions, vocab], the compute dtype
        token_log_probs, entropy, is_top1 = _function().apply(logits, targets)  # fp32; the last two: metrics only
        log_probs = token_log_probs.new_zeros(mask.shape).masked_scatter(mask, token_log_probs)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=entropy.new_zeros(mask.shape).masked_scatter(mask, entropy),
            is_top1=torch.zeros_like(mask).masked_scatter(mask, is_top1),
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
    return True


@functools.cache
def _function():
    """The autograd function (made on first use: the trainer plugin loads without importing torch)."""
    import torch

    class TokenLogProbs(torch.autograd.Function):
        forward = staticmethod(_forward)
        # its backward treats the saved probabilities as constants: a second derivative through it fails loudly
        backward = staticmethod(torch.autograd.function.once_differentiable(_backward))

    return TokenLogProbs


def _forward(ctx, logits, targets):
    """log softmax(logits)[target] per row, in fp32, with the entropy and whether the target is the top token."""
    import torch

    n = logits.shape[0]
    token = torch.empty(n, dtype=torch.float32, device=logits.device)
    entropy = torch.empty_like(token)
    top = torch.empty(n, dtype=torch.long, device=logits.device)
    probs = torch.empty_like(logits)
    block = ROWS if logits.device.type == "cpu" else max(n, 1)  # an accelerator: whole-tensor kernels, no loop
    for start in range(0, n, block):  # explicit dtypes and elementwise ops: nothing here is autocast's
        rows = slice(start, start + block)
        log_p = torch.log_softmax(logits[rows], dim=-1, dtype=torch.float32)
        token[rows] = log_p.gather(-1, targets[rows].unsqueeze(-1)).squeeze(-1)
        p = log_p.exp()
        entropy[rows] = -(p * log_p).sum(-1)
        top[rows] = log_p.argmax(-1)
        probs[rows] = p
    ctx.save_for_backward(probs, targets, token)
    is_top1 = top == targets
    ctx.mark_non_differentiable(entropy, is_top1)
    return token, entropy, is_top1


def _backward(ctx, grad_token, _entropy, _is_top1):
    """d log p_t / d logits = onehot(t) - p. The target's entry, g (1 - p_t), comes from the fp32 log-probability:
    from the saved (possibly bf16) p it would lose its digits where p_t is near 1."""
    import torch

    probs, targets, token = ctx.saved_tensors
    grad = torch.mul(probs, (-grad_token).to(probs.dtype).unsqueeze(-1))
    own = grad_token * -torch.expm1(token)  # 1 - p_t, exact near p_t = 1
    grad.scatter_(-1, targets.unsqueeze(-1), own.to(grad.dtype).unsqueeze(-1))
    return grad, None
