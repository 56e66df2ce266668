"""The UniGRPO objective (MMaDA Eq. 5) per masked token, and the loss normalisations.

Legend: logps ↔ log p_θ(o_t | q, õ_p), old_logps ↔ log p_θold(…) on the same õ_p, ref_logps ↔ log p_ref(…),
advantages ↔ A_i broadcast over the tokens of answer i, epsilon_low/high ↔ ε_low/ε_high, beta ↔ β.
"""

from __future__ import annotations

import torch


def importance_ratio(logps: torch.Tensor, old_logps: torch.Tensor) -> torch.Tensor:
    """ρ = exp(log p_θ − log p_θold), per token."""
    return torch.exp(logps - old_logps)


def clipped_surrogate(
    logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, epsilon_low: float, epsilon_high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """−min(ρ·A, clip(ρ, 1−ε_low, 1+ε_high)·A) per token → (loss (R, L), clipped (R, L) bool).

    advantages (R, 1) or (R, L). ``clipped`` marks tokens where the clipped term is the one taken (PPO's
    clip fraction, split by the sign of A in the trainer's metrics).
    """
    ratio = importance_ratio(logps, old_logps)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * advantages
    return -torch.min(unclipped, clipped), clipped < unclipped


def k3_kl(ref_logps: torch.Tensor, logps: torch.Tensor) -> torch.Tensor:
    """KL_k3 = exp(log p_ref − log p_θ) − (log p_ref − log p_θ) − 1 per token (≥ 0, unbiased for KL(θ‖ref))."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1


def per_token_loss(logps, old_logps, ref_logps, advantages, epsilon_low, epsilon_high, beta):
    """ℓ_t = −min(ρA, clip(ρ)A) + β·KL_k3 (MMaDA Eq. 5) → (loss (R, L), kl (R, L) or None, clipped (R, L))."""
    loss, clipped = clipped_surrogate(logps, old_logps, advantages, epsilon_low, epsilon_high)
    kl = None
    if beta != 0.0:
        kl = k3_kl(ref_logps, logps)
        loss = loss + beta * kl
    return loss, kl, clipped


# ---- normalisations: per-token losses (R, L) with score mask → scalar. One signature for all entries. ----
# Under data parallelism (and accumulation) each micro-batch is normalised alone and the gradients are averaged:
# grpo and dr_grpo (micro-batches of equal size) then equal the whole-batch loss, bnpo is a mean of micro-batch
# token means (as in TRL), and dapo divides by the whole step's token count (``global_tokens``).
def _per_answer_sums(values, score_mask, answer_index, num_answers):
    mask = score_mask.float()
    sums = values.new_zeros(num_answers).index_add(0, answer_index, (values * mask).sum(-1))
    counts = mask.new_zeros(num_answers).index_add(0, answer_index, mask.sum(-1))
    return sums, counts


def grpo_normalise(values, score_mask, answer_index, num_answers, max_len, global_tokens=None):
    """``grpo``: mean over each answer's masked tokens, then mean over answers (MMaDA Eq. 5)."""
    sums, counts = _per_answer_sums(values, score_mask, answer_index, num_answers)
    return (sums / counts.clamp(min=1.0)).mean()


def bnpo_normalise(values, score_mask, answer_index, num_answers, max_len, global_tokens=None):
    """``bnpo``: sum over all masked tokens of the batch / their number."""
    mask = score_mask.float()
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def dr_grpo_normalise(values, score_mask, answer_index, num_answers, max_len, global_tokens=None):
    """``dr_grpo`` (Dr. GRPO): sum over masked tokens / (answers × canvas length), a length-free constant."""
    return (values * score_mask.float()).sum() / (num_answers * max_len)


def dapo_normalise(values, score_mask, answer_index, num_answers, max_len, global_tokens=None):
    """``dapo``: sum over masked tokens / ``global_tokens`` (DAPO's token-level mean over the whole batch).

    The trainer passes the masked-token count T of the whole optimizer step (every accumulation step and process)
    divided by its number of micro-batches W: after the Trainer's division by the accumulation steps and DDP's
    mean over processes, the step's gradient is that of Σ ℓ / T, whatever the split. Without ``global_tokens`` the
    count is the micro-batch's own (= ``bnpo``).
    """
    mask = score_mask.float()
    denominator = mask.sum() if global_tokens is None else torch.as_tensor(global_tokens, dtype=mask.dtype)
    return (values * mask).sum() / denominator.clamp(min=1.0)


LOSS_TYPES = {"grpo": grpo_normalise, "bnpo": bnpo_normalise, "dr_grpo": dr_grpo_normalise, "dapo": dapo_normalise}


def get_loss_normaliser(name: str):
    if name not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {name!r}; valid: {sorted(LOSS_TYPES)}")
    return LOSS_TYPES[name]
