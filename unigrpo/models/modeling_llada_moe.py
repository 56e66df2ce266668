"""LLaDA-MoE (inclusionAI's LLaDA-MoE-7B-A1B) as a ``transformers`` ``PreTrainedModel``, weight-compatible with the
published checkpoints.

Parameter names are the published ones (OLMoE layout): ``model.embed_tokens``, ``model.layers.{i}.input_layernorm``,
``self_attn.{q,k,v,o}_proj`` (+ ``self_attn.{q,k}_norm`` with ``qk_layernorm``), ``post_attention_layernorm``,
``mlp.gate`` (the router, hidden → num_experts), ``mlp.experts.{e}.{gate,up,down}_proj``, ``mlp.expert_bias`` (a
buffer, only with ``moe_router_enable_expert_bias``), ``shared_expert.{gate,up,down}_proj`` (only with
``shared_expert_intermediate_size``; it sits on the layer, beside ``mlp``), ``mlp.{gate,up,down}_proj`` for a dense
layer (``moe_layer_freq`` entry 0), ``model.norm``, ``lm_head``.

Forward (as the published code computes it), per layer, pre-norm:
    h = x + o_proj(attn(input_layernorm(x)))       bidirectional SDPA; q, k: per-head RMSNorm (qk_layernorm), then
                                                   NeoX rotate-half RoPE on the first rotary_dim channels
    n = post_attention_layernorm(h)
    p = softmax(gate(n)) in fp32 (+ expert_bias)   router probabilities over num_experts
    w, e = top-k(p)                                the k largest, NOT renormalised to sum 1
    out = h + Σ_j w_j · expert_{e_j}(n) (+ shared_expert(n))      each expert: down(silu(gate(n)) · up(n))
logits = lm_head(norm(x)); position i gives the distribution of token i (masked-LM logits, no shift: LLaDA-MoE was
trained as a masked diffusion model from scratch). ``span_lookbehind = 0``.

Differences from dense LLaDA (``modeling_llada.py``): OLMoE parameter names instead of OLMo's; routed experts;
q/k RMSNorm; RoPE θ 50000 and optionally partial; RoPE tables are cast to the activation dtype before rotating (as
transformers' Llama-family code does), where LLaDA rotates in fp32. The padding mask: the published code drops the
attention mask (every key is visible); here padding keys are hidden, as for LLaDA, so a left-padded row gives the
logits of the unpadded one. The published embedding declares ``padding_idx = pad_token_id`` (that row gets no
gradient); here it is a plain embedding, since unigrpo pads answers with EOS, which may share the pad id. The
router's load-balancing loss is a pre-training term and is never computed.

LoRA targets (``LORA_TARGET_MODULES``): the attention projections of every layer, the shared expert and the MLP of
dense layers. Not the routed experts: LLaDA-MoE-7B has 16 × 64 of them, each sees only the tokens routed to it (a
sparse, noisy gradient) and adapters on all of them would outnumber the rest many times; not the router (``mlp.gate``,
a plain Linear named like a projection): moving it changes which experts run, a discrete jump that a KL-regularised
RL step should not make. LLaDA-MoE-7B has no shared expert and no dense layer, so there LoRA adapts attention only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from .block_cache import BlockKVCache
from .lm_head import EmbedTokensLMHeadMixin
from .configuration_llada_moe import LLaDAMoEConfig
from .modeling_llada import RMSNorm, cached_attention, masked_lm_output, reject_unused_arguments, rotary_cos_sin
from .remote_code import copy_remote_code

LORA_TARGET_MODULES = (r".*layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
                       r"|shared_expert\.(gate_proj|up_proj|down_proj)|mlp\.(gate_proj|up_proj|down_proj))")


def apply_partial_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the first rd = cos.shape[-1] channels of t (B, h, T, hd); the rest pass through.
    The fp32 tables are cast to t's dtype first (the published order)."""
    rd = cos.shape[-1]
    cos, sin = cos.to(t.dtype), sin.to(t.dtype)
    rot, rest = t[..., :rd], t[..., rd:]
    x1, x2 = rot.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)


