"""SPG: sandwiched policy gradient (Wang et al. 2025, arXiv 2510.09541).

log π_θ(o | q) of a masked-diffusion LM is intractable; SPG replaces it by a bound chosen by the sign of the
answer's advantage, so that every update moves the true likelihood the intended way:

- A > 0: maximise a *lower* bound (the ELBO): pushing it up pushes log π up.
- A ≤ 0: minimise an *upper* bound (the EUBO, a Rényi-type bound with exponent β ≥ 1), or a mixture
  ω·EUBO + (1 − ω)·ELBO (the paper's variance-reducing mix; ``spg_negative_bound: mix``, ω = ``spg_mix_weight``).

The loss of answer i is ℓ_i = −A_i · ŝ_i with ŝ_i the chosen bound; no ratio to θ_old and no KL term.

Both bounds are Monte-Carlo estimates over K block-wise masks of the answer (``spg_num_masks``): each mask draws a
block b of ``block_length`` tokens among those holding the answer, keeps the blocks before it clean, masks every
position after it, and masks c ~ U{1..m} random positions of its m answer tokens — the states the semi-autoregressive
sampler actually passes through. With M_k the scored positions of mask k and t_k = |M_k| / n its masked fraction of
the n answer tokens (content and the first EOS):

    ELBO_i = (1/K) Σ_k  mean_{t ∈ M_k} log p_θ(o_t | q, õ_k)
    EUBO_i = (1/β) · mean_{t ∈ ∪M_k} log( (1/K) Σ_k 1[t ∈ M_k] · p_θ(o_t | q, õ_k)^β / t_k )

(per-token normalised, as in the published code). With one mask (or masks that agree) EUBO ≥ ELBO for every answer:
each token gains −log(t_k)/β ≥ 0 and Jensen's inequality does the rest. The prompt is never masked.

Sources: the paper §3 (sandwiched objective, EUBO, block-wise masking, mixture); github.com/facebookresearch/SPG,
``spg/spg_trainer.py`` (``forward_process`` with ``forward_type: block_random``; ``_get_per_seq_logps`` with
``logp_estimation`` eubo / mix / elbo) and ``spg/slurm_scripts/spg_mix/*`` (K = 2, β = 1.5, ω = 0.5). Differences:
the published code also masks each clean token (prompt and earlier blocks) with probability 0.3 and weights answers
by their length; here the prompt is never masked (docs/design.md §3.2) and answers are averaged (``loss_type: grpo``).
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView, assemble_view

NEGATIVE_BOUNDS = ("mix", "eubo", "elbo")


def block_masks(eligible: torch.Tensor, block_length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One block-wise mask per answer: eligible (N, L) bool, a prefix of n_i answer tokens → mask (N, L) bool.

    Block b ~ U{0..⌈n_i/B⌉−1}; positions before it clean, c ~ U{1..m} of its m answer tokens masked at random, and
    every position after its answer tokens masked (later blocks and the EOS padding, as when the sampler reaches b).
    """
    N, L = eligible.shape
    device = eligible.device
    n = eligible.sum(dim=1).cpu()  # (N,)
    blocks = (n - 1).clamp(min=0) // block_length + 1
    start = (torch.rand(N, generator=generator) * blocks).long().clamp(max=blocks - 1) * block_length  # (N,)
    m = (n - start).clamp(min=0, max=block_length)  # answer tokens in block b
    c = 1 + (torch.rand(N, generator=generator) * m).long().clamp(max=(m - 1).clamp(min=0))  # U{1..m}
    position = torch.arange(L)[None]  # (1, L)
    in_block = (position >= start[:, None]) & (position < (start + m)[:, None])
    score = torch.rand(N, L, generator=generator).masked_fill(~in_block, 2.0)
    rank = score.argsort(dim=1).argsort(dim=1)  # the block's positions rank 0..m−1 in random order
    mask = (in_block & (rank < c[:, None])) | (position >= (start + m)[:, None])
    return mask.to(device)


