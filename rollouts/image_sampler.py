"""The MaskGIT-style image sampler of MMaDA's text-to-image generation (MaskGIT, Chang et al. 2022; MMaDA §2.2;
docs/design.md §4).

The answer is a grid of N image codes between ``<|soi|>`` and ``<|eoi|>``; all start masked. At step s of S:

    logits  = model(x)[answer positions, codebook ids]       (CFG: (1+w)·cond − w·uncond, uncond = empty caption)
    codes   = Gumbel-max sample at ``temperature``             (float64 noise; argmax at 0)
    conf    = log p(code) + τ_s·g,  τ_s = temperature·(1 − r)  (MaskGIT's annealed choice noise), g ~ Gumbel
    r       = (s+1)/S;  keep ⌊N·cos(π/2·r)⌋ codes masked       (at least 1 until the last step, 0 after it)
    commit every masked position except the least confident ones that stay masked

Committed codes are never re-masked. Logits are restricted to the codebook's ids, so only codes are committed.
Legend: steps → S, cfg_scale → w (published 3.5), temperature → sampling and choice temperature.
Shapes: B rows, P prompt positions (left-padded), N codes, T = P + N + 1 (suffix ``<|eoi|>``), K codebook size.
Knows nothing of training; the only model call is ``model(x).logits``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .text_sampler import gumbel_max_sample, model_logits, uniform


@dataclass
class ImageSamplerConfig:
    """Options of the MaskGIT image sampler; ``__post_init__`` rejects bad values with one clear error each."""

    steps: int = 16
    """S: denoising steps (published 15–50); at most N (one code per step at least)."""
    temperature: float = 1.0
    """Sampling temperature of the codes and scale of the choice noise (0 = greedy, no noise)."""
    cfg_scale: float = 0.0
    """w: classifier-free guidance (1+w)·cond − w·uncond with an empty-caption branch (published 3.5); 0 = off."""

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"image steps={self.steps!r} must be a positive integer")
        for key in ("temperature", "cfg_scale"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"image {key}={value!r} must be a finite number ≥ 0")


@dataclass
class ImageSamplerOutput:
    codes: torch.LongTensor
    """(B, N) codes in [0, codebook_size)."""
    commit_step: torch.LongTensor
    """(B, N) the step (0-based) at which each code was committed."""


def cosine_masked_counts(num_codes: int, steps: int) -> list[int]:
    """Codes still masked after each step: ⌊N·cos(π/2·(s+1)/S)⌋, at least 1 before the last step, 0 after it."""
    counts = [max(1, math.floor(num_codes * math.cos(math.pi / 2 * (s + 1) / steps))) for s in range(steps - 1)]
    return [min(c, num_codes - s - 1) for s, c in enumerate(counts)] + [0]


def codebook_logits(logits: torch.Tensor, offset: int, codebook_size: int) -> torch.Tensor:
    """Restrict (…, V) logits to the codebook's ids [offset, offset + K) → (…, K): index k is code k."""
    return logits[..., offset : offset + codebook_size]


def keep_least_confident(confidence: torch.Tensor, masked: torch.Tensor, keep: int) -> torch.Tensor:
    """bool (B, N): the ``keep`` least confident of the currently ``masked`` positions of each row (MaskGIT's
    ``mask_by_random_topk``). Committed positions are never chosen."""
    if keep == 0:
        return torch.zeros_like(masked)
    confidence = confidence.masked_fill(~masked, torch.inf)
    order = torch.argsort(confidence, dim=1, stable=True)[:, :keep]  # (B, keep) least confident first
    return torch.zeros_like(masked).scatter_(1, order, True) & masked


@torch.no_grad()
def generate_image_codes(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor | None,
    suffix_ids: torch.Tensor,
    *,
    num_codes: int,
    code_offset: int,
    codebook_size: int,
    mask_token_id: int,
    config: ImageSamplerConfig,
    unconditional_ids: torch.Tensor | None = None,
    unconditional_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> ImageSamplerOutput:
    """Sample N codes per left-padded prompt (B, P); ``suffix_ids`` (B, S) follow the codes (``<|eoi|>``).

    With ``config.cfg_scale > 0``, ``unconditional_ids`` / ``unconditional_mask`` (B, P) are the empty-caption
    prompts of the guidance branch, run in the same forward pass.
    """
    if config.steps > num_codes:
        raise ValueError(f"image steps={config.steps} exceed the {num_codes} codes of an image")
    if config.cfg_scale > 0 and unconditional_ids is None:
        raise ValueError("cfg_scale > 0 needs the unconditional (empty-caption) prompts")
    (B, P), N, device = prompt_ids.shape, num_codes, prompt_ids.device
    canvas = torch.full((B, N), mask_token_id, dtype=torch.long, device=device)
    x = torch.cat([prompt_ids, canvas, suffix_ids], dim=1)  # (B, T)
    ones = torch.ones(B, N + suffix_ids.shape[1], dtype=torch.long, device=device)
    full_mask = None if prompt_mask is None else torch.cat([prompt_mask, ones], dim=1)
    if config.cfg_scale > 0:
        x_uncond_prompt = unconditional_ids.to(device)
        uncond_mask = None if unconditional_mask is None else torch.cat([unconditional_mask.to(device), ones], dim=1)
        both_mask = None
        if full_mask is not None or uncond_mask is not None:
            both_mask = torch.cat([full_mask if full_mask is not None else torch.ones_like(x),
                                   uncond_mask if uncond_mask is not None else torch.ones_like(x)])
    window = slice(P, P + N)
    commit_step = torch.full((B, N), -1, dtype=torch.long, device=device)

    for s, still_masked in enumerate(cosine_masked_counts(N, config.steps)):
        if config.cfg_scale > 0:
            both = torch.cat([x, torch.cat([x_uncond_prompt, x[:, P:]], dim=1)])  # (2B, T)
            cond, uncond = codebook_logits(model_logits(model, both, both_mask)[:, window], code_offset,
                                           codebook_size).float().chunk(2)
            logits = (1 + config.cfg_scale) * cond - config.cfg_scale * uncond  # (B, N, K)
        else:
            logits = codebook_logits(model_logits(model, x, full_mask)[:, window], code_offset,
                                     codebook_size).float()  # (B, N, K)
        sampled = gumbel_max_sample(logits, config.temperature, generator)  # (B, N) codes
        log_p = torch.log_softmax(logits, dim=-1).gather(-1, sampled[..., None]).squeeze(-1).double()  # (B, N)
        choice_temperature = config.temperature * (1 - (s + 1) / config.steps)
        if choice_temperature > 0:
            gumbel = -torch.log(-torch.log(uniform(log_p.shape, generator, device).clamp(min=1e-300)))
            log_p = log_p + choice_temperature * gumbel
        masked = x[:, window] == mask_token_id  # (B, N)
        stay = keep_least_confident(log_p, masked, still_masked)
        commit = masked & ~stay
        x[:, window] = torch.where(commit, sampled + code_offset, x[:, window])
        commit_step.masked_fill_(commit, s)

    return ImageSamplerOutput(codes=x[:, window] - code_offset, commit_step=commit_step)
