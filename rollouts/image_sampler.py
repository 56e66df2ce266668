"""The image samplers of MMaDA's text-to-image generation (MaskGIT, Chang et al. 2022; MMaDA §2.2;
docs/design.md §4), selected by ``ImageSamplerConfig.mode``.

The answer is a grid of N image codes between ``<|soi|>`` and ``<|eoi|>``; all start masked. At step s of S:

    logits  = model(x)[answer positions, codebook ids]       (CFG: (1+w)·cond − w·uncond, uncond = empty caption)
    codes   = a sample of softmax(logits) for every masked position
    conf    = log p(code) + τ_s·g, g ~ Gumbel                 (choice noise)
    r       = (s+1)/S;  keep about N·cos(π/2·r) codes masked  (the least confident; the rest are committed)

The two modes differ in four details:

    mode      codes drawn at   τ_s                          masked after step s                       ties at the cut
    maskgit   temperature τ    τ·(1 − r) (annealed)          ⌊N·cos(π/2·r)⌋ in float64, exactly that   stable order
    mmada     temperature 1    τ·Π_{j≤s}(1 − (j+1)/S)        ⌊N·cos(π/2·r)⌋ in float32, ≤ that         stay committed

``mmada`` is MMaDA's published ``t2i_generate`` (Gen-Verse/MMaDA ``models/modeling_mmada.py`` with
``models/sampling.py``'s ``cosine_schedule`` and ``mask_by_random_topk``): ``multinomial(softmax(logits))`` whatever
the temperature; the temperature variable is overwritten by ``temperature·(1 − r)`` each step, so the choice noise
compounds; the schedule is a float32 ``cos`` floored (⌊16·cos(π/3)⌋ = 7, not 8); a position stays masked when its
confidence is strictly below the cut-off, the (n+1)-th smallest confidence, so ties leave fewer masked. It gives
MMaDA's tokens under the same random draws (``multinomial``, then float32 uniforms, from the one generator).
``maskgit`` is this project's earlier variant: codes by float64 Gumbel-max at τ (argmax at 0), exactly the
scheduled count masked. Committed codes are never re-masked (``mmada``: unless every code is already committed).
Legend: steps → S, cfg_scale → w (published 3.5), temperature → τ.
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
    """Options of the image sampler; ``__post_init__`` rejects bad values with one clear error each."""

    steps: int = 16
    """S: denoising steps (published 15–50); at most N (one code per step at least)."""
    temperature: float = 1.0
    """τ: scale of the choice noise; ``maskgit`` also samples the codes at τ (0 = greedy, no noise)."""
    cfg_scale: float = 0.0
    """w: classifier-free guidance (1+w)·cond − w·uncond with an empty-caption branch (published 3.5); 0 = off."""
    mode: str = "mmada"
    """``mmada``: MMaDA's published ``t2i_generate``, token for token; ``maskgit``: the annealed variant (module
    docstring)."""

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"image steps={self.steps!r} must be a positive integer")
        for key in ("temperature", "cfg_scale"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"image {key}={value!r} must be a finite number ≥ 0")
        if self.mode not in IMAGE_SAMPLERS:
            raise ValueError(f"image_sampler={self.mode!r} is not one of {sorted(IMAGE_SAMPLERS)}")


@dataclass
class ImageSamplerOutput:
    codes: torch.LongTensor
    """(B, N) codes in [0, codebook_size)."""
    commit_step: torch.LongTensor
    """(B, N) the step (0-based) at which each code was (last) committed."""


def cosine_masked_counts(num_codes: int, steps: int) -> list[int]:
    """``maskgit``: codes still masked after each step, ⌊N·cos(π/2·(s+1)/S)⌋ in float64, at least 1 before the last
    step, 0 after it."""
    counts = [max(1, math.floor(num_codes * math.cos(math.pi / 2 * (s + 1) / steps))) for s in range(steps - 1)]
    return [min(c, num_codes - s - 1) for s, c in enumerate(counts)] + [0]


def mmada_masked_count(num_codes: int, step: int, steps: int) -> int:
    """``mmada``: ⌊N·cos(π/2·r)⌋ with r = (s+1)/S as a float32 tensor, as MMaDA's ``cosine_schedule`` computes it.

    float32 rounds cos(π/3) below ½, so ⌊16·cos(π/3)⌋ = 7 where float64 gives 8; at r = 1 the float32 cosine is
    slightly negative and the count is −1 (the caller clamps it)."""
    ratio = torch.tensor((step + 1) / steps, dtype=torch.float32)
    return int((num_codes * torch.cos(ratio * math.pi * 0.5)).floor())


def compounded_choice_temperature(temperature: float, step: int, steps: int) -> float:
    """``mmada``: τ·Π_{j≤s}(1 − (j+1)/S), the choice temperature of step s when ``temperature = temperature·(1 − r)``
    overwrites itself every step (``t2i_generate``); multiplied in the same order, so the float is the same."""
    for j in range(step + 1):
        temperature = temperature * (1.0 - 1.0 * (j + 1) / steps)
    return temperature


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


# ---- one step per mode, all with the same signature: (logits, codes, masked, step, config, generator) → ----------
# ---- (sampled codes (B, N), committed codes kept; stay (B, N) bool, the positions masked for the next step) ------


def maskgit_step(logits, codes, masked, step: int, config: ImageSamplerConfig, generator):
    """Float64 Gumbel-max codes at τ, choice noise τ·(1 − r), exactly ``cosine_masked_counts`` stay masked."""
    sampled = torch.where(masked, gumbel_max_sample(logits, config.temperature, generator), codes)  # (B, N)
    log_p = torch.log_softmax(logits, dim=-1).gather(-1, sampled[..., None]).squeeze(-1).double()  # (B, N)
    choice_temperature = config.temperature * (1 - (step + 1) / config.steps)
    if choice_temperature > 0:
        gumbel = -torch.log(-torch.log(uniform(log_p.shape, generator, log_p.device).clamp(min=1e-300)))
        log_p = log_p + choice_temperature * gumbel
    still_masked = cosine_masked_counts(codes.shape[1], config.steps)[step]
    return sampled, keep_least_confident(log_p, masked, still_masked)


def gumbel_noise_fp32(shape, generator, device) -> torch.Tensor:
    """−log(−log u), u ~ U[0, 1) in float32 with both logs clamped at 1e-20 (MMaDA ``sampling.gumbel_noise``)."""
    u = uniform(shape, generator, device, dtype=torch.float32)
    return -torch.log((-torch.log(u.clamp(min=1e-20))).clamp(min=1e-20))


def mmada_step(logits, codes, masked, step: int, config: ImageSamplerConfig, generator):
    """MMaDA ``t2i_generate``: codes ~ softmax(logits) (temperature 1), confidence log p + τ_s·g with τ_s compounding,
    the float32 schedule's count clamped to [1, #masked − 1], positions strictly below the cut-off stay masked."""
    B, N, K = logits.shape
    probs = logits.softmax(dim=-1)  # (B, N, K)
    drawn = torch.multinomial(probs.reshape(-1, K), 1, generator=generator)[:, 0].view(B, N)
    sampled = torch.where(masked, drawn, codes)  # (B, N)
    chosen = probs.gather(-1, sampled[..., None]).squeeze(-1)
    chosen = torch.where(masked, chosen, torch.finfo(chosen.dtype).max)  # committed codes: most confident
    count = torch.full((B, 1), mmada_masked_count(N, step, config.steps), device=logits.device)
    count = torch.clamp(torch.minimum(masked.sum(dim=1, keepdim=True) - 1, count), min=1, max=N - 1)  # (B, 1); N − 1:
    # the published gather fails at N = 1
    choice_temperature = compounded_choice_temperature(config.temperature, step, config.steps)
    confidence = torch.log(chosen.clamp(min=1e-20)) + choice_temperature * gumbel_noise_fp32((B, N), generator,
                                                                                              logits.device)
    cut_off = torch.sort(confidence, dim=-1).values.gather(1, count)  # (B, 1) the (count+1)-th smallest
    return sampled, confidence < cut_off


