"""wd1: ratio-free weighted policy optimisation for masked-diffusion LMs (Tang et al. 2025, arXiv 2507.08838).

The policy objective is a weighted log-likelihood of the sampled answers: within each group of G answers to one
prompt, answer i gets a positive weight w⁺_i = softmax_j(ψ·A_j)_i and a negative weight w⁻_i = softmax_j(−ψ·A_j)_i,
and the loss is

    ℓ_i = −(w⁺_i − w⁻_i) · log π_θ(o_i | q)

so better-than-average answers are pulled up, worse ones pushed down, and no ratio π_θ / π_θold is ever formed:
only the current policy's likelihood is estimated, once per inner step. log π_θ is d1's one-step estimate (the
whole answer masked, each prompt token masked with ``p_mask_prompt``; the sum of the answer's token log-probs), so
the noising is ``D1Estimator``'s. No KL term (the published code has none), hence ``beta: 0``.

Legend: advantages ↔ A_i (the harness's group advantages; the published code uses r_i − mean(r), i.e.
``scale_rewards: none``), psi ↔ ψ (``wd1_psi``; the published code uses 1), weights ↔ w⁺ − w⁻.
Source: the paper's weighted objective (§3); github.com/xiaohangt/wd1, ``wd1/trainers/rev_grpo_trainer.py``
(``compute_loss``: softmax of ±A over the answers, loss −Σ w⁺·Σ_t log p + Σ w⁻·Σ_t log p).
"""

from __future__ import annotations

import torch

from .estimator_d1 import D1Estimator
from .likelihood import NoisedView


def wd1_weights(advantages: torch.Tensor, group_size: int, psi: float = 1.0) -> torch.Tensor:
    """w⁺ − w⁻ per answer: advantages (N,) with each prompt's G = ``group_size`` answers consecutive → (N,).

    Each group's weights sum to 0 (w⁺ and w⁻ each sum to 1), so a group whose answers all scored the same gets
    weight 0 everywhere, as its advantages would in GRPO."""
    grouped = psi * advantages.view(-1, group_size)  # (N/G, G)
    return (torch.softmax(grouped, dim=1) - torch.softmax(-grouped, dim=1)).reshape(-1)


def wd1_answer_loss(token_logps: torch.Tensor, score_mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ℓ_i = −(w⁺_i − w⁻_i)·Σ_t log p_θ(o_t | q̃): token_logps / score_mask (R, L), weights (R,) → (R,).

    The weights are constants (they come from the rewards), so the gradient is that of a weighted likelihood."""
    return -weights.detach() * (token_logps * score_mask.float()).sum(-1)


class WD1Estimator(D1Estimator):
    """d1's one-step view, scored by wd1's ratio-free weighted objective (``policy_loss``)."""

    name = "wd1"
    options = ("p_mask_prompt", "wd1_psi")
    uses_ratio = False  # no θ_old pass: the objective needs only the current policy's likelihood

    def __init__(self, p_mask_prompt: float = 0.15, wd1_psi: float = 1.0):
        super().__init__(p_mask_prompt)
        if not wd1_psi > 0:
            raise ValueError(f"wd1_psi={wd1_psi} must be > 0 (the temperature ψ of wd1's softmax weights)")
        self.psi = wd1_psi

    def policy_loss(self, token_logps: torch.Tensor, view: NoisedView, advantages: torch.Tensor,
                    answer_index: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """token_logps (R, L) of the view (one row per answer), advantages (N,) of the whole micro-batch,
        answer_index (R,) each row's answer in it → (loss per answer (R,), its answer index (R,))."""
        weights = wd1_weights(advantages, group_size, self.psi)[answer_index]  # (R,)
        return wd1_answer_loss(token_logps, view.score_mask, weights), answer_index
