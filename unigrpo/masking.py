"""Structured noising of answers and the mask-ratio schedule of the inner steps (MMaDA §2.3, Algorithm 1).

Legend: num_iterations ↔ μ (gradient steps per batch of rollouts), num_levels ↔ T (discrete mask levels, 1000 in
the paper), t1 ↔ t_1 = ⌊r·T⌋ with r ~ U(0, 1), ratio ↔ p = t_n / T, eligible ↔ the answer positions that may enter
the loss, mask ↔ the positions replaced by the mask token in õ_{i,p}.
"""

from __future__ import annotations

import torch


def spaced_mask_ratios(t1: torch.Tensor, num_iterations: int, num_levels: int = 1000) -> torch.Tensor:
    """Algorithm 1: t_n = ⌊(n−1)/(μ−1)·(T − t_1) + t_1⌋ for n = 1..μ; ratio = t_n / T.

    t1 (N,) integer levels → ratios (μ, N): step 1 is the random light mask t_1, step μ the full mask T, evenly
    spaced in between ("uniformly spaced" masking, which the paper finds more stable than independent draws).
    """
    t1 = t1.to(torch.float64)
    if num_iterations == 1:
        return (t1 / num_levels)[None].float()
    n = torch.arange(num_iterations, dtype=torch.float64, device=t1.device)[:, None]  # (μ, 1) = n − 1
    t_n = torch.floor(n / (num_iterations - 1) * (num_levels - t1) + t1)  # (μ, N)
    return (t_n / num_levels).float()


def draw_spaced_ratios(num_answers, num_iterations, num_levels, generator=None, ratio_min=None, ratio_max=None):
    """``mask_schedule: spaced``: t_1 = ⌊r·T⌋ per answer, then Algorithm 1's sweep → ratios (μ, N)."""
    r = torch.rand(num_answers, generator=generator, dtype=torch.float64)
    ratios = spaced_mask_ratios(torch.floor(r * num_levels), num_iterations, num_levels)
    return clip_ratios(ratios, ratio_min, ratio_max)


def draw_uniform_ratios(num_answers, num_iterations, num_levels, generator=None, ratio_min=None, ratio_max=None):
    """``mask_schedule: uniform``: an independent p ~ U[ratio_min, ratio_max] per step and answer → (μ, N)."""
    low = 0.0 if ratio_min is None else ratio_min
    high = 1.0 if ratio_max is None else ratio_max
    r = torch.rand(num_iterations, num_answers, generator=generator, dtype=torch.float64)
    return (low + (high - low) * r).float()


def clip_ratios(ratios: torch.Tensor, ratio_min: float | None, ratio_max: float | None) -> torch.Tensor:
    """Clip ratios into [ratio_min, ratio_max] when those are set (docs/design.md §3.5)."""
    if ratio_min is None and ratio_max is None:
        return ratios
    return ratios.clamp(min=ratio_min, max=ratio_max)


MASK_SCHEDULES = {"spaced": draw_spaced_ratios, "uniform": draw_uniform_ratios}


def get_mask_schedule(name: str):
    if name not in MASK_SCHEDULES:
        raise ValueError(f"unknown mask_schedule {name!r}; valid: {sorted(MASK_SCHEDULES)}")
    return MASK_SCHEDULES[name]


def mask_answer_tokens(
    eligible: torch.Tensor, ratio: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Structured noising (docs/design.md §3.2): mask each answer position with probability p, at least one eligible.

    eligible (N, L) bool — answer positions that enter the loss (content and the first ``eos_in_loss`` EOS);
    ratio (N,) — p per answer. Every answer-canvas position (EOS padding included, as at generation time, when the
    whole canvas starts masked) is masked with probability p; if no eligible position was drawn, one eligible
    position is masked at random. The prompt is not an input here, so it can never be masked.
    Returns mask (N, L) bool.
    """
    N, L = eligible.shape
    u = torch.rand(N, L, generator=generator).to(eligible.device)
    mask = u < ratio.to(eligible.device)[:, None]
    needs_one = ~(mask & eligible).any(dim=1) & eligible.any(dim=1)
    if needs_one.any():
        # Pick one eligible position uniformly: the eligible position with the largest fresh uniform score.
        score = torch.rand(N, L, generator=generator).to(eligible.device).masked_fill(~eligible, -1.0)
        forced = torch.zeros_like(mask).scatter_(1, score.argmax(dim=1, keepdim=True), True)
        mask = mask | (forced & needs_one[:, None])
    return mask


def loss_eligible_positions(completion_ids: torch.Tensor, eos_token_id: int | None, eos_in_loss: int = 1) -> torch.Tensor:
    """(N, L) bool: answer tokens before the first EOS plus the first ``eos_in_loss`` EOS tokens (docs/design.md §3.8).

    Answers are fixed-length canvases padded with EOS after the first EOS; keeping every EOS in the loss lets the
    padding dominate it.
    """
    if eos_token_id is None:
        return torch.ones_like(completion_ids, dtype=torch.bool)
    is_eos = completion_ids == eos_token_id
    eos_rank = torch.cumsum(is_eos.long(), dim=1)  # 1 at the first EOS, 2 at the second, …
    return ~is_eos | (eos_rank <= eos_in_loss)
