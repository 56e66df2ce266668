"""VRPO-style variance reduction of UniGRPO's likelihood estimate (LLaDA 1.5, Zhu et al. 2025, arXiv 2505.19223).

VRPO reduces the variance of a masked-diffusion model's log-likelihood estimate with three unbiased changes; here
they are applied to UniGRPO's estimate (docs/design.md §3.2):

1. **Increased budget**: K = ``vrpo_num_masks`` noised rows per answer instead of one (K forward rows per answer).
2. **Optimal allocation**: each row has its *own* mask ratio (one mask per timestep, n_t = K, n_mask = 1), spread
   evenly over (0, 1] by rotating the step's ratio p: row k masks at ``t_k = frac(p + k/K)`` (1 where that is 0).
   The inner steps' schedule (Algorithm 1's sweep of p) still moves every row, and the K ratios are stratified
   (exactly one in each interval of width 1/K), which lowers the variance further than K independent draws.
3. **Antithetic sampling**: θ, θ_old and the reference read the *same* K views — true of every estimator here.

The answer's score is then read from K·N rows (row k·N + i scores answer i); with ``loss_type: grpo`` an answer's
loss averages over all its scored tokens, i.e. over the K views. K = 1 is UniGRPO exactly. ``coupled`` is the
K = 2 relative with complementary rather than independent masks.
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView, assemble_view
from .masking import mask_answer_tokens


def stratified_ratios(ratio: torch.Tensor, num_masks: int) -> torch.Tensor:
    """(N,) step ratios p → (K·N,) ratios t_k = frac(p + k/K) in (0, 1] (0 read as 1), row k·N + i for answer i."""
    shifts = torch.arange(num_masks, dtype=torch.float64, device=ratio.device)[:, None] / num_masks  # (K, 1)
    t = torch.remainder(ratio.double()[None] + shifts, 1.0)  # (K, N)
    return t.masked_fill(t == 0, 1.0).float().reshape(-1)


class VRPOEstimator:
    name = "vrpo"
    options = ("vrpo_num_masks",)

    def __init__(self, vrpo_num_masks: int = 2):
        if isinstance(vrpo_num_masks, bool) or not isinstance(vrpo_num_masks, int) or vrpo_num_masks < 1:
            raise ValueError(f"vrpo_num_masks={vrpo_num_masks!r} must be an integer ≥ 1 (noised rows per answer)")
        self.num_masks = vrpo_num_masks

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """K rows per answer."""
        return self.num_masks

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L), ratio (N,) → view of
        K·N rows, row k·N + i = answer i masked at t_k, one independent mask each."""
        N, K = completion_ids.shape[0], self.num_masks
        ratios = stratified_ratios(ratio, K)  # (K·N,)
        answer_index = torch.arange(N, device=completion_ids.device).repeat(K)  # (K·N,)
        rows_eligible = eligible[answer_index]
        mask = mask_answer_tokens(rows_eligible, ratios, generator)  # (K·N, L)
        answers = completion_ids[answer_index].masked_fill(mask, mask_token_id)
        return assemble_view(prompt_ids, prompt_mask, answers, mask & rows_eligible, ratios, answer_index, suffix_ids)
