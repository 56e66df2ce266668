"""The coupled-sampling estimator (Gong et al. 2025, DiffuCoder's coupled-GRPO).

Each answer is scored on two rows with complementary masks: row 1 masks the answer positions drawn at the step's
ratio p (at least one eligible position), row 2 masks exactly the others. Every answer token is then masked — and
scored — exactly once per pair, which removes the variance of *which* tokens were scored at the cost of a second
forward row. The prompt and suffix are never masked. Rows: R = 2N, ``answer_index`` = [0…N−1, 0…N−1].
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView, assemble_view
from .masking import mask_answer_tokens


class CoupledEstimator:
    name = "coupled"
    options: tuple[str, ...] = ()

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """Two rows per answer: the complementary pair."""
        return 2

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L), ratio (N,) → view."""
        N = completion_ids.shape[0]
        first = mask_answer_tokens(eligible, ratio, generator)  # (N, L)
        masks = torch.cat([first, ~first])  # (2N, L): complementary
        answer_index = torch.arange(N, device=completion_ids.device).repeat(2)  # (2N,)
        answers = completion_ids[answer_index].masked_fill(masks, mask_token_id)
        return assemble_view(prompt_ids, prompt_mask, answers, masks & eligible[answer_index],
                             torch.cat([ratio, 1 - ratio]), answer_index, suffix_ids)
