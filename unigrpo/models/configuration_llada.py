"""Configs of the LLaDA / MMaDA masked-diffusion transformer.

The keys are those of the published checkpoints' ``config.json`` (LLaDA-8B-Base/Instruct, MMaDA-8B-*), so that a
published config loads here unchanged and a config written here loads in the published remote code. Only the
keys that change the weights or the forward pass are read; the others (``init_device``, ``precision``,
``flash_attention``, …) are kept so that a written config carries all of them.
"""

from __future__ import annotations

from transformers import PretrainedConfig

# Keys of the published config that carry no meaning for this implementation but are kept for round-trips: the
# published ``LLaDAModelLM`` (and MMaDA's, which subclasses it) reads every field of its ``ModelConfig`` from the
# config, so a config.json without one of them fails there. Defaults are the published ones where they matter.
_PASSTHROUGH_DEFAULTS = {
    "alibi_bias_max": 8.0,
    "attention_layer_norm_with_affine": True,
    "mlp_ratio": 4,
    "block_group_size": 1,
    "multi_query_attention": None,
    "clip_qkv": None,
    "flash_attention": False,
    "init_fn": "mitchell",
    "init_cutoff_factor": None,
    "init_device": "meta",
    "precision": "amp_bf16",
    "embedding_dropout": 0.0,
    "attention_dropout": 0.0,
    "residual_dropout": 0.0,
}


class LLaDAConfig(PretrainedConfig):
    """Config of LLaDA (``model_type: llada``).

    Code name → meaning (8B value):
        d_model (4096), n_heads (32), n_kv_heads (32, grouped-query attention when smaller), n_layers (32),
        mlp_hidden_size (12288, SwiGLU inner width), vocab_size = embedding_size (126464, rows of ``wte``),
        rope_theta (500000), rms_norm_eps (1e-5), weight_tying (False: untied ``ff_out`` head),
        mask_token_id (126336, the diffusion mask), eos_token_id = pad_token_id (126081).
    """

    model_type = "llada"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "num_key_value_heads": "n_kv_heads",
        "intermediate_size": "mlp_hidden_size",
        "max_position_embeddings": "max_sequence_length",
    }

    def __init__(
        self,
        d_model: int = 4096,
        n_heads: int = 32,
        n_kv_heads: int | None = None,
        n_layers: int = 32,
        mlp_hidden_size: int = 12288,
        activation_type: str = "silu",
        block_type: str = "llama",
        layer_norm_type: str = "rms",
        rms_norm_eps: float = 1e-5,
        layer_norm_with_affine: bool = True,
        include_bias: bool = False,
        include_qkv_bias: bool = False,
        bias_for_layer_norm: bool = False,
        attention_layer_norm: bool = False,
        rope: bool = True,
        rope_full_precision: bool = True,
        rope_theta: float = 500000.0,
        alibi: bool = False,
        max_sequence_length: int = 4096,
        vocab_size: int = 126464,
        embedding_size: int | None = 126464,
        weight_tying: bool = False,
        scale_logits: bool = False,
        input_emb_norm: bool = False,
        init_std: float = 0.02,
        mask_token_id: int = 126336,
        eos_token_id: int = 126081,
        pad_token_id: int = 126081,
        bos_token_id: int | None = None,
        use_cache: bool = False,
        **kwargs,
    ):
        self.d_model = d_model
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads if n_kv_heads is not None else n_heads
        self.n_layers = n_layers
        self.mlp_hidden_size = mlp_hidden_size
        self.activation_type = activation_type
        self.block_type = block_type
        self.layer_norm_type = layer_norm_type
        self.rms_norm_eps = rms_norm_eps
        self.layer_norm_with_affine = layer_norm_with_affine
        self.include_bias = include_bias
        self.include_qkv_bias = include_qkv_bias
        self.bias_for_layer_norm = bias_for_layer_norm
        self.attention_layer_norm = attention_layer_norm
        self.rope = rope
        self.rope_full_precision = rope_full_precision
        self.rope_theta = rope_theta
        self.alibi = alibi
        self.max_sequence_length = max_sequence_length
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size if embedding_size is not None else vocab_size
        self.weight_tying = weight_tying
        self.scale_logits = scale_logits
        self.input_emb_norm = input_emb_norm
        self.init_std = init_std
        self.mask_token_id = mask_token_id
        self.use_cache = use_cache
        for key, default in _PASSTHROUGH_DEFAULTS.items():
            setattr(self, key, kwargs.pop(key, default))
        kwargs.setdefault("tie_word_embeddings", weight_tying)
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, bos_token_id=bos_token_id, **kwargs)
        self.validate_architecture()

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def validate_architecture(self) -> None:
        """Reject configs this implementation would silently compute wrongly (one clear error each)."""
        supported = {
            "activation_type": ("silu", "swiglu"),
            "block_type": ("llama",),
            "layer_norm_type": ("rms",),
        }
        for key, allowed in supported.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"LLaDAConfig: {key}={getattr(self, key)!r} is not supported (supported: {allowed})")
        unsupported_true = ("alibi", "include_bias", "include_qkv_bias", "attention_layer_norm", "input_emb_norm")
        for key in unsupported_true:
            if getattr(self, key):
                raise ValueError(f"LLaDAConfig: {key}=True is not supported by this implementation")
        if getattr(self, "num_experts", None):
            raise ValueError(
                f"LLaDAConfig: num_experts={self.num_experts} describes LLaDA-MoE, whose published config also says "
                "model_type 'llada': load it with unigrpo.models.load_model(path), which picks LLaDAMoEConfig, or "
                "set \"model_type\": \"lladamoe\" in its config.json for the Auto classes")
        if not self.rope:
            raise ValueError("LLaDAConfig: rope=False is not supported (LLaDA/MMaDA use rotary embeddings)")
        if self.d_model % self.n_heads:
            raise ValueError(f"LLaDAConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"LLaDAConfig: n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}")
        if self.embedding_size < self.vocab_size:
            raise ValueError(
                f"LLaDAConfig: embedding_size={self.embedding_size} is smaller than vocab_size={self.vocab_size}"
            )


