"""What one micro-batch becomes between rollout and loss: its scored answers (``ScoredBatch``), then per task the
answers with their μ noised views and θ_old / reference log-probs (``TaskViews``), gathered as ``Rollouts``.
Shared by the trainer, which makes them, and ``unigrpo.training_logs``, which logs them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .likelihood import NoisedView
from .tasks import TaskRollout


@dataclass
class TaskViews:
    """One task's answers in a micro-batch with the μ views and their old / reference log-probs."""

    completion_ids: torch.Tensor  # (N_g, L_g)
    offset: int  # index of its first answer in the micro-batch's advantages
    views: list[NoisedView]  # μ views
    old_logps: list[torch.Tensor | None]  # μ × (R, L_g), None when θ_old = θ (μ = 1)
    ref_logps: list[torch.Tensor | None]  # μ × (R, L_g), None when β = 0

    def inputs_for_step(self, n: int) -> dict:
        view = self.views[n]
        return {
            "input_ids": view.input_ids,
            "attention_mask": view.attention_mask,
            "score_mask": view.score_mask,
            "answer_index": view.answer_index,
            "offset": self.offset,
            "mask_ratio": view.mask_ratio,
            "suffix_length": view.suffix_length,
            "completion_ids": self.completion_ids,
            "old_logps": self.old_logps[n],
            "ref_logps": self.ref_logps[n],
        }


@dataclass
class Rollouts:
    """One micro-batch of scored rollouts: advantages of all N answers, and per task its answers and views.

    ``tokens_per_micro_batch`` (μ,): the masked-token count of each inner step over the whole optimizer step (all
    accumulation slots and processes) divided by its number of micro-batches: dapo's normaliser."""

    advantages: torch.Tensor  # (N,)
    tasks: list[TaskViews]
    tokens_per_micro_batch: torch.Tensor | None = None  # (μ,)

    def inputs_for_step(self, n: int) -> dict:
        tokens = None if self.tokens_per_micro_batch is None else self.tokens_per_micro_batch[n]
        return {"advantages": self.advantages, "tasks": [t.inputs_for_step(n) for t in self.tasks],
                "global_tokens": tokens}

    def masked_tokens(self) -> torch.Tensor:
        """(μ,) scored (masked) answer tokens of each inner step's views in this micro-batch."""
        return torch.stack([sum(t.views[n].score_mask.sum().float().cpu() for t in self.tasks)
                            for n in range(len(self.tasks[0].views))])


@dataclass
class ScoredBatch:
    """One micro-batch after rollout and rewards: its task groups (a prompt's G answers consecutive, tasks in
    order of first appearance) and their scores."""

    groups: list[TaskRollout]
    rows: list[dict]  # (B) prompts in task order
    per_func: torch.Tensor  # (N, F) each reward on each answer, NaN = not applicable
    rewards: torch.Tensor  # (N,) weighted sum
    skipped: list[int]  # (F,) samples a reward skipped
    seed: int  # its rollout seed; the masks use seed + 1
