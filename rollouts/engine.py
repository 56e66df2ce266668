"""Rollout engines: who generates the answers. The in-process engine here; Ray workers share its interface.

Interface (phase-named, as verl's workers): ``generate(prompts, sampler_config, num_generations, seed)`` →
``RolloutBatch`` (text prompts), ``generate_from_ids(prompt_ids, prompt_mask, …)`` (prompts already laid out as
ids: ``mmu``), ``generate_images(prompt_ids, prompt_mask, suffix_ids, …)`` → ``ImageSamplerOutput`` (``t2i``);
``update_weights(...)`` after an optimizer step; ``close()``. The trainer calls an engine as if
it were local and never knows where generation ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .image_sampler import ImageSamplerConfig, ImageSamplerOutput, generate_image_codes
from .text_sampler import DecodeStats, SamplerConfig, generate_text


@dataclass
class RolloutBatch:
    """N = prompts × num_generations answers; answer i belongs to prompt i // num_generations.

    prompt_ids / prompt_mask (N, P) left-padded; completion_ids / commit_step (N, L); completions: decoded texts;
    stats: the sampler's ``DecodeStats`` summed over every call that produced the batch.
    """

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    completion_ids: torch.Tensor
    commit_step: torch.Tensor
    completions: list[str]
    stats: DecodeStats = field(default_factory=DecodeStats)


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

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def generate(
        self, prompts: list[str], sampler_config: SamplerConfig, num_generations: int = 1, seed: int | None = None
    ) -> RolloutBatch:
        prompt_ids, prompt_mask = tokenize_prompts(self.tokenizer, prompts, self.device)
        return self.generate_from_ids(prompt_ids, prompt_mask, sampler_config, num_generations, seed)

    @torch.no_grad()
    def generate_from_ids(self, prompt_ids, prompt_mask, sampler_config: SamplerConfig, num_generations: int = 1,
                          seed: int | None = None) -> RolloutBatch:
        """Text answers for prompts given as left-padded ids (B, P) and mask; G per prompt, groups consecutive."""
        device = self.device
        prompt_ids, prompt_mask = prompt_ids.to(device), prompt_mask.to(device)
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
        stats = sum((o.stats for o in outputs), DecodeStats())
        return RolloutBatch(prompt_ids, prompt_mask, completion_ids, commit_step, completions, stats)

    @torch.no_grad()
    def generate_images(self, prompt_ids, prompt_mask, suffix_ids, config: ImageSamplerConfig, *, num_codes: int,
                        code_offset: int, codebook_size: int, num_generations: int = 1,
                        unconditional=None, seed: int | None = None) -> ImageSamplerOutput:
        """Image codes (N, num_codes) for left-padded t2i prompts (B, P); ``unconditional`` = (ids, mask) of the
        empty-caption prompts for CFG. G per prompt, groups consecutive."""
        device, G = self.device, num_generations
        repeat = lambda t: None if t is None else t.to(device).repeat_interleave(G, dim=0)  # noqa: E731
        prompt_ids, prompt_mask, suffix_ids = repeat(prompt_ids), repeat(prompt_mask), repeat(suffix_ids)
        uncond_ids, uncond_mask = (None, None) if unconditional is None else map(repeat, unconditional)
        generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        chunk = self.max_batch_size or prompt_ids.shape[0]
        part = lambda t, i: None if t is None else t[i : i + chunk]  # noqa: E731
        outputs = [
            generate_image_codes(
                self.model, prompt_ids[i : i + chunk], part(prompt_mask, i), suffix_ids[i : i + chunk],
                num_codes=num_codes, code_offset=code_offset, codebook_size=codebook_size,
                mask_token_id=self.mask_token_id, config=config, unconditional_ids=part(uncond_ids, i),
                unconditional_mask=part(uncond_mask, i), generator=generator,
            )
            for i in range(0, prompt_ids.shape[0], chunk)
        ]
        self.model.train(was_training)
        return ImageSamplerOutput(torch.cat([o.codes for o in outputs]), torch.cat([o.commit_step for o in outputs]))

    def update_weights(self, model=None, version: int | None = None) -> int:
        """No-op apart from the version: the engine shares the policy's parameters (same arguments as
        ``RayEngine.update_weights``, docs/design.md §7). Returns the weights version."""
        self.weights_version = self.weights_version + 1 if version is None else version
        return self.weights_version

    def close(self) -> None:
        pass


def make_engine(backend: str, model, tokenizer, mask_token_id: int, **ray_options):
    """The rollout engine named by ``rollout_backend`` (docs/design.md §7): ``local`` (in-process, shares the policy's
    parameters) or ``ray`` (``RayEngine`` with ``ray_options``: num_workers, num_cpus_per_worker, …)."""
    if backend == "local":
        return LocalEngine(model, tokenizer, mask_token_id)
    if backend == "ray":
        from .ray_engine import RayEngine

        return RayEngine(model, tokenizer, mask_token_id, **ray_options)
    raise ValueError(f"rollout_backend={backend!r} is not valid; choose one of {list(ROLLOUT_BACKENDS)}")


ROLLOUT_BACKENDS = ("local", "ray")
