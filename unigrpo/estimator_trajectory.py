"""The trajectory-aware estimator (TraceRL, Wang et al. 2025, arXiv 2509.06949; the ``dLLM-RL`` repository's
``train/rl_llada.py``, ``training.method: TraceRL``).

Instead of random masks, each answer is scored along the order in which the sampler committed its tokens
(``commit_step``, one per answer position). The row's distinct commit steps, sorted, are grouped s at a time
(TraceRL's shrinkage parameter s, ``trajectory_shrink``): chunk j holds the positions committed at the j-th group
of s neighbouring steps. View j of an answer re-creates the sampler's state just before chunk j was committed —
every position of chunks ≥ j masked, the earlier ones visible — and scores the positions of chunk j:

    log π(o | q) ≈ Σ_j Σ_{t ∈ τ_j} log p_θ(o_t | q, o_{τ_<j}, masks on τ_≥j)

so every answer position is scored exactly once, in the context it was actually decided in. An answer becomes as
many rows as it has chunks (⌈distinct steps / s⌉); a chunk with no loss-eligible position (only EOS padding) is
dropped, as TraceRL drops rows with nothing to score. EOS padding is masked and scored as the sampler committed it
(with early finish, the padding of a row that left carries the step it left at). The prompt and suffix are never
masked; nothing is random, so the step's mask ratio and the generator are unused. TraceRL's value model is not
part of this estimator (the advantages stay the group-relative ones of docs/design.md §3.1).

Legend (code → paper): ``commit_step`` → the trajectory τ_i (the step each token was decoded at), ``chunk`` → the
shrunk step τ_i^s(j), ``shrink`` → s. Shapes: N answers, L answer positions, R = Σ_i (answer i's chunks) rows.
"""

from __future__ import annotations

import torch

from .likelihood import NoisedView, assemble_view


def commit_chunks(commit_step: torch.Tensor, shrink: int) -> torch.Tensor:
    """Chunk index of each answer position (N, L) → (N, L): the rank of its commit step among the row's distinct
    steps (0 for the earliest), divided by s — s neighbouring *distinct* steps form one chunk, as TraceRL's
    ``collapse_k_unique`` groups them (steps the row never committed at take no room)."""
    if (commit_step < 0).any():
        raise ValueError("commit_step has negative entries: every answer position needs the step it was committed at")
    present = torch.zeros(commit_step.shape[0], int(commit_step.max()) + 1, dtype=torch.long,
                          device=commit_step.device).scatter_(1, commit_step, 1)  # (N, steps) step used by the row
    rank = present.cumsum(1).gather(1, commit_step) - 1  # (N, L) dense rank of each position's step
    return torch.div(rank, shrink, rounding_mode="floor")


def trajectory_views(chunks: torch.Tensor, eligible: torch.Tensor):
    """One row per (answer, chunk), answer-major with chunks in decoding order → answer_index (R,), masked (R, L)
    (chunk ≥ the row's: still masked when the row's chunk was committed) and scored (R, L) (the row's chunk, where
    eligible). Rows that score nothing are dropped."""
    N = chunks.shape[0]
    views_per_answer = chunks.max(dim=1).values + 1  # (N,)
    answer_index = torch.repeat_interleave(torch.arange(N, device=chunks.device), views_per_answer)  # (R,)
    first_row = torch.cumsum(views_per_answer, 0) - views_per_answer  # (N,) row of each answer's chunk 0
    view_chunk = torch.arange(len(answer_index), device=chunks.device) - first_row[answer_index]  # (R,)
    row_chunks = chunks[answer_index]  # (R, L)
    masked = row_chunks >= view_chunk[:, None]
    scored = (row_chunks == view_chunk[:, None]) & eligible[answer_index]
    keep = scored.any(dim=1)
    return answer_index[keep], masked[keep], scored[keep]


class TrajectoryEstimator:
    name = "trajectory"
    options = ("trajectory_shrink",)
    rollout_fields = ("commit_step",)  # read from the rollout besides the usual tensors (likelihood.rollout_inputs)

    def __init__(self, trajectory_shrink: int = 8):
        if isinstance(trajectory_shrink, bool) or not isinstance(trajectory_shrink, int) or trajectory_shrink < 1:
            raise ValueError(f"trajectory_shrink={trajectory_shrink!r} must be an integer ≥ 1 (sampler steps per "
                             f"scored chunk; TraceRL uses 8 for LLaDA and Dream)")
        self.shrink = trajectory_shrink

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """⌈distinct commit steps / s⌉ rows per answer, at most: an answer has at most min(L, steps) distinct steps
        (L when ``diffusion_steps`` is None: threshold decoding may take a step per token)."""
        steps = answer_length if diffusion_steps is None else min(answer_length, diffusion_steps)
        return -(-steps // self.shrink)

    def noise(self, prompt_ids, prompt_mask, completion_ids, eligible, ratio, mask_token_id, generator=None,
              suffix_ids=None, commit_step=None) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible / commit_step (N, L); ratio and
        generator unused → view with R = Σ_i (answer i's chunks that score something) rows."""
        if commit_step is None or commit_step.shape != completion_ids.shape:
            got = None if commit_step is None else tuple(commit_step.shape)
            raise ValueError(f"likelihood_estimator 'trajectory' needs each answer position's commit_step "
                             f"{tuple(completion_ids.shape)} from the sampler, got {got}; use a rollout engine "
                             f"that returns it (the built-in text and image samplers do)")
        chunks = commit_chunks(commit_step.to(completion_ids.device), self.shrink)  # (N, L)
        answer_index, masked, scored = trajectory_views(chunks, eligible)  # (R,), (R, L), (R, L)
        answers = completion_ids[answer_index].masked_fill(masked, mask_token_id)
        mask_ratio = masked.float().mean(dim=1)  # (R,) share of the canvas still masked at that chunk
        return assemble_view(prompt_ids, prompt_mask, answers, scored, mask_ratio, answer_index, suffix_ids)
