"""The three kinds of task of one UniGRPO run (docs/design.md §1): how a row's prompt is laid out, how its answers are
sampled, and what the rewards receive.

    task   prompt (never masked)                      answer (sampled, masked, scored)   rewards receive
    t2t    chat/plain text                            text canvas (EOS-padded)           text (or messages)
    mmu    <|mmu|> <|soi|> image codes <|eoi|> text   text canvas                        text; ``image`` column
    t2i    <|t2i|> BOS caption EOS <|soi|>            N image codes, then <|eoi|>        decoded PIL images

A dataset column ``task`` picks the kind per row (default ``t2t``). ``TaskRunner.rollout(task, rows, G, seed)``
returns a ``TaskRollout``; the trainer and the evaluation treat every kind alike from there on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rewards.inputs import caption_text

from .masking import loss_eligible_positions
from .models.layouts import (
    image_suffix,
    mmu_prompts,
    multimodal_ids,
    t2i_prompts,
    t2i_unconditional_prompts,
)
from .prompts import completions_for_rewards, prompt_texts

if TYPE_CHECKING:
    from rollouts.text_sampler import DecodeStats

TASKS = ("t2t", "mmu", "t2i")
IMAGE_TASKS = ("mmu", "t2i")


def row_task(row: dict) -> str:
    return row.get("task") or "t2t"


def check_tasks(dataset, image_tokenizer, name: str = "dataset") -> list[str]:
    """The tasks a dataset uses; one ValueError for an unknown task, a missing image column or image tokenizer."""
    columns = dataset.column_names
    tasks = sorted(set(dataset["task"])) if "task" in columns else ["t2t"]
    unknown = [t for t in tasks if (t or "t2t") not in TASKS]
    if unknown:
        raise ValueError(f"{name} has task(s) {unknown}; valid: {list(TASKS)}")
    needs_images = [t for t in tasks if t in IMAGE_TASKS]
    if needs_images and image_tokenizer is None:
        raise ValueError(f"{name} has {needs_images} rows, which need an image tokenizer (image_tokenizer=…)")
    if "mmu" in tasks and "image" not in columns:
        raise ValueError(f"{name} has mmu rows but no 'image' column (the input image)")
    return tasks


@dataclass
class TaskRollout:
    """One task's share of a batch: B prompts × G answers, the G answers of a prompt consecutive (N = B·G)."""

    task: str
    rows: list[dict]  # (B) dataset rows
    prompt_ids: torch.Tensor  # (N, P) left-padded
    prompt_mask: torch.Tensor  # (N, P)
    completion_ids: torch.Tensor  # (N, L) answer token ids (image codes carry the text-vocabulary offset)
    eligible: torch.Tensor  # (N, L) positions that may enter the loss
    suffix_ids: torch.Tensor | None  # (N, S) fixed tokens after the answer (<|eoi|>), or None
    completions: list  # (N) what the rewards receive
    decode_stats: DecodeStats | None = None  # text answers: the sampler's commits per forward and confidence
    commit_step: torch.Tensor | None = None  # (N, L) the sampler step that committed each answer position

    @property
    def size(self) -> int:
        return self.completion_ids.shape[0]


class TaskRunner:
    """Lays out and samples each kind of task with one engine and fixed sampler settings; knows the image
    tokenizer when there is one (``vocab_rows``: the model's embedding rows, checked to hold the codebook)."""

    def __init__(self, engine, tokenizer, sampler_config, image_sampler_config=None, image_tokenizer=None,
                 vocab_rows: int | None = None, eos_in_loss: int = 1):
        self.engine, self.tokenizer, self.image_tokenizer = engine, tokenizer, image_tokenizer
        self.sampler_config, self.image_sampler_config, self.eos_in_loss = (
            sampler_config, image_sampler_config, eos_in_loss
        )
        self.ids = None
        if image_tokenizer is not None:
            self.ids = multimodal_ids(tokenizer, image_tokenizer.codebook_size, vocab_rows)

    def rollout(self, task: str, rows: list[dict], num_generations: int, seed: int) -> TaskRollout:
        runs = {"t2t": self.rollout_text, "mmu": self.rollout_mmu, "t2i": self.rollout_t2i}
        if task not in runs:
            raise ValueError(f"unknown task {task!r}; valid: {list(TASKS)}")
        return runs[task](rows, num_generations, seed)

    def _text_answers(self, task, rows, prompt_ids, prompt_mask, G, seed) -> TaskRollout:
        batch = self.engine.generate_from_ids(prompt_ids, prompt_mask, self.sampler_config, num_generations=G,
                                              seed=seed)
        eligible = loss_eligible_positions(batch.completion_ids, self.tokenizer.eos_token_id, self.eos_in_loss)
        completions = completions_for_rewards(batch.completions, rows[0])
        return TaskRollout(task, rows, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, eligible, None,
                           completions, batch.stats, batch.commit_step)

    def rollout_text(self, rows, G, seed) -> TaskRollout:
        from rollouts import tokenize_prompts

        texts = prompt_texts([row["prompt"] for row in rows], self.tokenizer)
        prompt_ids, prompt_mask = tokenize_prompts(self.tokenizer, texts)
        return self._text_answers("t2t", rows, prompt_ids, prompt_mask, G, seed)

    def rollout_mmu(self, rows, G, seed) -> TaskRollout:
        codes = self.image_tokenizer.encode([row["image"] for row in rows]).cpu()  # (B, N)
        questions = prompt_texts([row["prompt"] for row in rows], self.tokenizer)
        prompt_ids, prompt_mask = mmu_prompts(codes, questions, self.tokenizer, self.ids)
        return self._text_answers("mmu", rows, prompt_ids, prompt_mask, G, seed)

    def rollout_t2i(self, rows, G, seed) -> TaskRollout:
        ids, image_tokenizer, config = self.ids, self.image_tokenizer, self.image_sampler_config
        prompt_ids, prompt_mask = t2i_prompts([caption_text(row["prompt"]) for row in rows], self.tokenizer, ids)
        B, P = prompt_ids.shape
        unconditional = t2i_unconditional_prompts(B, P, ids) if config.cfg_scale > 0 else None
        out = self.engine.generate_images(
            prompt_ids, prompt_mask, image_suffix(B, ids), config,
            num_codes=image_tokenizer.tokens_per_image, code_offset=ids.image_offset,
            codebook_size=image_tokenizer.codebook_size, num_generations=G, unconditional=unconditional, seed=seed,
        )
        completion_ids = ids.code_ids(out.codes)  # (N, n_codes)
        images = image_tokenizer.decode(out.codes)
        N = completion_ids.shape[0]
        device = completion_ids.device
        return TaskRollout("t2i", rows, prompt_ids.repeat_interleave(G, 0).to(device),
                           prompt_mask.repeat_interleave(G, 0).to(device), completion_ids,
                           torch.ones_like(completion_ids, dtype=torch.bool), image_suffix(N, ids, device), images,
                           commit_step=out.commit_step.to(device))

