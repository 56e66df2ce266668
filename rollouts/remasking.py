"""Which tokens and which positions a step commits: the ``remasking`` rules of LLaDA and Dream (docs/design.md §4).

LLaDA (``generate.py``): x0 by Gumbel-max at temperature τ, confidence = softmax(logits)[x0] (``low_confidence``) or
U(0, 1) (``random``), the k most confident masked positions of the block committed, k from the even split.

Dream (``generation_utils.py``, ``diffusion_generate`` / ``sample_tokens``), ``remasking`` = its ``alg``:

    p       = softmax(top_k(top_p(logits / τ)))        (no division at τ = 0; top_p applied when < 1, then top_k)
    x0      ~ p  (argmax at τ = 0)
    conf    = p[x0]                                    (maskgit_plus)
            | p(1) − p(2), the two largest             (topk_margin)
            | Σ_v p_v log(p_v + 1e-10), −entropy       (entropy)
    commit    the k most confident masked positions, or, with alg_temp α > 0, k positions drawn without replacement
              with probability softmax(conf / α)
    origin    each masked position is committed with probability 1 − s/t (all at the last step), x0 ~ p

and its step schedule (``step_schedule='dream'``): t_i = linspace(1, eps, N + 1)[i], s = t_{i+1}; step i of N
commits k_i = ⌊m_i (1 − s/t)⌋ of the m_i positions still masked (all of them at the last step). With blocks, as
Fast-dLLM's Dream sampler does, N is the steps per block and m_i counts the current block's masks.

Here Dream's rules read the model's masked-LM logits like LLaDA's (the Dream model class realigns its outputs; this
module shifts nothing), draw their randomness from the sampler's generator (Gumbel-max for x0, Gumbel-top-k for
alg_temp: the same distributions as Dream's ``Categorical`` / ``multinomial``) and compose with the block KV cache,
threshold / factor decoding (on the rule's own confidence; entropy's as exp(−H) ∈ (0, 1], the same order) and early
finish. Shapes: B rows, K block positions, V vocabulary; confidences −inf where a position is not masked.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .commit_rules import (
    chosen_token_probability,
    commit_count,
    gumbel_max_sample,
    random_confidence,
    select_commits,
    uniform,
)

if TYPE_CHECKING:
    from .text_sampler import SamplerConfig

STEP_SCHEDULES = ("llada", "dream")
DREAM_RULES = ("origin", "maskgit_plus", "topk_margin", "entropy")
"""The rules whose confidence reads Dream's sampling distribution p (τ, top_p, top_k applied) instead of the raw
logits."""


# ---- Dream's sampling distribution ---------------------------------------------------------------------------------


def keep_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus filter: −inf on every token outside the smallest most-probable set whose mass reaches ``top_p`` (the
    token that crosses it is kept, and always the most probable). Dream's ``top_p_logits``; ties keep index order.
    logits (..., V) → (..., V)."""
    ordered, order = logits.sort(dim=-1, descending=True, stable=True)  # (..., V)
    mass = ordered.softmax(dim=-1).cumsum(dim=-1)
    drop = torch.cat([torch.zeros_like(mass[..., :1], dtype=torch.bool), mass[..., :-1] > top_p], dim=-1)
    return logits.masked_fill(drop.scatter(-1, order, drop), -torch.inf)


def keep_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """−inf on every token below the k-th largest logit (ties with it are kept), Dream's ``top_k_logits``.
    logits (..., V) → (..., V)."""
    kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, -torch.inf)


def filter_tokens(logits: torch.Tensor, temperature: float, top_p: float | None, top_k: int | None) -> torch.Tensor:
    """The logits with −inf on the tokens that top_p / top_k rule out, decided on logits / τ as Dream does (top_p
    first, then top_k); the kept logits are unscaled, so ``gumbel_max_sample(·, τ)`` draws from Dream's p. Unchanged
    (the same tensor) when neither is set, so LLaDA's seeded draws stay as they were. (B, K, V) → (B, K, V)."""
    if (top_p is None or top_p >= 1) and top_k is None:
        return logits
    scaled = logits.float() / temperature if temperature > 0 else logits.float()
    if top_p is not None and top_p < 1:
        scaled = keep_top_p(scaled, top_p)
    if top_k is not None:
        scaled = keep_top_k(scaled, top_k)
    return logits.masked_fill(scaled == -torch.inf, -torch.inf)


