"""The commit rules of the LLaDA sampler (docs/design.md §4): the step schedule, the random draws, LLaDA's two
confidences, the per-row top-k and Fast-dLLM's parallel commit counts — small pure functions that
``rollouts/text_sampler.py`` calls once per step and re-exports (``from rollouts.text_sampler import …`` keeps
working). Dream's rules build on these in ``rollouts/remasking.py``.

Shapes: B rows, K block positions, V vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .text_sampler import SamplerConfig


# ---- schedule ------------------------------------------------------------------------------------------------------


def num_transfer_tokens(masked_count: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each of ``steps`` steps (LLaDA ``generate.py``, ``get_num_transfer_tokens``).

    LLaDA's linear noise schedule makes the expected number of tokens unmasked per step constant, so each row's
    masked count is split evenly and the remainder goes to the first steps. masked_count (B,) → (B, steps).
    """
    base = masked_count[:, None] // steps  # (B, 1)
    remainder = masked_count[:, None] % steps  # (B, 1)
    return base + (torch.arange(steps, device=masked_count.device) < remainder).long()  # (B, steps)


# ---- randomness: every draw goes through the caller's generator ----------------------------------------------------


def uniform(shape, generator: torch.Generator | None, device, dtype=torch.float64, rows=None) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn from ``generator`` on the generator's own device, then moved to ``device``.

    ``rows`` = (index, B): ``shape`` covers the rows ``index`` of a batch of B; the draw covers all B rows and keeps
    those, so a row's noise does not depend on which other rows are still running (early finish)."""
    source = generator.device if generator is not None else device
    full = shape if rows is None else (rows[1], *shape[1:])
    u = torch.rand(full, generator=generator, device=source, dtype=dtype).to(device)
    return u if rows is None else u[rows[0]]


def gumbel_max_sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                      rows=None) -> torch.Tensor:
    """x0 ~ softmax(logits / τ) by Gumbel-max: argmax(logits/τ + g), g = −log(−log u); plain argmax at τ = 0.

    LLaDA's ``add_gumbel_noise`` draws in float64 because low-precision Gumbel noise lowers generation quality
    (arXiv:2409.02908); it writes exp(l) / (−log u)^τ, whose argmax is the same as that of l/τ + g here (and this
    form cannot overflow). logits (..., V) → token ids (...); ``rows`` as in ``uniform``.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    u = uniform(logits.shape, generator, logits.device, rows=rows)  # (..., V) float64
    gumbel = -torch.log(-torch.log(u))  # u = 0 gives −inf: that token is never drawn
    return (logits.to(torch.float64) / temperature + gumbel).argmax(dim=-1)


# ---- LLaDA's confidences (the ``remasking`` registry, with Dream's, is in rollouts/remasking.py) -------------------


def chosen_token_probability(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """softmax(logits)[x0] (``low_confidence``), as exp(l[x0] − logsumexp l) in float32 without a (…, V) softmax.

    Taken from the logits before the Gumbel noise, as in LLaDA. logits (B, K, V), x0 (B, K) → (B, K).
    """
    logits = logits.float()
    chosen = logits.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return torch.exp(chosen - torch.logsumexp(logits, dim=-1))


def random_confidence(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """U(0, 1) per position (``random`` remasking): commit k random masked positions. → (B, K)."""
    return uniform(x0.shape, generator, x0.device, rows=rows)


# ---- which positions: the per-row top-k ----------------------------------------------------------------------------


def select_commits(confidence: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The k[b] most confident positions of each row b → bool (B, K); ties go to the earlier position.

    A per-row top-k with a different k in each row, vectorised: the rank of each position in its row's descending
    (stable) order, compared with k. confidence (B, K), k (B,).
    """
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)  # (B, K) positions, best first
    positions = torch.arange(confidence.shape[1], device=confidence.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, K) rank of each position
    return rank < k[:, None]


# ---- parallel decoding: how many positions a step commits (Fast-dLLM §3.3) ----------------------------------------


def threshold_commit_count(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Masked positions whose confidence exceeds the threshold c. confidence (B, K), −inf where not masked → (B,).

    ``>`` where Fast-dLLM writes ``≥``: they differ only at equality, and with ``>`` c = 1 means exactly "never
    parallel" (a float32 probability can round to 1.0).
    """
    return (confidence > threshold).sum(dim=1)


def factor_commit_count(confidence: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM's factor rule: with the confidences sorted, c(1) ≥ c(2) ≥ …, the longest run n such that
    c(m) ≥ 1 − f/(m + 1) for every m ≤ n — more tokens in parallel only while each is near-certain.
    confidence (B, K), −inf where not masked → (B,)."""
    ordered = confidence.sort(dim=1, descending=True).values  # (B, K)
    m = torch.arange(1, confidence.shape[1] + 1, device=confidence.device, dtype=ordered.dtype)
    passes = ordered >= 1 - factor / (m + 1)  # (B, K)
    return passes.long().cumprod(dim=1).sum(dim=1)


def fast_dllm_commit_count(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fast-dLLM's threshold rule (``llada/generate.py``, ``get_transfer_index``): the masked positions with
    confidence ≥ c, and at least one — its top-k over the block keeps the best unconditionally and drops the others
    below c. confidence (B, K), −inf where not masked → (B,); a row with no mask left commits nothing (its k = 1
    meets no masked position)."""
    return (confidence >= threshold).sum(dim=1).clamp(min=1)


def commit_count(scheduled: torch.Tensor, confidence: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """Positions to commit this step per row (B,). ``threshold_rule='floor'``: the plain schedule's count, raised
    by threshold / factor decoding, at least one; the schedule stays a floor, so a block never needs more than its
    ``steps`` (with one scheduled token per step this equals Fast-dLLM's rule but for ``>``). ``fast_dllm``: the
    schedule is ignored (``fast_dllm_commit_count``)."""
    if config.fast_dllm_threshold:
        return fast_dllm_commit_count(confidence, config.threshold)
    k = scheduled
    if config.threshold is not None:
        k = torch.maximum(k, threshold_commit_count(confidence, config.threshold))
    if config.factor is not None:
        k = torch.maximum(k, factor_commit_count(confidence, config.factor))
    return k.clamp(min=1)

