"""Tiny presets of the LLaDA architecture and ``init_tiny``: a random model + tokenizer written to a folder.

The tiny models carry the full published config key set and parameter names (only the sizes differ), so every
test and the CPU demo exercise the same loading code as an 8B checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .configuration_llada import LLaDAConfig, MMadaConfig
from .modeling_llada import LLaDAModelLM, MMadaModelLM
from .tokenizer import build_char_tokenizer

# name → architecture sizes; ids and vocabulary come from the tokenizer.
PRESETS: dict[str, dict] = {
    # ≈1.1 M parameters: the CPU demo's model (docs/design.md §9: d 128, 4 layers, 4 heads, FFN 512).
    "tiny": dict(d_model=128, n_heads=4, n_layers=4, mlp_hidden_size=512, max_sequence_length=512),
    # ≈3.5 M parameters: the confident long-answer benchmark model (`copy` task, 256-token answers; issue #18).
    "small": dict(d_model=256, n_heads=4, n_layers=4, mlp_hidden_size=768, max_sequence_length=512),
    # ≈30 k parameters: unit tests that only need shapes and invariants.
    "micro": dict(d_model=32, n_heads=2, n_layers=2, mlp_hidden_size=64, max_sequence_length=512),
}


def tiny_config(preset: str = "tiny", tokenizer=None, mmada: bool = False, codebook_size: int | None = None,
                num_vq_tokens: int | None = None, **overrides) -> LLaDAConfig:
    """A config of ``preset`` whose vocabulary and special ids match ``tokenizer`` (the char tokenizer by default).

    With ``codebook_size`` (MMaDA only) the embedding gets rows for the image codes after the text vocabulary
    (code c is token ``len(tokenizer) + c``, as in MMaDA-8B), and ``num_vq_tokens`` codes per image.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; valid: {sorted(PRESETS)}")
    if codebook_size is not None and not mmada:
        raise ValueError("codebook_size needs mmada=True: image codes are MMaDA's")
    tokenizer = tokenizer or build_char_tokenizer()
    round16 = lambda n: -(-n // 16) * 16  # noqa: E731  rows padded to a multiple of 16, as the 8B vocab is
    text_vocab = round16(len(tokenizer))
    vocab = round16(len(tokenizer) + (codebook_size or 0))
    kwargs = dict(
        PRESETS[preset],
        vocab_size=vocab,
        embedding_size=vocab,
        rope_theta=10000.0,
        mask_token_id=tokenizer.mask_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    kwargs.update(overrides)
    if mmada:
        image = {} if codebook_size is None else {"codebook_size": codebook_size, "num_vq_tokens": num_vq_tokens or 0}
        return MMadaConfig(llm_vocab_size=text_vocab, new_vocab_size=vocab, **image, **kwargs)
    return LLaDAConfig(**kwargs)


def init_tiny(output_dir: str | Path, preset: str = "tiny", seed: int = 0, mmada: bool = False, **overrides) -> Path:
    """Write a random tiny model and its tokenizer to ``output_dir``; ``AutoModel``/``AutoTokenizer`` load it.
    ``overrides`` go to ``tiny_config`` (e.g. ``codebook_size=256, num_vq_tokens=16`` for a t2i model)."""
    tokenizer = build_char_tokenizer()
    config = tiny_config(preset, tokenizer, mmada=mmada, **overrides)
    torch.manual_seed(seed)
    model = (MMadaModelLM if mmada else LLaDAModelLM)(config)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