class LLaDAMoEMLP(nn.Module):
    """SwiGLU MLP: down_proj(silu(gate_proj(x)) · up_proj(x)); an expert, the shared expert or a dense layer's MLP."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LLaDAMoESparseMoeBlock(nn.Module):
    """Top-k routing over ``num_experts`` SwiGLU experts: Σ_j w_j · expert_{e_j}(x), weights not renormalised."""

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__()
        self.num_experts, self.top_k = config.num_experts, config.num_experts_per_tok
        self.gate = nn.Linear(config.hidden_size, config.num_experts, bias=False)  # the router
        self.experts = nn.ModuleList(LLaDAMoEMLP(config.hidden_size, config.expert_intermediate_size)
                                     for _ in range(config.num_experts))
        if config.moe_router_enable_expert_bias:
            self.register_buffer("expert_bias", torch.zeros(config.num_experts))
        else:
            self.expert_bias = None

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, d) → weights (N, k) in x's dtype and expert indices (N, k): the top-k of softmax(gate(x)) in fp32."""
        probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float32)  # (N, E)
        if self.expert_bias is not None:
            probs = probs + self.expert_bias  # the published code selects AND weights with the biased values
        weights, experts = torch.topk(probs, self.top_k, dim=-1)
        return weights.to(x.dtype), experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, d)
        weights, experts = self.route(x)
        out = torch.zeros_like(x)
        for index, expert in enumerate(self.experts):
            # Every expert runs, on its (possibly empty) token set, so each one is in the autograd graph: data
            # parallel wrappers then see a gradient (zero) for experts no token chose this step.
            token, slot = torch.where(experts == index)  # (n,), (n,)
            out.index_add_(0, token, expert(x[token]) * weights[token, slot, None])
        return out.reshape(shape)


class LLaDAMoEAttention(nn.Module):
    """Bidirectional multi-head attention with optional per-head q/k RMSNorm, partial RoPE and the block KV cache."""

    def __init__(self, config: LLaDAMoEConfig, layer_index: int):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.layer_index, self.clip_qkv = layer_index, config.clip_qkv
        self.n_heads, self.n_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=config.attention_bias)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=config.attention_bias)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=config.attention_bias)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=config.attention_bias)
        if config.qk_layernorm:
            self.q_norm = RMSNorm(hd, config.rms_norm_eps)
            self.k_norm = RMSNorm(hd, config.rms_norm_eps)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x (B, T, d) → q (B, nh, T, hd), k, v (B, nkv, T, hd), before RoPE: q/k per-head norm, then the clamp."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        if self.clip_qkv is not None:
            q, k, v = (t.clamp(-self.clip_qkv, self.clip_qkv) for t in (q, k, v))
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def forward(self, x, cos, sin, attn_mask=None, kv_cache: BlockKVCache | None = None, span_start=None):
        """x (B, T, d) → (B, T, d); the cache stores keys after RoPE, before the grouped-query repeat (as LLaDA's)."""
        q, k, v = self.project(x)
        q, k = apply_partial_rotary(q, cos, sin), apply_partial_rotary(k, cos, sin)
        return self.o_proj(cached_attention(q, k, v, self.layer_index, kv_cache, span_start, attn_mask))


class LLaDAMoEDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm layer: attention, then the MoE block (+ shared expert) or, where moe_layer_freq is 0, a dense MLP."""

    def __init__(self, config: LLaDAMoEConfig, layer_index: int):
        super().__init__()
        d = config.hidden_size
        self.input_layernorm = RMSNorm(d, config.rms_norm_eps)
        self.self_attn = LLaDAMoEAttention(config, layer_index)
        self.post_attention_layernorm = RMSNorm(d, config.rms_norm_eps)
        if config.is_moe_layer(layer_index):
            self.mlp = LLaDAMoESparseMoeBlock(config)
            if config.shared_expert_intermediate_size is not None:
                self.shared_expert = LLaDAMoEMLP(d, config.shared_expert_intermediate_size)
        else:
            self.mlp = LLaDAMoEMLP(d, config.dense_intermediate_size)

    def forward(self, x, cos, sin, attn_mask=None, kv_cache=None, span_start=None):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, kv_cache, span_start)
        n = self.post_attention_layernorm(h)
        out = self.mlp(n)
        if hasattr(self, "shared_expert"):
            out = out + self.shared_expert(n)
        return h + out


class LLaDAMoEPreTrainedModel(PreTrainedModel):
    config_class = LLaDAMoEConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDAMoEDecoderLayer"]
    _supports_sdpa = True

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the published code files when the source folder's ``auto_map``
        names them (``remote_code.py``), so a fine-tuned folder still loads with ``trust_remote_code``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            copy_remote_code(self.name_or_path, save_directory)

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, LLaDAMoESparseMoeBlock) and module.expert_bias is not None:
            nn.init.zeros_(module.expert_bias)


class LLaDAMoEModel(LLaDAMoEPreTrainedModel):
    """The trunk: ``embed_tokens``, ``layers``, ``norm`` → final hidden states (B, W, d)."""

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LLaDAMoEDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                kv_cache: BlockKVCache | None = None, span_start: int | None = None) -> torch.Tensor:
        """input_ids (B, W), attention_mask (B, T) with 1 = real token → hidden states (B, W, d).

        Block KV cache exactly as ``LLaDAModel.forward``: with ``kv_cache`` and no ``span_start`` a full forward
        stores every layer's keys/values; with ``span_start`` s, input_ids are positions [s, s + W) of the cached
        sequence of length T and attention_mask still covers all T positions.
        """
        B, W = input_ids.shape
        if span_start is not None and kv_cache is None:
            raise ValueError("span_start needs a kv_cache filled by a full forward")
        if span_start is not None and not 0 <= span_start <= span_start + W <= kv_cache.length:
            raise ValueError(f"span [{span_start}, {span_start + W}) is outside the cache (length "
                             f"{kv_cache.length}); run a full forward with kv_cache first")
        T = W if span_start is None else kv_cache.length
        start = span_start or 0
        x = self.embed_tokens(input_ids)  # (B, W, d)
        cos, sin = rotary_cos_sin(T, self.config.rotary_dim, self.config.rope_theta, x.device)  # (T, rd)
        cos, sin = cos[start: start + W], sin[start: start + W]  # absolute positions of the queries
        attn_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            attn_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): padding keys hidden from all queries
        if kv_cache is not None and span_start is None:
            kv_cache.clear()  # a full forward refreshes the cache
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask, kv_cache, span_start)
        return self.norm(x)


class LLaDAMoEModelLM(EmbedTokensLMHeadMixin, LLaDAMoEPreTrainedModel):
    """Masked-diffusion LM: ``model(input_ids, attention_mask=None).logits`` (B, T, V), logits[:, i] = token i.

    ``kv_cache`` / ``span_start`` are the sampler's block KV cache; ``labels`` (B, T) gives the mean cross-entropy
    over positions whose label is not -100. No router auxiliary loss is ever added.
    """

    span_lookbehind = 0  # position i's logits come from position i's hidden state (no shift)
    lora_target_modules = LORA_TARGET_MODULES  # this architecture's documented LoRA targets (module docstring)
    accepts_loss_kwargs = False  # the labels loss is a plain mean; the Trainer must not pass num_items_in_batch

    def __init__(self, config: LLaDAMoEConfig):
        super().__init__(config)
        self.model = LLaDAMoEModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None,
                labels: torch.LongTensor | None = None, kv_cache: BlockKVCache | None = None,
                span_start: int | None = None, **unused) -> MaskedLMOutput:
        reject_unused_arguments(type(self).__name__, unused)
        hidden = self.model(input_ids, attention_mask=attention_mask, kv_cache=kv_cache, span_start=span_start)
        return masked_lm_output(self.lm_head(hidden), labels)
