"""Tiny presets of the LLaDA and Dream architectures and ``init_tiny``: a random model + tokenizer written to a folder.

The tiny models carry the full published config key set and parameter names (only the sizes differ), so every
test and the CPU demo exercise the same loading code as a full-size checkpoint. The presets are written in LLaDA's
size names; each architecture's builder in ``ARCHITECTURES`` maps them to its own config keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PretrainedConfig

from .configuration_dream import DreamConfig
from .configuration_llada import LLaDAConfig, MMadaConfig
from .configuration_llada_moe import LLaDAMoEConfig
from .modeling_dream import DreamModel
from .modeling_llada import LLaDAModelLM, MMadaModelLM
from .modeling_llada_moe import LLaDAMoEModelLM
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
SIZE_KEYS = ("d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_hidden_size", "max_sequence_length")


def llada_tiny_config(sizes: dict, vocab: int, ids: dict, **overrides) -> LLaDAConfig:
    """LLaDA (``model_type: llada``) with the preset's sizes, the tokenizer's ids and θ = 10000."""
    return LLaDAConfig(**{**sizes, "vocab_size": vocab, "embedding_size": vocab, "rope_theta": 10000.0, **ids,
                          **overrides})


def dream_tiny_config(sizes: dict, vocab: int, ids: dict, **overrides) -> DreamConfig:
    """Dream (``model_type: "Dream"``) with the preset's sizes under Qwen2's key names and grouped-query attention
    (half as many key/value heads as query heads unless ``n_kv_heads`` says otherwise; Dream-v0-7B has 28 / 4)."""
    n_heads = sizes["n_heads"]
    return DreamConfig(**{
        "hidden_size": sizes["d_model"], "num_attention_heads": n_heads,
        "num_key_value_heads": sizes.get("n_kv_heads") or max(1, n_heads // 2),
        "num_hidden_layers": sizes["n_layers"], "intermediate_size": sizes["mlp_hidden_size"],
        "max_position_embeddings": sizes["max_sequence_length"], "max_window_layers": sizes["n_layers"],
        "vocab_size": vocab, "rope_theta": 10000.0, **ids, **overrides})


def llada_moe_tiny_config(sizes: dict, vocab: int, ids: dict, **overrides) -> LLaDAMoEConfig:
    """LLaDA-MoE (``model_type: lladamoe``) shaped like LLaDA-MoE-7B-A1B (every layer MoE, q/k norm, no shared
    expert, multi-head attention) at the preset's sizes: 4 experts, top-2, each half the preset's MLP width, so a
    token's active MLP width is the dense preset's."""
    return LLaDAMoEConfig(**{
        "hidden_size": sizes["d_model"], "num_attention_heads": sizes["n_heads"],
        "num_key_value_heads": sizes.get("n_kv_heads") or sizes["n_heads"], "num_hidden_layers": sizes["n_layers"],
        "num_experts": 4, "num_experts_per_tok": 2, "expert_intermediate_size": sizes["mlp_hidden_size"] // 2,
        "dense_intermediate_size": sizes["mlp_hidden_size"], "shared_expert_intermediate_size": None,
        "moe_layer_freq": [1] * sizes["n_layers"], "qk_layernorm": True,
        "max_position_embeddings": sizes["max_sequence_length"], "vocab_size": vocab, "rope_theta": 10000.0,
        **ids, **overrides})


# architecture name (``unigrpo init-tiny --architecture``) → (config builder, model class); a builder takes the
# preset's sizes (LLaDA names, overridable), the vocabulary rows, the tokenizer's ids and its own config keys.
ARCHITECTURES: dict[str, tuple] = {
    "llada": (llada_tiny_config, LLaDAModelLM),
    "dream": (dream_tiny_config, DreamModel),
    "llada-moe": (llada_moe_tiny_config, LLaDAMoEModelLM),
}


def tiny_config(preset: str = "tiny", tokenizer=None, mmada: bool = False, codebook_size: int | None = None,
                num_vq_tokens: int | None = None, architecture: str = "llada", **overrides) -> PretrainedConfig:
    """A config of ``preset`` whose vocabulary and special ids match ``tokenizer`` (the char tokenizer by default).

    ``architecture`` is a key of ``ARCHITECTURES``; size overrides use the presets' names (``n_layers=1``), other
    overrides the architecture's own config keys. With ``codebook_size`` (MMaDA only) the embedding gets rows for
    the image codes after the text vocabulary (code c is token ``len(tokenizer) + c``, as in MMaDA-8B), and
    ``num_vq_tokens`` codes per image.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r}; valid: {sorted(PRESETS)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; valid: {sorted(ARCHITECTURES)}")
    if (mmada or codebook_size is not None) and architecture != "llada":
        raise ValueError(f"mmada / codebook_size are MMaDA's (architecture 'llada'), not {architecture!r}'s")
    if codebook_size is not None and not mmada:
        raise ValueError("codebook_size needs mmada=True: image codes are MMaDA's")
    tokenizer = tokenizer or build_char_tokenizer()
    round16 = lambda n: -(-n // 16) * 16  # noqa: E731  rows padded to a multiple of 16, as the 8B vocab is
    text_vocab = round16(len(tokenizer))
    vocab = round16(len(tokenizer) + (codebook_size or 0))
    ids = dict(mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id)
    sizes = {**PRESETS[preset], **{k: overrides.pop(k) for k in SIZE_KEYS if k in overrides}}
    if mmada:
        image = {} if codebook_size is None else {"codebook_size": codebook_size, "num_vq_tokens": num_vq_tokens or 0}
        return MMadaConfig(llm_vocab_size=text_vocab, new_vocab_size=vocab, **image, **{
            **sizes, "vocab_size": vocab, "embedding_size": vocab, "rope_theta": 10000.0, **ids, **overrides})
    build = ARCHITECTURES[architecture][0]
    return build(sizes, vocab, ids, **overrides)


def init_tiny(output_dir: str | Path, preset: str = "tiny", seed: int = 0, mmada: bool = False,
              architecture: str = "llada", **overrides) -> Path:
    """Write a random tiny model and its tokenizer to ``output_dir``; ``AutoModel``/``AutoTokenizer`` load it.
    ``overrides`` go to ``tiny_config`` (e.g. ``codebook_size=256, num_vq_tokens=16`` for a t2i model)."""
    tokenizer = build_char_tokenizer()
    config = tiny_config(preset, tokenizer, mmada=mmada, architecture=architecture, **overrides)
    torch.manual_seed(seed)
    model = (MMadaModelLM if mmada else ARCHITECTURES[architecture][1])(config)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir
