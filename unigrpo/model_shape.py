"""The shape of a LLaDA / MMaDA, Dream or LLaDA-MoE transformer that the memory plan (``memory_plan.py``) counts:
parameters, the widths activations scale with, and the projections LoRA can adapt, read from a config without
loading any weight (one reader per architecture, ``READERS``)."""

from __future__ import annotations

from dataclasses import dataclass

# Per architecture, the projections LoRA can target: name → (input shared with, in features, out features); d the
# width, q = heads · head_dim, kv = key/value heads · head_dim, m the SwiGLU width of the layer's adaptable MLP (a
# dense layer's; on a LLaDA-MoE expert layer the shared expert's, never the routed experts': their class's default
# targets leave them out). Projections sharing an input share its saved copy (``lora_activations_per_token``).
_ATTENTION = {"q_proj": ("attn", "d", "q"), "k_proj": ("attn", "d", "kv"), "v_proj": ("attn", "d", "kv")}
PROJECTIONS = {
    "llada": {**_ATTENTION, "attn_out": (None, "q", "d"), "ff_proj": ("mlp", "d", "m"), "up_proj": ("mlp", "d", "m"),
              "ff_out": ("product", "m", "d")},
    "dream": {**_ATTENTION, "o_proj": (None, "q", "d"), "gate_proj": ("mlp", "d", "m"), "up_proj": ("mlp", "d", "m"),
              "down_proj": ("product", "m", "d")},
}
PROJECTIONS["llada-moe"] = PROJECTIONS["dream"]  # the same names (OLMoE's / Qwen2's)
LORA_MODULES = tuple(PROJECTIONS["llada"])

_LLADA_8B = dict(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288, vocab_size=126464,
                 embedding_size=126464, max_sequence_length=4096, weight_tying=False, dtype="bfloat16")
_MMADA_8B = {**_LLADA_8B, "vocab_size": 134656, "embedding_size": 134656}
_DREAM_7B = dict(model_type="Dream", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                 num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
                 torch_dtype="bfloat16")
_LLADA_MOE_7B = dict(model_type="llada", hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                     num_key_value_heads=16, num_experts=64, num_experts_per_tok=8, expert_intermediate_size=1024,
                     dense_intermediate_size=8192, shared_expert_intermediate_size=None, moe_layer_freq=[1] * 16,
                     qk_layernorm=True, vocab_size=157184, tie_word_embeddings=False, torch_dtype="bfloat16")
