"""Config of LLaDA-MoE (inclusionAI's LLaDA-MoE-7B-A1B-Base / -Instruct), a sparse mixture-of-experts LLaDA.

The keys are those of the published checkpoints' ``config.json`` (OLMoE-style names: ``hidden_size``,
``num_experts``, ``expert_intermediate_size``, ``moe_layer_freq``, ``qk_layernorm``, …), so a published config loads
here unchanged and a config written here loads in the published remote code.

``model_type``: the published config says ``"llada"``, the same name as dense LLaDA's config (a different key set
and different parameter names). This class is registered as ``"lladamoe"`` (the name the ``dllm`` library also
uses), every folder saved by unigrpo carries it, and ``unigrpo.models.load_model`` recognises a published
``"llada"`` config that has the MoE keys (``loading.py``).
"""

from __future__ import annotations

from transformers import PretrainedConfig

# Keys of the published config that this implementation keeps for round-trips but does not read, because the
# published forward does not read them either: the published MoE block always routes with a softmax and never
# renormalises the top-k probabilities (``norm_topk_prob`` is overridden to False inside the block), and it has no
# group routing or routed scaling. ``output_router_logits`` / ``router_aux_loss_coef`` only serve the load-balancing
# loss of pre-training, which is not part of RL and is never computed here.
_PASSTHROUGH_DEFAULTS = {
    "norm_topk_prob": None,
    "routed_scaling_factor": 1,
    "router_num_group": -2,
    "router_topk_group": -2,
    "output_router_logits": False,
    "router_aux_loss_coef": 0.01,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "use_cache": False,
}


