"""The d1 / diffu-GRPO likelihood estimator (Zhao et al. 2025, "d1: Scaling Reasoning in Diffusion LLMs via RL").

One forward pass per answer with the *whole* answer masked and each real prompt token masked with probability
``p_mask_prompt`` (d1: 0.15, redrawn at every inner step): log π(o | q) ≈ Σ_t log p_θ(o_t | q̃, all masks). Every
answer position that enters the loss is scored; the step's mask ratio is not used (it is 1). Padding and the suffix
(``<|eoi|>``) are never masked.
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView, assemble_view


class D1Estimator:
    name = "d1"
    options = ("p_mask_prompt",)

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """One row per answer (the whole answer masked)."""
        return 1

    def __init__(self, p_mask_prompt: float = 0.15):
        if not 0.0 <= p_mask_prompt < 1.0:
            raise ValueError(f"p_mask_prompt={p_mask_prompt} must lie in [0, 1)")
        self.p_mask_prompt = p_mask_prompt

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L); ratio ignored → view."""
        N = completion_ids.shape[0]
        real = torch.ones_like(prompt_ids, dtype=torch.bool) if prompt_mask is None else prompt_mask.bool()
        u = torch.rand(prompt_ids.shape, generator=generator).to(prompt_ids.device)
        noised_prompt = prompt_ids.masked_fill((u < self.p_mask_prompt) & real, mask_token_id)
        answer = torch.full_like(completion_ids, mask_token_id)
        return assemble_view(noised_prompt, prompt_mask, answer, eligible.clone(), torch.ones(N),
                             suffix_ids=suffix_ids)
