"""The Dream masked-diffusion transformer (Dream-v0-7B) as a ``transformers`` ``PreTrainedModel``.

Class and parameter names are those of the published checkpoints: ``DreamModel`` is the masked LM (the class that
Dream's ``config.json`` names in ``architectures``) holding ``model`` (``DreamBaseModel``: ``embed_tokens``,
``layers.{i}.self_attn.{q,k,v,o}_proj`` with biases on q/k/v, ``layers.{i}.mlp.{gate,up,down}_proj``,
``layers.{i}.input_layernorm``, ``layers.{i}.post_attention_layernorm``, ``norm``) and ``lm_head``, so
``from_pretrained`` on a published checkpoint loads every tensor with no missing or unexpected key.

Forward (as the published code computes it): Qwen2 pre-norm decoder layers *without* the causal mask
(bidirectional SDPA), RMSNorm in fp32 cast back before the weight, grouped-query attention, SiLU-gated MLP, NeoX
rotate-half RoPE with θ = ``rope_theta`` whose cos/sin are computed in fp32 and cast to the hidden dtype. A row's
positions count its real tokens from 0 (Dream's ``generate`` with left padding: cumsum(mask) − 1, padding at 1);
without padding they are 0..T-1.

Logits — the one place this class differs from the published one, on purpose: Dream was adapted from an
autoregressive model and its network's output at position i predicts the token at i + 1. Every unigrpo model
returns masked-LM logits (``logits[:, i]`` is the distribution of the token *at* position i: what the samplers,
the likelihood estimators and the SFT loss read), so ``forward`` realigns the network's output exactly as Dream's
``generation_utils`` does, ``cat([raw[:, :1], raw[:, :-1]], dim=1)`` (position 0 repeats raw[0]; it is a prompt
position and never read). Hence a span forward over [s, s + W) gives the right logits only from s + 1 on:
``span_lookbehind = 1`` tells the sampler to forward from s − 1 and drop the first logit.

LoRA target modules (PEFT): ``DREAM_LORA_TARGET_MODULES`` below (every layer's attention and MLP projections, not
``lm_head``).
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
from .configuration_dream import DreamConfig
from .modeling_llada import RMSNorm, cached_attention, masked_lm_output, reject_unused_arguments
from .remote_code import copy_remote_code

# Attention and MLP projections of every decoder layer, excluding the LM head.
DREAM_LORA_TARGET_MODULES = (r".*layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)"
                             r"|mlp\.(gate_proj|up_proj|down_proj))")


def dream_positions(attention_mask: torch.Tensor | None, seq_len: int, device: torch.device) -> torch.Tensor:
    """RoPE positions (B, T), or (1, T) without a mask: each row's real tokens numbered 0, 1, … from its first real
    one, padding at 1 (Dream's ``generate``: ``tok_idx``). RoPE only sees differences, so a left-padded row gets the
    same attention as the same row unpadded."""
    if attention_mask is None:
        return torch.arange(seq_len, device=device)[None]
    real = attention_mask.bool()
    return (real.long().cumsum(-1) - 1).masked_fill(~real, 1)


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                   dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """cos/sin (B, T, hd) for positions (B, T): inv_freq = 1/θ^(2i/hd), emb = cat(f, f), computed in fp32 and cast
    to the hidden dtype (Dream's rotary embedding)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # (B, T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeoX rotate-half RoPE on t (B, h, T, hd) with cos/sin (B, T, hd), in t's dtype (as Dream; LLaDA's is fp32)."""
    x1, x2 = t.chunk(2, dim=-1)
    return t * cos[:, None] + torch.cat((-x2, x1), dim=-1) * sin[:, None]


class DreamAttention(nn.Module):
    """Qwen2 attention without the causal mask: q/k/v projections with biases, o_proj without; GQA."""

    def __init__(self, config: DreamConfig, layer_index: int):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.layer_index, self.dropout = layer_index, config.attention_dropout
        self.n_heads, self.n_kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, hd
        self.q_proj = nn.Linear(d, self.n_heads * hd, bias=True)
        self.k_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.v_proj = nn.Linear(d, self.n_kv_heads * hd, bias=True)
        self.o_proj = nn.Linear(self.n_heads * hd, d, bias=False)

    def forward(self, x, cos, sin, attn_mask=None, kv_cache: BlockKVCache | None = None, span_start=None):
        """x (B, W, d) → (B, W, d). With ``kv_cache``: a full forward stores this layer's keys (after RoPE) and
        values; a span forward (x = positions [span_start, span_start + W)) attends to the cached ones elsewhere."""
        B, W, _ = x.shape
        q = self.q_proj(x).view(B, W, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, W, hd)
        k = self.k_proj(x).view(B, W, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, W, hd)
        v = self.v_proj(x).view(B, W, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        dropout = self.dropout if self.training else 0.0
        return self.o_proj(cached_attention(q, k, v, self.layer_index, kv_cache, span_start, attn_mask, dropout))


class DreamMLP(nn.Module):
    """down_proj(silu(gate_proj(x)) · up_proj(x))."""

    def __init__(self, config: DreamConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DreamDecoderLayer(GradientCheckpointingLayer):
    """h = x + self_attn(input_layernorm(x)); out = h + mlp(post_attention_layernorm(h))."""

    def __init__(self, config: DreamConfig, layer_index: int = 0):
        super().__init__()
        self.self_attn = DreamAttention(config, layer_index)
        self.mlp = DreamMLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, attn_mask=None, kv_cache=None, span_start=None):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, kv_cache, span_start)
        return h + self.mlp(self.post_attention_layernorm(h))


class DreamPreTrainedModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["DreamDecoderLayer"]
    _supports_sdpa = True
    span_lookbehind = 1
    """Positions before a span that a span forward must include: the logits of position s come from the network's
    output at s − 1 (module docstring). LLaDA / MMaDA have 0."""
    lora_target_modules = DREAM_LORA_TARGET_MODULES

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the code files of the checkpoint this model was loaded from
        when its ``auto_map`` names any (``remote_code.py``), so the saved folder loads with the published code."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            copy_remote_code(self.name_or_path, save_directory)

    def _init_weights(self, module):
        """As the published class: normal(0, initializer_range) weights, zero biases, the padding row zero."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class DreamBaseModel(DreamPreTrainedModel):
    """The trunk: ``embed_tokens``, ``layers``, ``norm`` → final hidden states (B, T, d)."""

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        # As published: the padding row of the embedding gets no gradient (pad = EOS in Dream's tokenizer).
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(DreamDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        kv_cache: BlockKVCache | None = None,
        span_start: int | None = None,
    ) -> torch.Tensor:
        """input_ids (B, W), attention_mask (B, T) with 1 = real token, 0 = padding → hidden states (B, W, d).

        Block KV cache (``block_cache.py``): with ``kv_cache`` and no ``span_start`` the full forward (W = T) also
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
        padded = attention_mask is not None and not bool(attention_mask.all())  # the forward's one host read
        x = self.embed_tokens(input_ids)  # (B, W, d)
        positions = dream_positions(attention_mask if padded else None, T, x.device)[:, start : start + W]
        cos, sin = rotary_cos_sin(positions, self.config.head_dim, self.config.rope_theta, x.dtype)  # (B or 1, W, hd)
        attn_mask = None
        if padded:
            # Padding keys are hidden from every query. Dream's generate also hides the padding queries' rows; those
            # rows are never read, and hiding keys only keeps them finite (no all -inf row).
            attn_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        if kv_cache is not None and span_start is None:
            kv_cache.clear()  # a full forward refreshes the cache
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask, kv_cache, span_start)
        return self.norm(x)


def align_to_masked_lm(raw: torch.Tensor) -> torch.Tensor:
    """Dream's next-token outputs → masked-LM logits: position i gets the output at i − 1, position 0 keeps its own
    (Dream ``generation_utils``: ``cat([logits[:, :1], logits[:, :-1]], dim=1)``). raw (B, T, V) → (B, T, V)."""
    return torch.cat([raw[:, :1], raw[:, :-1]], dim=1)


class DreamModel(EmbedTokensLMHeadMixin, DreamPreTrainedModel):
    """Masked-diffusion LM: ``model(input_ids, attention_mask=None).logits`` (B, T, V), *aligned*: ``logits[:, i]``
    is the distribution of the token at position i (the published class returns the unaligned next-token
    outputs; see the module docstring).

    ``mask_token_id`` comes from the config; ``kv_cache`` / ``span_start`` are the sampler's block KV cache
    (``DreamBaseModel.forward``; a span forward's first ``span_lookbehind`` logits are not those of their position).
    ``labels`` (B, T), when given, yields the mean cross-entropy of the aligned logits over positions whose label is
    not -100 (a plain helper; the diffusion losses live in ``unigrpo``).
    """

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}  # tied only when tie_word_embeddings
    # The Trainer hands ``num_items_in_batch`` to a forward with ``**kwargs`` and then skips its own division by the
    # accumulation steps; this forward takes no loss kwargs (its ``labels`` loss is a plain mean).
    accepts_loss_kwargs = False

    def __init__(self, config: DreamConfig):
        super().__init__(config)
        self.model = DreamBaseModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        kv_cache: BlockKVCache | None = None,
        span_start: int | None = None,
        **unused,
    ) -> MaskedLMOutput:
        reject_unused_arguments(type(self).__name__, unused)
        hidden = self.model(input_ids, attention_mask=attention_mask, kv_cache=kv_cache, span_start=span_start)
        return masked_lm_output(align_to_masked_lm(self.lm_head(hidden)), labels)  # logits (B, W, V)