def spg_elbo(token_logps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """ELBO_i = mean over the K masks of the mean token log-prob at their scored positions.

    token_logps / masks (K, N, L) → (N,)."""
    mask = masks.float()
    per_mask = (token_logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (K, N)
    return per_mask.mean(0)


def spg_eubo(token_logps: torch.Tensor, masks: torch.Tensor, ratios: torch.Tensor, beta: float) -> torch.Tensor:
    """EUBO_i = (1/β)·mean_{t ∈ ∪M_k} log((1/K) Σ_k 1[t ∈ M_k]·p_kt^β / t_k).

    token_logps / masks (K, N, L), ratios (K, N) = t_k → (N,). Computed as a log-sum-exp of β·log p − log t_k over
    the masks that cover t (−inf where a mask does not), so a small p never underflows."""
    K = masks.shape[0]
    exponent = beta * token_logps - torch.log(ratios.clamp(min=1e-8))[..., None]  # (K, N, L)
    exponent = exponent.masked_fill(~masks, float("-inf"))
    covered = masks.any(0)  # (N, L)
    per_token = torch.logsumexp(exponent, dim=0) - torch.log(torch.tensor(float(K)))  # (N, L)
    per_token = per_token.masked_fill(~covered, 0.0) / beta
    return per_token.sum(-1) / covered.float().sum(-1).clamp(min=1.0)


def sandwiched_logp(lower: torch.Tensor, upper: torch.Tensor, advantages: torch.Tensor, negative_bound: str,
                    mix_weight: float) -> torch.Tensor:
    """ŝ_i: the ELBO where A_i > 0, else the negative-side bound (mix: ω·EUBO + (1 − ω)·ELBO). All (N,)."""
    negative = {"eubo": upper, "elbo": lower, "mix": mix_weight * upper + (1 - mix_weight) * lower}[negative_bound]
    return torch.where(advantages > 0, lower, negative)


class SPGEstimator:
    """K block-wise masks per answer (rows k·N + i), scored by SPG's sandwiched objective (``policy_loss``)."""

    name = "spg"
    options = ("block_length", "spg_num_masks", "spg_eubo_beta", "spg_mix_weight", "spg_negative_bound")
    uses_ratio = False  # no θ_old pass: the published objective is −A·ŝ, without an importance ratio

    def __init__(self, block_length: int = 32, spg_num_masks: int = 2, spg_eubo_beta: float = 1.5,
                 spg_mix_weight: float = 0.5, spg_negative_bound: str = "mix"):
        if block_length < 1 or spg_num_masks < 1:
            raise ValueError(f"block_length={block_length} and spg_num_masks={spg_num_masks} must be ≥ 1")
        if not spg_eubo_beta >= 1.0:
            raise ValueError(f"spg_eubo_beta={spg_eubo_beta} must be ≥ 1 (the EUBO's Rényi exponent β)")
        if not 0.0 <= spg_mix_weight <= 1.0:
            raise ValueError(f"spg_mix_weight={spg_mix_weight} must lie in [0, 1]")
        if spg_negative_bound not in NEGATIVE_BOUNDS:
            raise ValueError(f"spg_negative_bound={spg_negative_bound!r}; choose one of {list(NEGATIVE_BOUNDS)}")
        self.block_length, self.num_masks = block_length, spg_num_masks
        self.beta, self.mix_weight, self.negative_bound = spg_eubo_beta, spg_mix_weight, spg_negative_bound

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """K rows per answer, one per block-wise mask."""
        return self.num_masks

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L); ratio ignored (each
        mask draws its own) → view of K·N rows; its mask_ratio holds t_k, the masked fraction of the answer."""
        N = completion_ids.shape[0]
        masks = torch.cat([block_masks(eligible, self.block_length, generator) for _ in range(self.num_masks)])
        answer_index = torch.arange(N, device=completion_ids.device).repeat(self.num_masks)  # (K·N,)
        scored = masks & eligible[answer_index]
        ratios = scored.sum(-1).float() / eligible[answer_index].sum(-1).float().clamp(min=1.0)
        answers = completion_ids[answer_index].masked_fill(masks, mask_token_id)
        return assemble_view(prompt_ids, prompt_mask, answers, scored, ratios, answer_index, suffix_ids)

    def bounds(self, token_logps: torch.Tensor, view: NoisedView) -> tuple[torch.Tensor, torch.Tensor]:
        """(ELBO, EUBO) per answer (N,) from the view's token log-probs (K·N, L)."""
        K = self.num_masks
        logps = token_logps.view(K, -1, token_logps.shape[-1])
        masks = view.score_mask.view(K, -1, view.score_mask.shape[-1])
        return spg_elbo(logps, masks), spg_eubo(logps, masks, view.mask_ratio.view(K, -1), self.beta)

    def policy_loss(self, token_logps: torch.Tensor, view: NoisedView, advantages: torch.Tensor,
                    answer_index: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """token_logps (K·N_g, L), advantages (N,) of the whole micro-batch, answer_index (K·N_g,) each row's answer
        in it → (ℓ_i = −A_i·ŝ_i per answer (N_g,), their answer index (N_g,))."""
        lower, upper = self.bounds(token_logps, view)
        index = answer_index[: lower.shape[0]]  # rows 0..N_g−1 are the answers in order
        A = advantages[index]
        return -A * sandwiched_logp(lower, upper, A, self.negative_bound, self.mix_weight), index