class LLaDAMoEConfig(PretrainedConfig):
    """Config of LLaDA-MoE (``model_type: lladamoe``; the published checkpoints say ``llada``).

    Code name → meaning. The defaults are the sizes of LLaDA-MoE-7B-A1B as far as the public code and reports show
    them (the tiny presets override every size):
        hidden_size (2048), num_hidden_layers (16), num_attention_heads (16), num_key_value_heads (= heads),
        num_experts (64 routed experts per MoE layer), num_experts_per_tok (8, the top-k), expert_intermediate_size
        (1024, SwiGLU width of one expert), shared_expert_intermediate_size (None: no always-on shared expert; a
        width adds one to every MoE layer), dense_intermediate_size (width of the plain MLP of layers whose
        ``moe_layer_freq`` entry is 0), moe_layer_freq (one 0/1 per layer; 1 = MoE), qk_layernorm (RMSNorm over
        each head of q and k before RoPE), rope_theta (50000), partial_rotary_factor (1.0: fraction of each head
        that is rotated), moe_router_enable_expert_bias (a per-expert bias buffer added to the router
        probabilities), clip_qkv (clamp q, k, v to ±value), vocab_size (157184), mask_token_id (156895; not in the
        published config, whose generation code passes it as an argument).
    """

    model_type = "lladamoe"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size: int = 157184,
        hidden_size: int = 2048,
        dense_intermediate_size: int = 8192,
        expert_intermediate_size: int = 1024,
        shared_expert_intermediate_size: int | None = None,
        num_hidden_layers: int = 16,
        num_attention_heads: int = 16,
        num_key_value_heads: int | None = None,
        hidden_act: str = "silu",
        max_position_embeddings: int = 8192,
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 50000.0,
        partial_rotary_factor: float = 1.0,
        rope_scaling: dict | None = None,
        attention_bias: bool = False,
        clip_qkv: float | None = None,
        num_experts: int = 64,
        num_experts_per_tok: int = 8,
        qk_layernorm: bool = True,
        moe_layer_freq: list[int] | None = None,
        moe_router_enable_expert_bias: bool | None = None,
        moe_router_score_function: str | None = None,
        mask_token_id: int = 156895,
        pad_token_id: int | None = 156892,
        bos_token_id: int | None = None,
        eos_token_id: int | None = 156892,
        tie_word_embeddings: bool = False,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.dense_intermediate_size = dense_intermediate_size
        self.expert_intermediate_size = expert_intermediate_size
        self.shared_expert_intermediate_size = shared_expert_intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_key_value_heads if num_key_value_heads is not None else num_attention_heads
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.partial_rotary_factor = partial_rotary_factor
        self.attention_bias = attention_bias
        self.clip_qkv = clip_qkv
        self.num_experts = num_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.qk_layernorm = qk_layernorm
        self.moe_layer_freq = list(moe_layer_freq) if moe_layer_freq else [1] * num_hidden_layers
        self.moe_router_enable_expert_bias = moe_router_enable_expert_bias
        self.moe_router_score_function = moe_router_score_function
        self.mask_token_id = mask_token_id
        for key, default in _PASSTHROUGH_DEFAULTS.items():
            setattr(self, key, kwargs.pop(key, default))
        kwargs.pop("model_type", None)  # a published config says "llada"; this class is "lladamoe"
        super().__init__(pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
                         tie_word_embeddings=tie_word_embeddings, **kwargs)
        self.validate_architecture()
        if rope_scaling is not None:  # not stored: transformers 5 turns rope_scaling into rope_parameters
            raise ValueError(f"LLaDAMoEConfig: rope_scaling={rope_scaling!r} is not supported (use null)")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def rotary_dim(self) -> int:
        """Rotated channels of each head: int(head_dim · partial_rotary_factor), as transformers' default RoPE."""
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, index: int) -> bool:
        return self.moe_layer_freq[index] != 0

    def validate_architecture(self) -> None:
        """Reject configs this implementation would silently compute wrongly (one clear error each)."""
        name = type(self).__name__
        if self.hidden_act != "silu":
            raise ValueError(f"{name}: hidden_act={self.hidden_act!r} is not supported (supported: 'silu')")
        if self.moe_router_score_function not in (None, "softmax"):
            raise ValueError(f"{name}: moe_router_score_function={self.moe_router_score_function!r} is not supported "
                             "(LLaDA-MoE routes with a softmax; supported: None, 'softmax')")
        if self.tie_word_embeddings:
            raise ValueError(f"{name}: tie_word_embeddings=True is not supported (LLaDA-MoE has an untied lm_head)")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"{name}: hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{name}: num_attention_heads={self.num_attention_heads} is not divisible by "
                             f"num_key_value_heads={self.num_key_value_heads}")
        if not 0 < self.rotary_dim <= self.head_dim or self.rotary_dim % 2:
            raise ValueError(f"{name}: partial_rotary_factor={self.partial_rotary_factor} gives {self.rotary_dim} "
                             f"rotated channels of head_dim {self.head_dim} (need an even number in (0, head_dim])")
        if len(self.moe_layer_freq) != self.num_hidden_layers:
            raise ValueError(f"{name}: moe_layer_freq has {len(self.moe_layer_freq)} entries for "
                             f"num_hidden_layers={self.num_hidden_layers} (one 0/1 per layer)")
        if any(map(self.is_moe_layer, range(self.num_hidden_layers))) and not (
                0 < self.num_experts_per_tok <= self.num_experts):
            raise ValueError(f"{name}: num_experts_per_tok={self.num_experts_per_tok} must be in [1, num_experts="
                             f"{self.num_experts}]")


def is_llada_moe_config(config: dict) -> bool:
    """Whether a ``config.json`` dict describes LLaDA-MoE: its own ``model_type``, or the published ``llada`` name
    with the MoE keys (dense LLaDA's config has ``d_model`` / ``n_layers`` and no experts)."""
    if config.get("model_type") == LLaDAMoEConfig.model_type:
        return True
    architectures = config.get("architectures") or []
    return config.get("model_type") == "llada" and (
        any(str(a).startswith("LLaDAMoE") for a in architectures) or "num_experts" in config)
