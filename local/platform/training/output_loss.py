"""The output layer and the cross-entropy over label tokens as one fused step, a few dozen rows at a time.

Through the model, the label positions' logits (rows x 49k vocabulary) are materialised in the compute
dtype, copied to fp32 for the loss, read again for the accuracy's argmax, and on the way back their
gradient is built by log-softmax backward into a zero-filled tensor, copied back to the compute dtype and
multiplied by the output layer's weight: six passes over the largest tensor of the step. Here each chunk
of rows is multiplied, reduced (one ``max`` gives both the stable log-sum-exp's shift and the argmax),
turned into its gradient ``softmax - onehot`` in place while it is in cache, and multiplied back; the
backward pass only scales the stored input gradient (rows x hidden). The loss and gradients are the same
numbers (tests/functional/local/training/test_output_loss.py); measured with benchmarks/train_vs_trl.py.

Only for architectures whose causal-LM head is exactly ``lm_head(hidden)`` with a frozen, bias-free
weight (LoRA training; tied embeddings stay frozen); anything else goes through the model's own head.
"""

from __future__ import annotations

from typing import Any

import torch

# Their ...ForCausalLM.forward is logits = lm_head(hidden_states[:, kept]) and nothing else (no soft-capping,
# no logit scale), so computing the head here is the same function.
PLAIN_HEAD_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3"}
# 256 x 49k fp32 logits: 48 MiB at most at a time. Measured (fwd + bwd of 256 label rows, SmolLM2's head):
# fp32 147 ms at 256 rows, 145 at 128, 189 at 64 (the model's head: 205); bf16 82 / 91 / 95 (153).
CHUNK_ROWS = 256


def plain_head(model: Any, *, training: bool = True) -> tuple[torch.nn.Module, torch.Tensor] | None:
    """``(decoder, output weight)`` when the fused loss computes exactly what the model's head would.
    ``training``: the weight must also be frozen (the fused backward gives no gradient to it); forward only
    (evaluation), a trainable head is fine too."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_MODEL_TYPES:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = base.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None or (training and head.weight.requires_grad):
        return None
    return base.get_decoder(), head.weight


class LinearCrossEntropy(torch.autograd.Function):
    """``(summed cross-entropy, label tokens predicted right)`` of ``hidden @ weight.T`` against ``targets``;
    the gradient flows to ``hidden`` only (the weight is frozen)."""

    @staticmethod
    def forward(
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        want_grad = ctx.needs_input_grad[0]
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grads = []
        weight = weight.to(hidden.dtype)
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            for rows, wanted in zip(hidden.split(CHUNK_ROWS), targets.split(CHUNK_ROWS), strict=True):
                logits = (rows @ weight.t()).float()
                top, top_index = logits.max(dim=-1)
                correct += (top_index == wanted).sum()
                logits.sub_(top.unsqueeze(1)).exp_()  # exp(z - max): the softmax's numerators
                total = logits.sum(dim=-1)
                target_term = logits.gather(1, wanted.unsqueeze(1)).squeeze(1)
                loss += (total.log() - target_term.log()).sum()  # -log softmax(z)[target]
                if want_grad:
                    logits.div_(total.unsqueeze(1))
                    logits[torch.arange(wanted.numel(), device=logits.device), wanted] -= 1.0
                    grads.append(logits.to(hidden.dtype) @ weight)
        if want_grad:
            ctx.save_for_backward(torch.cat(grads) if grads else torch.zeros_like(hidden))
        ctx.mark_non_differentiable(correct)
        return loss, correct

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, _grad_correct: Any) -> tuple[Any, None, None]:
        (grad_hidden,) = ctx.saved_tensors
        return grad_hidden * grad_loss.to(grad_hidden.dtype), None, None


def fused_token_loss(
    decoder: torch.nn.Module,
    weight: torch.Tensor,
    inputs: dict[str, torch.Tensor],
    keep: torch.Tensor,
    wanted: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """The decoder's hidden states at the positions ``keep`` marks, through the fused head and loss."""
    hidden = decoder(**inputs, use_cache=False).last_hidden_state
    rows = hidden[keep]  # (label tokens, hidden), batch-then-position order, as ``wanted``
    loss, correct = LinearCrossEntropy.apply(rows, weight, wanted)
    return loss, int(correct)
