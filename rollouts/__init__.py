"""Generation: the text sampler and the rollout engines (in-process now; Ray workers share the interface)."""

from .engine import LocalEngine, RolloutBatch, tokenize_prompts
from .text_sampler import SAMPLERS, SamplerConfig, SamplerOutput, generate_text, get_sampler, num_transfer_tokens

__all__ = [
    "LocalEngine",
    "RolloutBatch",
    "tokenize_prompts",
    "SAMPLERS",
    "SamplerConfig",
    "SamplerOutput",
    "generate_text",
    "get_sampler",
    "num_transfer_tokens",
]