IMAGE_SAMPLERS = {"maskgit": maskgit_step, "mmada": mmada_step}


def guided_codebook_logits(model, x, mask, uncond_prompt, both_mask, config: ImageSamplerConfig, window: slice,
                           code_offset: int, codebook_size: int) -> torch.Tensor:
    """Codebook logits (B, N, K) of the answer ``window`` in float32; with CFG, (1+w)·cond − w·uncond where the
    unconditional rows are x with the prompt replaced by ``uncond_prompt`` (one forward for both halves)."""
    if config.cfg_scale == 0:
        return codebook_logits(model_logits(model, x, mask)[:, window], code_offset, codebook_size).float()
    both = torch.cat([x, torch.cat([uncond_prompt, x[:, uncond_prompt.shape[1]:]], dim=1)])  # (2B, T)
    cond, uncond = codebook_logits(model_logits(model, both, both_mask)[:, window], code_offset,
                                   codebook_size).float().chunk(2)
    return (1 + config.cfg_scale) * cond - config.cfg_scale * uncond


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
    prompts of the guidance branch, run in the same forward pass. The codes are the last step's samples (every
    position still masked then takes its sample, as ``t2i_generate`` returns them).
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
    uncond_prompt, both_mask = None, None
    if config.cfg_scale > 0:
        uncond_prompt = unconditional_ids.to(device)
        uncond_mask = None if unconditional_mask is None else torch.cat([unconditional_mask.to(device), ones], dim=1)
        if full_mask is not None or uncond_mask is not None:
            both_mask = torch.cat([full_mask if full_mask is not None else torch.ones_like(x),
                                   uncond_mask if uncond_mask is not None else torch.ones_like(x)])
    window, step_fn = slice(P, P + N), IMAGE_SAMPLERS[config.mode]
    commit_step = torch.full((B, N), -1, dtype=torch.long, device=device)

    for s in range(config.steps):
        logits = guided_codebook_logits(model, x, full_mask, uncond_prompt, both_mask, config, window, code_offset,
                                        codebook_size)  # (B, N, K)
        masked = x[:, window] == mask_token_id  # (B, N)
        sampled, stay = step_fn(logits, x[:, window] - code_offset, masked, s, config, generator)
        commit_step.masked_fill_(masked & ~stay, s)
        x[:, window] = torch.where(stay, mask_token_id, sampled + code_offset)

    commit_step.masked_fill_(x[:, window] == mask_token_id, config.steps - 1)  # taken from the last samples
    return ImageSamplerOutput(codes=sampled, commit_step=commit_step)
