"""Rejection-sampling fine-tuning (RFT): the same-compute baseline that RL is measured against (issue #20 §3).

One cycle, with UniGRPO's budget (B prompts × G answers sampled, μ optimizer steps per sample):
    1. sample G answers per prompt with the rollout sampler (the trainer's ``TaskRunner`` and engine, the recipe's
       sampler settings and temperature);
    2. keep exactly the answers the accuracy reward calls correct (``unigrpo.evaluation.is_correct``);
    3. μ masked-diffusion SFT updates on the kept answers (``unigrpo.sft``'s loss and noise laws, docs/design.md §5),
       each a fresh noising; the prompt is never masked.
Answers are EOS-padded canvases as in SFT data: everything after an answer's first EOS becomes EOS.
No advantages, no ratio, no reference: a correct answer is imitated whether its group was all right or not, and a
wrong one is ignored rather than pushed down — the difference RL's objective is supposed to make.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .evaluation import is_correct
from .rewarding import score_completions
from .sft import SFT_MASKS, masked_diffusion_sft_loss


@dataclass
class KeptAnswers:
    """The correct answers of one sample (K of the N drawn), with their prompts; K may be 0."""

    prompt_ids: torch.Tensor  # (K, P) left-padded
    prompt_mask: torch.Tensor  # (K, P)
    canvases: torch.Tensor  # (K, L) answer, then EOS to the end
    drawn: int  # N, answers sampled

    @property
    def size(self) -> int:
        return self.canvases.shape[0]


def eos_padded(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """(N, L) → (N, L): every position after an answer's first EOS set to EOS (docs/design.md §3.8's canvas)."""
    after_eos = (completion_ids == eos_token_id).long().cumsum(dim=1) > 0
    return completion_ids.masked_fill(after_eos, eos_token_id)


def keep_correct(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, completion_ids: torch.Tensor,
                 correct: torch.Tensor, eos_token_id: int) -> KeptAnswers:
    """The rejection step: exactly the rows whose ``correct`` (N,) flag is set, as SFT canvases."""
    keep = correct.to(completion_ids.device).bool()
    return KeptAnswers(prompt_ids[keep], prompt_mask[keep], eos_padded(completion_ids[keep], eos_token_id),
                       len(correct))


def rft_loss(model, kept: KeptAnswers, mask_token_id: int, noise: str = "count",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The masked-diffusion SFT loss of the kept answers (``unigrpo.sft``): noise the answer canvas with ``noise``'s
    law, never the prompt; one forward of [prompt; noised answer]; Σ_masked CE · weight / L, mean over answers."""
    canvas = kept.canvases  # (K, L)
    mask, weight = SFT_MASKS[noise](canvas.cpu(), generator)
    mask, weight = mask.to(canvas.device), weight.to(canvas.device)
    input_ids = torch.cat([kept.prompt_ids, canvas.masked_fill(mask, mask_token_id)], dim=1)  # (K, P+L)
    attention_mask = None
    if not bool(kept.prompt_mask.all()):
        attention_mask = torch.cat([kept.prompt_mask, torch.ones_like(canvas)], dim=1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, -canvas.shape[1]:]  # (K, L, V)
    return masked_diffusion_sft_loss(logits, canvas, mask, weight)


class RejectionSampler:
    """Sample → score → keep, with the trainer's pieces: a ``TaskRunner`` on the policy's engine and the recipe's
    rewards; the accuracy reward (``accuracy_reward``, else the first) decides what is kept."""

    def __init__(self, runner, tokenizer, reward_funcs, reward_names, num_generations: int,
                 accuracy_reward: str | None = None):
        self.runner, self.tokenizer, self.num_generations = runner, tokenizer, num_generations
        self.reward_funcs = reward_funcs
        self.accuracy_index = reward_names.index(accuracy_reward) if accuracy_reward else 0

    @torch.no_grad()
    def sample(self, rows: list[dict], seed: int) -> tuple[KeptAnswers, torch.Tensor]:
        """G answers per row (text rows) → (the correct ones, every answer's rewards per function (N, F))."""
        G = self.num_generations
        rollout = self.runner.rollout("t2t", rows, G, seed)
        columns = {k: [row.get(k) for row in rows for _ in range(G)] for k in rows[0] if k != "prompt"}
        per_func = score_completions(self.reward_funcs, [row["prompt"] for row in rows for _ in range(G)],
                                     rollout.completions, rollout.completion_ids.tolist(), columns).values
        correct = is_correct(per_func[:, self.accuracy_index], self.reward_funcs[self.accuracy_index])
        kept = keep_correct(rollout.prompt_ids, rollout.prompt_mask, rollout.completion_ids, correct,
                            self.tokenizer.eos_token_id)
        return kept, per_func