def sampling_logits(filtered: torch.Tensor, temperature: float) -> torch.Tensor:
    """log p up to a constant: the filtered logits / τ (τ > 0), as Dream's ``sample_tokens`` divides before its
    softmax. (B, K, V) float32."""
    return filtered.float() / temperature if temperature > 0 else filtered.float()


# ---- Dream's confidences (same signature as LLaDA's; ``logits`` = ``sampling_logits``) -----------------------------


def top2_margin(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """p(1) − p(2), the gap between the two most probable tokens (``topk_margin``). (B, K, V) → (B, K)."""
    top2 = logits.topk(2, dim=-1).values  # (B, K, 2)
    p = torch.exp(top2 - torch.logsumexp(logits, dim=-1, keepdim=True))
    return p[..., 0] - p[..., 1]


def negative_entropy(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """Σ_v p_v log(p_v + 1e-10) ≤ 0 (``entropy``; Dream's 1e-10 keeps p = 0 tokens at 0). (B, K, V) → (B, K)."""
    p = logits.softmax(dim=-1)
    return (p * torch.log(p + 1e-10)).sum(dim=-1)


REMASKING = {
    "low_confidence": chosen_token_probability,
    "random": random_confidence,
    "origin": random_confidence,  # U(0, 1) per position, committed where below 1 − s/t
    "maskgit_plus": chosen_token_probability,
    "topk_margin": top2_margin,
    "entropy": negative_entropy,
}
"""``remasking`` name → its confidence (logits, x0, generator, rows) → (B, K): the choices of recipes, ``unigrpo
generate`` and the checks."""
CONFIDENCE_RULES = ("low_confidence", "maskgit_plus", "topk_margin", "entropy")
"""The rules whose confidence is a certainty of the model: threshold / factor decoding and alg_temp need one."""


def draw_tokens(logits: torch.Tensor, config: SamplerConfig, generator, rows=None) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 (B, K) and each position's confidence (B, K) float64 under ``config.remasking``, from the block's logits
    (B, K, V) (mask id already forbidden). Draw order: x0's Gumbel noise, then the rule's own (``random`` /
    ``origin``)."""
    filtered = filter_tokens(logits, config.temperature, config.top_p, config.top_k)
    x0 = gumbel_max_sample(filtered, config.temperature, generator, rows)
    source = sampling_logits(filtered, config.temperature) if config.remasking in DREAM_RULES else logits
    return x0, REMASKING[config.remasking](source, x0, generator, rows).to(torch.float64)


# ---- Dream's step schedule -----------------------------------------------------------------------------------------


def dream_transfer_fractions(steps: int, eps: float, device=None) -> torch.Tensor:
    """1 − s/t for each step (1 at the last): with t = linspace(1, eps, steps + 1) in float32 as Dream computes it,
    the share of the still-masked positions that step i commits. → (steps,) float32."""
    t = torch.linspace(1, eps, steps + 1, device=device)  # (steps + 1,)
    fractions = 1 - t[1:] / t[:-1]
    fractions[-1] = 1.0
    return fractions


def scheduled_count(llada_schedule: torch.Tensor, masked: torch.Tensor, step: int, config: SamplerConfig,
                    fractions: torch.Tensor) -> torch.Tensor:
    """Positions step ``step`` of a block commits per row (B,): LLaDA's even split, fixed at the block's start
    (``llada_schedule`` (B, S)), or Dream's ⌊m (1 − s/t)⌋ of the m positions still masked (``masked`` (B, K))."""
    if config.step_schedule == "dream":
        return (masked.sum(dim=1).float() * fractions[step]).floor().long()
    return llada_schedule[:, step]


# ---- which positions -----------------------------------------------------------------------------------------------


def threshold_confidence(confidence: torch.Tensor, remasking: str) -> torch.Tensor:
    """The confidence that threshold / factor decoding compares with c, in (0, 1]: the rule's own, but exp(−H) for
    ``entropy`` (monotone in −H, so the order of the positions is Dream's, and never above the top probability)."""
    if remasking != "entropy":
        return confidence
    return confidence.exp().masked_fill(confidence == -torch.inf, -torch.inf)  # unmasked positions stay −inf


def gumbel_top_k_scores(confidence: torch.Tensor, alg_temp: float, generator, rows=None) -> torch.Tensor:
    """confidence / α + Gumbel noise: the top k of these are k positions drawn without replacement with probability
    softmax(confidence / α) (the Gumbel-top-k trick), as Dream's ``multinomial`` over the masked positions; −inf
    stays −inf. (B, K) float64."""
    u = uniform(confidence.shape, generator, confidence.device, rows=rows)
    return confidence / alg_temp - torch.log(-torch.log(u))


def step_commits(confidence: torch.Tensor, masked: torch.Tensor, scheduled: torch.Tensor, step: int,
                 config: SamplerConfig, fractions: torch.Tensor, generator, rows=None) -> torch.Tensor:
    """The positions a step commits → bool (B, K). ``origin``: each masked position whose U(0, 1) is below
    1 − s/t. Otherwise the k best by confidence (k = the schedule's, raised by threshold / factor decoding), or k
    drawn by softmax(confidence / alg_temp)."""
    if config.remasking == "origin":
        return (confidence < fractions[step]) & masked
    k = commit_count(scheduled, threshold_confidence(confidence, config.remasking), config) if config.parallel \
        else scheduled
    if config.alg_temp:
        confidence = gumbel_top_k_scores(confidence, config.alg_temp, generator, rows)
    return select_commits(confidence, k) & masked


# ---- option checks -------------------------------------------------------------------------------------------------


def check_remasking_options(options: dict, key) -> None:
    """One ValueError for the first impossible remasking option (``remasking``, ``top_p``, ``top_k``, ``alg_temp``,
    ``step_schedule``, ``schedule_eps`` and how they combine with threshold / factor decoding); ``key(field)`` is the
    name the message gives each option. Called by ``check_sampler_options``."""
    remasking, top_p, top_k, alg_temp = (options.get(name) for name in ("remasking", "top_p", "top_k", "alg_temp"))
    schedule, eps = options.get("step_schedule", "llada"), options.get("schedule_eps", 1e-3)
    if remasking not in REMASKING:
        raise ValueError(f"{key('remasking')}={remasking!r} is not valid; choose one of {list(REMASKING)}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and not isinstance(top_p, bool) and 0 < top_p <= 1):
        raise ValueError(f"{key('top_p')}={top_p!r} must be a probability mass in (0, 1], or None (off)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"{key('top_k')}={top_k!r} must be a positive integer, or None (off)")
    if alg_temp is not None and not (isinstance(alg_temp, (int, float)) and not isinstance(alg_temp, bool)
                                     and math.isfinite(alg_temp) and alg_temp >= 0):
        raise ValueError(f"{key('alg_temp')}={alg_temp!r} must be a finite number ≥ 0, or None (commit the most "
                         f"confident positions)")
    if schedule not in STEP_SCHEDULES:
        raise ValueError(f"{key('step_schedule')}={schedule!r} is not valid; choose one of {list(STEP_SCHEDULES)}")
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 <= eps < 1):
        raise ValueError(f"{key('schedule_eps')}={eps!r} must be a number in [0, 1) (Dream's eps: 1e-3)")
    if remasking == "origin" and schedule != "dream":
        raise ValueError(f"{key('remasking')}='origin' commits each masked position with probability 1 − s/t of "
                         f"Dream's schedule; set {key('step_schedule')}='dream'")
    if alg_temp and remasking not in CONFIDENCE_RULES:
        raise ValueError(f"{key('alg_temp')}={alg_temp!r} draws positions by their confidence, which "
                         f"{key('remasking')}={remasking!r} does not have; set {key('alg_temp')}=None or one of "
                         f"{key('remasking')}={list(CONFIDENCE_RULES)}")
    parallel = options.get("threshold") is not None or options.get("factor") is not None
    if parallel and remasking not in CONFIDENCE_RULES:
        raise ValueError(f"{key('threshold')}/{key('factor')} decoding compares confidences, so it needs "
                         f"{key('remasking')}='low_confidence', 'maskgit_plus', 'topk_margin' or 'entropy', "
                         f"not {remasking!r}; or set {key('threshold')}=None")
    if parallel and alg_temp:
        raise ValueError(f"{key('threshold')}/{key('factor')} decoding commits the most confident positions, "
                         f"{key('alg_temp')}={alg_temp!r} draws them at random; set {key('alg_temp')}=None (or 0) or "
                         f"{key('threshold')}=None")
