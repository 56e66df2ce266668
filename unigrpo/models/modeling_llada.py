"""The LLaDA / MMaDA masked-diffusion transformer as a ``transformers`` ``PreTrainedModel``.

One class serves LLaDA-8B, MMaDA-8B (same blocks, larger vocabulary) and the tiny models of the tests and demo.
Parameter names are those of the published checkpoints (``model.transformer.blocks.{i}.q_proj.weight``, …), so
``from_pretrained`` on a published checkpoint loads every tensor with no missing or unexpected key.

Forward (as the published LLaDA / MMaDA code computes it): pre-norm Llama blocks with bidirectional SDPA
attention (no causal mask), RMSNorm in fp32 (cast back, *then* scaled by the weight), SwiGLU with SiLU on
``ff_proj``, NeoX rotate-half RoPE in fp32 on absolute positions 0..T-1. Logits are ``ff_out(ln_f(x))`` (or
``ln_f(x) @ wte.T`` when ``weight_tying``).

LoRA target modules (PEFT): ``q_proj``, ``k_proj``, ``v_proj``, ``attn_out`` (attention) and ``ff_proj``,
``up_proj``, ``ff_out`` (MLP; note ``ff_out`` also names the LM head, so target ``blocks.*.ff_out`` with a regex, or
use ``LORA_TARGET_MODULES`` below).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MaskedLMOutput

from .block_cache import BlockKVCache
from .configuration_llada import LLaDAConfig, MMadaConfig
from .remote_code import copy_remote_code

# Attention and MLP projections of every block, excluding the LM head (which shares the name ``ff_out``).
LORA_TARGET_MODULES = r".*blocks\.\d+\.(q_proj|k_proj|v_proj|attn_out|ff_proj|up_proj|ff_out)"


class RMSNorm(nn.Module):
    """x · rsqrt(mean(x²) + eps), computed in fp32 and cast back before the weight (LLaDA's order)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rotary_cos_sin(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, ...]:
    """cos/sin tables (T, hd) in fp32 for absolute positions 0..T-1; inv_freq = 1/θ^(2i/hd), emb = cat(f, f)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    freqs = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)  # (T, hd/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hd)
    return emb.cos(), emb.sin()


def apply_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """NeoX rotate-half RoPE on (B, nh, T, hd), in fp32, cast back to t's dtype."""
    t32 = t.float()
    x1, x2 = t32.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (t32 * cos + rotated * sin).to(t.dtype)


def cached_attention(q, k, v, layer_index: int, kv_cache, span_start, attn_mask=None, dropout_p: float = 0.0):
    """Bidirectional SDPA of every architecture: q (B, nh, T, hd), k/v (B, nkv, T, hd) after RoPE → (B, T, nh·hd).

    With a block cache, k/v are stored (full forward) or spliced into the stored ones (span forward) before the
    grouped-query repeat, so the cache holds n_kv_heads (``block_cache.py``)."""
    B, n_heads, T, head_dim = q.shape
    if kv_cache is not None:
        k, v = kv_cache.update(layer_index, k, v, span_start)  # (B, nkv, T_keys, hd)
    if k.shape[1] != n_heads:
        repeat = n_heads // k.shape[1]
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False, dropout_p=dropout_p)
    return y.transpose(1, 2).reshape(B, T, n_heads * head_dim)


class LLaDABlock(GradientCheckpointingLayer):
    """Pre-norm Llama block: h = x + attn_out(attn(attn_norm(x))); out = h + ff_out(silu(ff_proj(n)) · up_proj(n))."""

    def __init__(self, config: LLaDAConfig, layer_index: int = 0):
        super().__init__()
        d, hd = config.d_model, config.head_dim
        self.layer_index = layer_index
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, hd
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, config.n_heads * hd, bias=False)
        self.k_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.v_proj = nn.Linear(d, config.n_kv_heads * hd, bias=False)
        self.attn_out = nn.Linear(config.n_heads * hd, d, bias=False)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)  # gate
        self.up_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size, d, bias=False)  # down

    def attention(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor | None,
                  kv_cache: BlockKVCache | None = None, span_start: int | None = None):
        """x (B, T, d) → (B, T, d). With ``kv_cache``: a full forward stores this layer's keys/values; a span
        forward (x = positions [span_start, span_start + T)) attends to the cached ones outside the span too."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return self.attn_out(cached_attention(q, k, v, self.layer_index, kv_cache, span_start, attn_mask))

    def forward(self, x, cos, sin, attn_mask=None, kv_cache=None, span_start=None):
        h = x + self.attention(self.attn_norm(x), cos, sin, attn_mask, kv_cache, span_start)
        n = self.ff_norm(h)
        return h + self.ff_out(F.silu(self.ff_proj(n)) * self.up_proj(n))


class LLaDAPreTrainedModel(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["LLaDABlock"]
    _supports_sdpa = True
    span_lookbehind = 0
    """Positions before a block-cache span that a span forward must include: none, the logits of a position are
    read from the same position (Dream, whose logits are shifted by one, has 1)."""
    lora_target_modules = LORA_TARGET_MODULES  # this architecture's default LoRA targets (module docstring)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """``PreTrainedModel.save_pretrained``, plus the code files of the checkpoint this model was loaded from
        when its ``auto_map`` names any (``remote_code.py``), so the saved folder loads with the published code."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if kwargs.get("is_main_process", True):
            copy_remote_code(self.name_or_path, save_directory)

    def _init_weights(self, module):
        std = self.config.init_std
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)