KNOWN_SHAPES = {  # hub id → config.json keys of the published LLaDA-8B, MMaDA-8B, Dream-v0-7B, LLaDA-MoE-7B-A1B
    "GSAI-ML/LLaDA-8B-Instruct": _LLADA_8B,
    "GSAI-ML/LLaDA-8B-Base": _LLADA_8B,
    "Gen-Verse/MMaDA-8B-Base": _MMADA_8B,
    "Gen-Verse/MMaDA-8B-MixCoT": _MMADA_8B,
    "Dream-org/Dream-v0-Instruct-7B": _DREAM_7B,
    "Dream-org/Dream-v0-Base-7B": _DREAM_7B,
    "inclusionAI/LLaDA-MoE-7B-A1B-Instruct": _LLADA_MOE_7B,  # the sizes LLaDAMoEConfig defaults to
    "inclusionAI/LLaDA-MoE-7B-A1B-Base": _LLADA_MOE_7B,
}
"""Shapes of published checkpoints, for ``unigrpo check --plan`` on a machine without a copy of them."""

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a LLaDA / MMaDA, Dream or LLaDA-MoE transformer that memory depends on (``from_config``)."""

    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    mlp_hidden_size: int  # SwiGLU width of a dense layer's MLP
    vocab: int
    weight_tying: bool = False
    dtype_bytes: int | None = None  # the checkpoint's dtype; None = not recorded
    architecture: str = "llada"  # a key of PROJECTIONS
    qkv_bias: bool = False  # biases on q, k, v (Dream: Qwen2's attention)
    out_bias: bool = False  # a bias on the attention output projection (LLaDA-MoE with attention_bias)
    qk_norm: bool = False  # per-head RMSNorm weights on q and k (LLaDA-MoE's qk_layernorm)
    moe_layers: tuple[bool, ...] = ()  # LLaDA-MoE: which layers route to experts (the others are dense)
    n_experts: int = 0  # routed experts per MoE layer
    experts_per_token: int = 0  # top-k
    expert_mlp: int = 0  # SwiGLU width of one expert
    shared_mlp: int = 0  # SwiGLU width of the always-on shared expert (0: none)

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """From a config object or a dict of config.json keys, read by its architecture's reader (``READERS``):
        LLaDA / MMaDA keys, Dream's (Qwen2's) or LLaDA-MoE's (also under the published ``model_type: llada``)."""
        get = config.get if isinstance(config, dict) else lambda k, default=None: getattr(config, k, default)
        kind = "lladamoe" if get("num_experts") else get("model_type")
        return READERS.get(kind, llada_shape)(get)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def is_moe(self, layer: int) -> bool:
        return bool(self.moe_layers) and self.moe_layers[layer]

    def mlp_params(self, layer: int) -> int:
        """A dense SwiGLU MLP (3·d·m), or an MoE layer's router (d·E), every expert and the shared expert."""
        d = self.d_model
        if not self.is_moe(layer):
            return 3 * d * self.mlp_hidden_size
        return d * self.n_experts + self.n_experts * 3 * d * self.expert_mlp + 3 * d * self.shared_mlp

    def layer_params(self, layer: int) -> int:
        """One block: two RMSNorm weights, q / k / v / output projections (+ biases, q/k norms) and its MLP."""
        d, hd = self.d_model, self.head_dim
        q, kv = self.n_heads * hd, self.n_kv_heads * hd
        attention = 2 * d * q + 2 * d * kv + (q + 2 * kv) * self.qkv_bias + d * self.out_bias + 2 * hd * self.qk_norm
        return 2 * d + attention + self.mlp_params(layer)

    @property
    def block_params(self) -> int:
        """The largest block (what ZeRO-3 / FSDP2 gather at once)."""
        return max(self.layer_params(i) for i in range(self.n_layers))

    @property
    def root_params(self) -> int:
        """Outside the blocks: embedding, final norm and (untied) LM head."""
        return self.vocab * self.d_model * (1 if self.weight_tying else 2) + self.d_model

    @property
    def params(self) -> int:
        return sum(self.layer_params(i) for i in range(self.n_layers)) + self.root_params

    def active_mlp(self, layer: int) -> int:
        """SwiGLU width one token passes through: the dense MLP's, or its top-k experts' plus the shared expert's."""
        if not self.is_moe(layer):
            return self.mlp_hidden_size
        return self.experts_per_token * self.expert_mlp + self.shared_mlp

    @property
    def active_mlp_hidden_size(self) -> int:
        """The mean active width over the layers: activations are affine in it, so n_layers × one block's count
        at this width is the sum over the layers."""
        return -(-sum(self.active_mlp(i) for i in range(self.n_layers)) // self.n_layers)

    @property
    def lora_names(self) -> tuple[str, ...]:
        """The projections this architecture's LoRA can target (``PROJECTIONS``)."""
        return tuple(PROJECTIONS[self.architecture])

    def lora_shapes(self, layer: int) -> dict[str, tuple[int, int]]:
        """name → (in, out) features of each projection of ``layer`` that LoRA can adapt (an MoE layer without a
        shared expert has none in its MLP)."""
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        m = self.shared_mlp if self.is_moe(layer) else self.mlp_hidden_size
        sizes = {"d": self.d_model, "q": q, "kv": kv, "m": m}
        return {name: (sizes[i], sizes[o]) for name, (_, i, o) in PROJECTIONS[self.architecture].items()
                if sizes[i] and sizes[o]}

    def check_lora_targets(self, targets) -> None:
        unknown = sorted(set(targets) - set(self.lora_names))
        if unknown:
            raise ValueError(f"lora target(s) {unknown} are not projections of a {self.architecture} block; "
                             f"valid: {list(self.lora_names)}")

    def lora_params(self, r: int, targets) -> int:
        """LoRA adds A (r × in) and B (out × r) to each targeted projection of every block."""
        self.check_lora_targets(targets)
        return sum(r * (i + o) for layer in range(self.n_layers)
                   for name, (i, o) in self.lora_shapes(layer).items() if name in targets)


def _dtype_bytes(get) -> int | None:
    dtype = get("dtype") or get("torch_dtype")
    return DTYPE_BYTES.get(str(dtype).removeprefix("torch.")) if dtype else None


def llada_shape(get) -> ModelShape:
    """LLaDA / MMaDA keys (``d_model``, ``n_layers``, ``mlp_hidden_size``, ``weight_tying``; Llama names accepted)."""
    d_model = get("d_model") or get("hidden_size")
    n_heads = get("n_heads") or get("num_attention_heads")
    return ModelShape(
        d_model=d_model, n_layers=get("n_layers") or get("num_hidden_layers"), n_heads=n_heads,
        n_kv_heads=get("n_kv_heads") or get("num_key_value_heads") or n_heads,
        mlp_hidden_size=get("mlp_hidden_size") or get("intermediate_size") or 4 * d_model,
        vocab=get("embedding_size") or get("vocab_size"), weight_tying=bool(get("weight_tying", False)),
        dtype_bytes=_dtype_bytes(get))


def dream_shape(get) -> ModelShape:
    """Dream (Qwen2 keys): grouped-query attention with q/k/v biases, ``intermediate_size``, ``tie_word_embeddings``."""
    n_heads = get("num_attention_heads")
    return ModelShape(
        d_model=get("hidden_size"), n_layers=get("num_hidden_layers"), n_heads=n_heads,
        n_kv_heads=get("num_key_value_heads") or n_heads, mlp_hidden_size=get("intermediate_size"),
        vocab=get("vocab_size"), weight_tying=bool(get("tie_word_embeddings", False)), dtype_bytes=_dtype_bytes(get),
        architecture="dream", qkv_bias=True)


def llada_moe_shape(get) -> ModelShape:
    """LLaDA-MoE: ``num_experts`` experts of ``expert_intermediate_size`` (top ``num_experts_per_tok``), an optional
    shared expert, dense layers where ``moe_layer_freq`` is 0, q/k norms, ``attention_bias`` on all four."""
    n_heads, n_layers = get("num_attention_heads"), get("num_hidden_layers")
    bias = bool(get("attention_bias", False))
    return ModelShape(
        d_model=get("hidden_size"), n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=get("num_key_value_heads") or n_heads, mlp_hidden_size=get("dense_intermediate_size") or 0,
        vocab=get("vocab_size"), weight_tying=bool(get("tie_word_embeddings", False)), dtype_bytes=_dtype_bytes(get),
        architecture="llada-moe", qkv_bias=bias, out_bias=bias, qk_norm=bool(get("qk_layernorm", False)),
        moe_layers=tuple(bool(f) for f in (get("moe_layer_freq") or [1] * n_layers)),
        n_experts=get("num_experts"), experts_per_token=get("num_experts_per_tok"),
        expert_mlp=get("expert_intermediate_size"), shared_mlp=get("shared_expert_intermediate_size") or 0)


READERS = {"llada": llada_shape, "mmada": llada_shape, "Dream": dream_shape, "lladamoe": llada_moe_shape}
"""config.json ``model_type`` → its shape reader (LLaDA-MoE is also recognised by ``num_experts``)."""
