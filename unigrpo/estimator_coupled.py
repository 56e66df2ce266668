"""The coupled-sampling estimator (Gong et al. 2025, DiffuCoder's coupled-GRPO).

Each answer is scored on two rows with complementary masks: row 1 masks the answer positions drawn at the step's
ratio p (at least one eligible position), row 2 masks exactly the others. Every answer token is then masked — and
scored — exactly once per pair, which removes the variance of *which* tokens were scored at the cost of a second
forward row. The prompt and suffix are never masked. Rows: R = 2N, ``answer_index`` = [0…N−1, 0…N−1].
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView
from .masking import mask_answer_tokens


class CoupledEstimator:
    name = "coupled"

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L), ratio (N,) → view."""
        N = completion_ids.shape[0]
        first = mask_answer_tokens(eligible, ratio, generator)  # (N, L)
        masks = torch.cat([first, ~first])  # (2N, L): complementary
        answers = completion_ids.repeat(2, 1).masked_fill(masks, mask_token_id)
        prompts = prompt_ids.repeat(2, 1)
        suffix = answers[:, :0] if suffix_ids is None else suffix_ids.repeat(2, 1)
        attention_mask = None
        if prompt_mask is not None and not bool(prompt_mask.all()):
            attention_mask = torch.cat([prompt_mask.repeat(2, 1), torch.ones_like(answers), torch.ones_like(suffix)],
                                       dim=1)
        return NoisedView(
            input_ids=torch.cat([prompts, answers, suffix], dim=1),
            attention_mask=attention_mask,
            score_mask=masks & eligible.repeat(2, 1),
            answer_index=torch.arange(N, device=completion_ids.device).repeat(2),
            mask_ratio=torch.cat([ratio, 1 - ratio]),
            suffix_length=suffix.shape[1],
        )
