"""Generation: the text and image samplers and the rollout engines (in-process now; Ray workers share the interface)."""

from .engine import ROLLOUT_BACKENDS, LocalEngine, RolloutBatch, make_engine, tokenize_prompts
from .image_sampler import ImageSamplerConfig, ImageSamplerOutput, cosine_masked_counts, generate_image_codes
from .text_sampler import (
    CACHES,
    RECIPE_KEYS,
    REMASKING,
    SamplerConfig,
    SamplerOutput,
    generate_text,
    num_transfer_tokens,
)

__all__ = [
    "ImageSamplerConfig",
    "ImageSamplerOutput",
    "cosine_masked_counts",
    "generate_image_codes",
    "LocalEngine",
    "ROLLOUT_BACKENDS",
    "make_engine",
    "RolloutBatch",
    "tokenize_prompts",
    "CACHES",
    "RECIPE_KEYS",
    "REMASKING",
    "SamplerConfig",
    "SamplerOutput",
    "generate_text",
    "num_transfer_tokens",
]