class MMadaConfig(LLaDAConfig):
    """Config of MMaDA (``model_type: mmada``): LLaDA plus image-vocabulary keys.

    Extra keys (8B value): llm_vocab_size (126464, rows of the text model), new_vocab_size (134656 = rows of
    ``wte`` and the head), codebook_size (8192 VQ codes), num_vq_tokens (1024 codes per 512 px image),
    num_new_special_tokens (0). Image token id = len(text tokenizer) + code (126349 + code for MMaDA-8B).
    """

    model_type = "mmada"

    def __init__(
        self,
        llm_vocab_size: int = 126464,
        new_vocab_size: int = 134656,
        codebook_size: int = 8192,
        num_vq_tokens: int = 1024,
        num_new_special_tokens: int = 0,
        llm_model_path: str = "",
        gradient_checkpointing: bool = False,
        vocab_size: int | None = None,
        embedding_size: int | None = None,
        **kwargs,
    ):
        self.llm_vocab_size = llm_vocab_size
        self.new_vocab_size = new_vocab_size
        self.codebook_size = codebook_size
        self.num_vq_tokens = num_vq_tokens
        self.num_new_special_tokens = num_new_special_tokens
        self.llm_model_path = llm_model_path
        self.gradient_checkpointing = gradient_checkpointing
        # The published MMaDA configs carry vocab_size = embedding_size = new_vocab_size (134656).
        vocab_size = vocab_size if vocab_size is not None else new_vocab_size
        embedding_size = embedding_size if embedding_size is not None else vocab_size
        super().__init__(vocab_size=vocab_size, embedding_size=embedding_size, **kwargs)
