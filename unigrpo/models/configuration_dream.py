"""Config of Dream (Dream-org's Dream-v0-7B: a masked-diffusion LM initialised from Qwen2.5-7B).

The keys are those of the published checkpoints' ``config.json`` (``model_type: "Dream"``, capital D, as published),
so a published config loads here unchanged and a config written here loads in the published remote code. The
defaults are the values of Dream-v0-Instruct-7B's ``config.json`` (the published class itself defaults to other,
older sizes; every published config.json sets all of them).
"""

from __future__ import annotations

from transformers import PretrainedConfig


class DreamConfig(PretrainedConfig):
    """Config of Dream (``model_type: "Dream"``).

    Code name → meaning (Dream-v0-7B value):
        hidden_size (3584), intermediate_size (18944, SwiGLU inner width), num_hidden_layers (28),
        num_attention_heads (28), num_key_value_heads (4: grouped-query attention, 7 query heads per key/value
        head), head_dim = hidden_size / num_attention_heads (128), vocab_size (152064, rows of ``embed_tokens`` and
        ``lm_head``), rope_theta (1e6), rms_norm_eps (1e-6), max_position_embeddings (131072),
        tie_word_embeddings (False), mask_token_id (151666, ``<|mask|>``), pad = bos = eos (151643,
        ``<|endoftext|>``).

    Kept for round-trips but not applied, as in the published SDPA attention: ``use_sliding_window``,
    ``sliding_window``, ``max_window_layers`` (all off in the published configs) and ``use_cache`` (no
    autoregressive cache in a diffusion model; the block KV cache is an argument of ``forward``).
    """

    model_type = "Dream"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 152064,
        hidden_size: int = 3584,
        intermediate_size: int = 18944,
        num_hidden_layers: int = 28,
        num_attention_heads: int = 28,
        num_key_value_heads: int | None = 4,
        hidden_act: str = "silu",
        max_position_embeddings: int = 131072,
        initializer_range: float = 0.02,
        rms_norm_eps: float = 1e-6,
        use_cache: bool = False,
        tie_word_embeddings: bool = False,
        rope_theta: float = 1000000.0,
        use_sliding_window: bool = False,
        sliding_window: int | None = None,
        max_window_layers: int = 28,
        attention_dropout: float = 0.0,
        mask_token_id: int = 151666,
        pad_token_id: int = 151643,
        bos_token_id: int | None = 151643,
        eos_token_id: int | None = 151643,
        **kwargs,
    ):
        # ``rope_scaling`` is null in every published Dream config; transformers turns the key into
        # ``rope_parameters`` with a deprecation warning, so it is read here and only the default is accepted.
        rope_scaling = kwargs.pop("rope_scaling", None)
        if rope_scaling and rope_scaling.get("rope_type", rope_scaling.get("type")) != "default":
            raise ValueError(f"DreamConfig: rope_scaling={rope_scaling!r} is not supported (only plain RoPE, "
                             "rope_scaling: null, as in the published Dream configs)")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.initializer_range = initializer_range
        self.rms_norm_eps = rms_norm_eps
        self.use_cache = use_cache
        self.rope_theta = rope_theta
        self.use_sliding_window = use_sliding_window
        self.sliding_window = sliding_window if use_sliding_window else None
        self.max_window_layers = max_window_layers
        self.attention_dropout = attention_dropout
        self.mask_token_id = mask_token_id
        super().__init__(tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
                         bos_token_id=bos_token_id, eos_token_id=eos_token_id, **kwargs)
        self.validate_architecture()

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def validate_architecture(self) -> None:
        """Reject configs this implementation would silently compute wrongly (one clear error each)."""
        if self.hidden_act != "silu":
            raise ValueError(f"DreamConfig: hidden_act={self.hidden_act!r} is not supported (Dream uses 'silu')")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"DreamConfig: hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"DreamConfig: num_attention_heads={self.num_attention_heads} is not divisible by "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if self.mask_token_id is None or not 0 <= self.mask_token_id < self.vocab_size:
            raise ValueError(f"DreamConfig: mask_token_id={self.mask_token_id!r} must be a token id below "
                             f"vocab_size={self.vocab_size}")