class LLaDAModel(LLaDAPreTrainedModel):
    """The trunk, holding ``transformer`` = {wte, blocks, ln_f, ff_out} as in the published checkpoints."""

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        modules = {
            "wte": nn.Embedding(config.embedding_size, config.d_model),
            "blocks": nn.ModuleList(LLaDABlock(config, i) for i in range(config.n_layers)),
            "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
        }
        if not config.weight_tying:
            modules["ff_out"] = nn.Linear(config.d_model, config.embedding_size, bias=False)
        self.transformer = nn.ModuleDict(modules)
        self.gradient_checkpointing = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        kv_cache: BlockKVCache | None = None,
        span_start: int | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T), attention_mask (B, T) with 1 = real token, 0 = padding → logits (B, T, V).

        Block KV cache (``block_cache.py``): with ``kv_cache`` and no ``span_start`` the full forward also stores
        every layer's keys/values; with ``span_start`` s, input_ids (B, W) are positions [s, s + W) of the cached
        sequence of length T, attention_mask still covers all T positions, and the logits are (B, W, V).
        """
        B, W = input_ids.shape
        if span_start is not None and kv_cache is None:
            raise ValueError("span_start needs a kv_cache filled by a full forward")
        if span_start is not None and not 0 <= span_start <= span_start + W <= kv_cache.length:
            raise ValueError(f"span [{span_start}, {span_start + W}) is outside the cache (length "
                             f"{kv_cache.length}); run a full forward with kv_cache first")
        T = W if span_start is None else kv_cache.length
        start = span_start or 0
        x = self.transformer["wte"](input_ids)  # (B, W, d)
        cos, sin = rotary_cos_sin(T, self.config.head_dim, self.config.rope_theta, x.device)
        cos, sin = cos[start : start + W], sin[start : start + W]  # absolute positions of the queries
        attn_mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            # Padding keys are hidden from every query. MMaDA masks (query & key); the rows of padding queries
            # differ, but they are never read, and hiding keys only keeps those rows finite (no all -inf row).
            attn_mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        if kv_cache is not None and span_start is None:
            kv_cache.clear()  # a full forward refreshes the cache
        for block in self.transformer["blocks"]:
            x = block(x, cos, sin, attn_mask, kv_cache, span_start)
        x = self.transformer["ln_f"](x)
        if self.config.weight_tying:
            return F.linear(x, self.transformer["wte"].weight)
        return self.transformer["ff_out"](x)


FORWARD_ARGUMENTS = ("input_ids", "attention_mask", "labels", "kv_cache", "span_start")


def reject_unused_arguments(model_name: str, unused: dict) -> None:
    """A keyword argument the forward does not use is an error, not silently dropped: code written for MMaDA passes
    its padding mask as ``attention_bias`` and would otherwise run without one, unnoticed."""
    if not unused:
        return
    hint = ""
    if "attention_bias" in unused:
        hint = " (MMaDA's (B, 1, T, T) padding bias: pass attention_mask (B, T), 1 = real token, 0 = padding)"
    raise TypeError(f"{model_name}.forward() got unexpected keyword argument(s) {', '.join(map(repr, unused))}"
                    f"{hint}; it accepts {', '.join(FORWARD_ARGUMENTS)}")


def masked_lm_output(logits: torch.Tensor, labels: torch.Tensor | None) -> MaskedLMOutput:
    """The forward's output: logits (B, T, V) and, given labels (B, T), the plain mean cross-entropy (fp32) over the
    positions whose label is not -100 (every architecture's ``labels`` loss)."""
    loss = None
    if labels is not None:
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
    return MaskedLMOutput(loss=loss, logits=logits)


class LLaDAModelLM(LLaDAPreTrainedModel):
    """Masked-diffusion LM: ``model(input_ids, attention_mask=None).logits`` of shape (B, T, V).

    ``mask_token_id`` comes from the config; ``kv_cache`` / ``span_start`` are the sampler's block KV cache
    (``LLaDAModel.forward``; training never passes them). ``labels`` (B, T), when given, yields the mean cross-entropy over
    positions whose label is not -100 (a plain helper; the diffusion losses live in ``unigrpo``).
    """

    def __init__(self, config: LLaDAConfig):
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    @property
    def mask_token_id(self) -> int:
        return self.config.mask_token_id

    def get_input_embeddings(self):
        return self.model.transformer["wte"]

    def set_input_embeddings(self, value):
        self.model.transformer["wte"] = value

    def get_output_embeddings(self):
        return None if self.config.weight_tying else self.model.transformer["ff_out"]

    # The Trainer hands ``num_items_in_batch`` to a forward with ``**kwargs`` and then skips its own division by the
    # accumulation steps; this forward takes no loss kwargs (its ``labels`` loss is a plain mean).
    accepts_loss_kwargs = False

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
        logits = self.model(input_ids, attention_mask=attention_mask, kv_cache=kv_cache, span_start=span_start)
        return masked_lm_output(logits, labels)


class MMadaModelLM(LLaDAModelLM):
    """MMaDA: the LLaDA architecture with a text + image-code vocabulary (``model_type: mmada``)."""

    config_class = MMadaConfig
