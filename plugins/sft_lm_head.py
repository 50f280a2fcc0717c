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
log-softmax in fp32. Autograd does the backward (bf16 GEMMs under autocast, like every other layer). Its memory is
at most that of the model's own loss path (logits of the labelled positions only, not of every position).
"""

from __future__ import annotations

import functools
import types
from typing import Any

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
        logits = self.get_output_embeddings()(hidden[mask]).float()  # [labelled positions, vocab]
        log_z = torch.logsumexp(logits, dim=-1)
        token_log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
        with torch.no_grad():  # metrics only (TRL's SFT logs them)
            probs = torch.softmax(logits, dim=-1)
            entropy = log_z - (probs * logits).sum(-1)
            is_top1 = logits.argmax(-1) == targets
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
