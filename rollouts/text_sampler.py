"""The LLaDA / MMaDA semi-autoregressive text sampler (LLaDA §2.4 and its ``generate.py``; DESIGN §4).

The answer canvas of L = ``gen_length`` positions starts fully masked and is cut into blocks of ``block_length``,
generated left to right. ``steps`` are split evenly over the blocks; inside a block, the number of tokens committed
per step is the block's masked count split evenly over its steps (remainder to the first steps). Each step:

    logits  = model(x)                        (with CFG: u + (s+1)(c − u), u = prompt replaced by masks)
    x0      = argmax(logits/τ + Gumbel)       (float64 noise; plain argmax at τ = 0)
    conf    = softmax(logits)[x0]             (low_confidence)  |  U(0,1)  (random)
    conf    = −inf outside the current block and on committed positions
    commit the k most confident masked positions of the block

Legend: gen_length ↔ L, block_length ↔ block size, steps ↔ total denoising steps, temperature ↔ τ, cfg_scale ↔ s.
The sampler knows nothing of training; its only model call is ``model(input_ids, attention_mask).logits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

REMASKING = ("low_confidence", "random")


@dataclass
class SamplerConfig:
    """Sampler options; ``__post_init__`` rejects impossible combinations with one clear error each."""

    gen_length: int = 64
    block_length: int = 32
    steps: int = 32
    temperature: float = 0.0
    remasking: str = "low_confidence"
    cfg_scale: float = 0.0

    def __post_init__(self):
        for key in ("gen_length", "block_length", "steps"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key}={value!r} must be a positive integer")
        if self.gen_length % self.block_length:
            raise ValueError(f"gen_length={self.gen_length} is not divisible by block_length={self.block_length}")
        if self.steps % self.num_blocks:
            raise ValueError(
                f"steps={self.steps} is not divisible by the number of blocks "
                f"(gen_length/block_length = {self.num_blocks})"
            )
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking={self.remasking!r} is not valid; choose one of {list(REMASKING)}")
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be ≥ 0")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale={self.cfg_scale} must be ≥ 0")

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks


@dataclass
class SamplerOutput:
    """sequences (B, P+L): prompt as given + answer; completion_ids (B, L); commit_step (B, L): the global step
    (0-based) at which each answer position was committed (the decoding order)."""

    sequences: torch.Tensor
    completion_ids: torch.Tensor
    commit_step: torch.Tensor


def num_transfer_tokens(masked_count: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each of ``steps`` steps: masked_count (B,) split evenly, remainder first → (B, steps)."""
    base = masked_count[:, None] // steps
    remainder = masked_count[:, None] % steps
    return base + (torch.arange(steps, device=masked_count.device)[None, :] < remainder).long()


def gumbel_max_sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """argmax(logits/τ + g), g ~ Gumbel(0, 1), in float64 (low precision Gumbel noise degrades sample quality,
    as LLaDA's generate.py notes). At τ = 0 the plain argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    u = torch.rand(logits.shape, dtype=torch.float64, generator=generator, device=logits.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return (logits.to(torch.float64) / temperature + gumbel).argmax(dim=-1)


def commit_confidence(logits, x0, remasking: str, generator) -> torch.Tensor:
    """Confidence of each proposal: softmax prob of the chosen token (low_confidence) or U(0,1) (random)."""
    if remasking == "low_confidence":
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
    return torch.rand(x0.shape, generator=generator, device=x0.device)


def select_commits(confidence: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The k[b] highest-confidence positions of each row → bool (B, T). Ties go to the earlier position."""
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return ranks < k[:, None]


def guided_logits(model, x, attention_mask, prompt_len: int, prompt_real, mask_token_id: int, cfg_scale: float):
    """Logits of x, with classifier-free guidance u + (s+1)(c − u) when cfg_scale > 0 (one batched forward)."""
    if cfg_scale == 0:
        return model(input_ids=x, attention_mask=attention_mask).logits
    unconditional = x.clone()
    unconditional[:, :prompt_len] = torch.where(prompt_real, mask_token_id, x[:, :prompt_len])
    both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
    logits = model(input_ids=torch.cat([x, unconditional]), attention_mask=both_mask).logits
    cond, uncond = logits.chunk(2)
    return uncond + (cfg_scale + 1) * (cond - uncond)


def truncate_after_eos(completion: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Everything after the first EOS becomes EOS (the canvas's padding)."""
    after_eos = torch.cumsum((completion == eos_token_id).long(), dim=1) > 0
    return completion.masked_fill(after_eos, eos_token_id)


@torch.no_grad()
def generate_text(
    model,
    prompt_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    mask_token_id: int,
    eos_token_id: int | None,
    config: SamplerConfig,
    generator: torch.Generator | None = None,
) -> SamplerOutput:
    """Sample answers for left-padded prompts (B, P) with their padding mask (B, P) (1 = token, 0 = pad)."""
    B, P = prompt_ids.shape
    L, device = config.gen_length, prompt_ids.device
    x = torch.cat([prompt_ids, torch.full((B, L), mask_token_id, dtype=prompt_ids.dtype, device=device)], dim=1)
    prompt_real = torch.ones_like(prompt_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    full_mask = None
    if attention_mask is not None and not bool(attention_mask.all()):
        full_mask = torch.cat([attention_mask, torch.ones(B, L, dtype=attention_mask.dtype, device=device)], dim=1)
    commit_step = torch.full((B, L), -1, dtype=torch.long, device=device)
    step = 0
    for block in range(config.num_blocks):
        start, end = P + block * config.block_length, P + (block + 1) * config.block_length
        schedule = num_transfer_tokens((x[:, start:end] == mask_token_id).sum(dim=1), config.steps_per_block)
        for i in range(config.steps_per_block):
            masked = x == mask_token_id  # (B, P+L)
            logits = guided_logits(model, x, full_mask, P, prompt_real, mask_token_id, config.cfg_scale)
            x0 = gumbel_max_sample(logits, config.temperature, generator)  # (B, P+L)
            confidence = commit_confidence(logits, x0, config.remasking, generator).to(torch.float64)
            in_block = torch.zeros_like(masked)
            in_block[:, start:end] = True
            confidence = confidence.masked_fill(~(masked & in_block), -torch.inf)
            commit = select_commits(confidence, schedule[:, i]) & masked & in_block
            x = torch.where(commit, x0, x)
            commit_step[commit[:, P:]] = step
            step += 1
    completion = x[:, P:]
    if eos_token_id is not None:
        completion = truncate_after_eos(completion, eos_token_id)
    return SamplerOutput(torch.cat([x[:, :P], completion], dim=1), completion, commit_step)


SAMPLERS = {"text": generate_text}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {sorted(SAMPLERS)}")
    return SAMPLERS[name]
