"""Rollout engines: who generates the answers. The in-process engine here; Ray workers share its interface.

Interface (phase-named, as verl's workers): ``generate(prompts, sampler_config, num_generations, seed)`` →
``RolloutBatch``; ``update_weights(...)`` after an optimizer step; ``close()``. The trainer calls an engine as if
it were local and never knows where generation ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .text_sampler import SamplerConfig, generate_text


@dataclass
class RolloutBatch:
    """N = prompts × num_generations answers; answer i belongs to prompt i // num_generations.

    prompt_ids / prompt_mask (N, P) left-padded; completion_ids / commit_step (N, L); completions: decoded texts.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    commit_step: torch.Tensor
    completions: list[str]


def tokenize_prompts(tokenizer, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask (prompts are already chat-formatted text; no special tokens are added)."""
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


class LocalEngine:
    """Generates with the trainer's own model object, in this process (so weights are always current)."""

    def __init__(self, model, tokenizer, mask_token_id: int, max_batch_size: int | None = None):
        self.model, self.tokenizer, self.mask_token_id = model, tokenizer, mask_token_id
        self.max_batch_size = max_batch_size
        self.weights_version = 0

    @torch.no_grad()
    def generate(
        self, prompts: list[str], sampler_config: SamplerConfig, num_generations: int = 1, seed: int | None = None
    ) -> RolloutBatch:
        device = next(self.model.parameters()).device
        prompt_ids, prompt_mask = tokenize_prompts(self.tokenizer, prompts, device)
        prompt_ids = prompt_ids.repeat_interleave(num_generations, dim=0)  # (N, P), groups are consecutive
        prompt_mask = prompt_mask.repeat_interleave(num_generations, dim=0)
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        chunk = self.max_batch_size or prompt_ids.shape[0]
        outputs = [
            generate_text(
                self.model,
                prompt_ids[i : i + chunk],
                prompt_mask[i : i + chunk],
                mask_token_id=self.mask_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                config=sampler_config,
                generator=generator,
            )
            for i in range(0, prompt_ids.shape[0], chunk)
        ]
        self.model.train(was_training)
        completion_ids = torch.cat([o.completion_ids for o in outputs])
        commit_step = torch.cat([o.commit_step for o in outputs])
        completions = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        return RolloutBatch(prompt_ids, prompt_mask, completion_ids, commit_step, completions)

    def update_weights(self, *args, **kwargs) -> int:
        """No-op: the engine shares the policy's parameters. Returns the (bumped) weights version."""
        self.weights_version += 1
        return self.weights_version

    def close(self) -> None:
        pass
