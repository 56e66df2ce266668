"""Group-relative advantages (MMaDA §2.3, UniGRPO; as in GRPO).

Legend: rewards ↔ r_i (one per answer), num_generations ↔ G (answers per prompt, stored consecutively),
advantages ↔ A_i = (r_i − mean_group(r)) / (std(r) + eps).
"""

from __future__ import annotations

import torch

SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(
    rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group", eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """A_i = (r_i − mean of its group) / (std + eps) → (advantages (N,), zero_std (N/G,) bool).

    ``scale_rewards``: ``group`` divides by the group's std, ``batch`` by the std over the whole batch, ``none``
    only centres (Dr. GRPO). A group whose rewards are all equal gets advantage exactly 0 (its centred rewards are
    0), never NaN; ``zero_std`` flags such groups for the ``frac_reward_zero_std`` metric.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}; valid: {SCALE_REWARDS}")
    if rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of num_generations={num_generations}")
    grouped = rewards.float().view(-1, num_generations)  # (P, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    group_std = grouped.std(dim=1, keepdim=True) if num_generations > 1 else torch.zeros_like(grouped[:, :1])
    zero_std = (group_std.squeeze(1) < 1e-8)
    if scale_rewards == "group":
        centred = centred / (group_std + eps)
    elif scale_rewards == "batch":
        batch_std = rewards.float().std() if rewards.numel() > 1 else rewards.new_zeros(())
        centred = centred / (batch_std + eps)
    centred = centred.masked_fill(zero_std[:, None], 0.0)  # exact zeros, even if float noise crept in
    return centred.view(-1), zero_std
