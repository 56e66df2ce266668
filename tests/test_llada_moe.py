"""LLaDA-MoE: the published key table and forward (re-implemented here in plain torch), both directions, padding,
the ``model_type: llada`` collision with dense LLaDA, the block KV cache, LoRA targets and the tiny preset."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from unigrpo.models import LLaDAModelLM, LLaDAMoEConfig, LLaDAMoEModelLM, init_tiny, load_model

# Two small configs that between them take every branch of the published forward: grouped-query attention,
# q/k norm, a dense first layer, a shared expert (A); expert bias, partial RoPE, no q/k norm, MHA (B).
CONFIGS = {
    "A": dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
              moe_layer_freq=[0, 1, 1], num_experts=4, num_experts_per_tok=2, expert_intermediate_size=16,
              shared_expert_intermediate_size=24, dense_intermediate_size=48, qk_layernorm=True,
              partial_rotary_factor=1.0, rope_theta=50000.0, moe_router_enable_expert_bias=None),
    "B": dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
              moe_layer_freq=[1, 1], num_experts=4, num_experts_per_tok=2, expert_intermediate_size=16,
              shared_expert_intermediate_size=None, dense_intermediate_size=48, qk_layernorm=False,
              partial_rotary_factor=0.5, rope_theta=10000.0, moe_router_enable_expert_bias=True),
}
# Keys of the published config.json (configuration_lladamoe.py's LLaDAConfig), written as the hub's file would be.
PUBLISHED_DEFAULTS = dict(hidden_act="silu", max_position_embeddings=8192, initializer_range=0.02, rms_norm_eps=1e-5,
                          use_cache=False, pad_token_id=1, bos_token_id=None, eos_token_id=2,
                          tie_word_embeddings=False, rope_scaling=None, attention_bias=False, attention_dropout=0.0,
                          clip_qkv=None, output_router_logits=False, router_aux_loss_coef=0.01, norm_topk_prob=True,
                          moe_router_score_function="softmax", routed_scaling_factor=1, router_num_group=-2,
                          router_topk_group=-2)


def published_config(name: str) -> dict:
    return {"model_type": "llada", "architectures": ["LLaDAMoEModelLM"],
            "auto_map": {"AutoConfig": "configuration_lladamoe.LLaDAConfig",
                         "AutoModel": "modeling_lladamoe.LLaDAMoEModelLM"},
            **PUBLISHED_DEFAULTS, **CONFIGS[name]}


def published_shapes(c: dict) -> dict[str, list[int]]:
    """The published checkpoint's tensor names and shapes (model.safetensors.index.json's layout)."""
    d, hd, nkv = c["hidden_size"], c["hidden_size"] // c["num_attention_heads"], c["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": [c["vocab_size"], d], "model.norm.weight": [d],
              "lm_head.weight": [c["vocab_size"], d]}

    def mlp(prefix, width):
        shapes.update({f"{prefix}.gate_proj.weight": [width, d], f"{prefix}.up_proj.weight": [width, d],
                       f"{prefix}.down_proj.weight": [d, width]})

    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        shapes.update({f"{p}.input_layernorm.weight": [d], f"{p}.post_attention_layernorm.weight": [d],
                       f"{p}.self_attn.q_proj.weight": [d, d], f"{p}.self_attn.k_proj.weight": [nkv * hd, d],
                       f"{p}.self_attn.v_proj.weight": [nkv * hd, d], f"{p}.self_attn.o_proj.weight": [d, d]})
        if c["qk_layernorm"]:
            shapes.update({f"{p}.self_attn.q_norm.weight": [hd], f"{p}.self_attn.k_norm.weight": [hd]})
        if c["moe_layer_freq"][i] == 0:
            mlp(f"{p}.mlp", c["dense_intermediate_size"])
            continue
        shapes[f"{p}.mlp.gate.weight"] = [c["num_experts"], d]
        if c["moe_router_enable_expert_bias"]:
            shapes[f"{p}.mlp.expert_bias"] = [c["num_experts"]]
        for e in range(c["num_experts"]):
            mlp(f"{p}.mlp.experts.{e}", c["expert_intermediate_size"])
        if c["shared_expert_intermediate_size"] is not None:
            mlp(f"{p}.shared_expert", c["shared_expert_intermediate_size"])
    return shapes


def random_state_dict(c: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights large enough that routing, norms and attention all matter (std 0.2; norm gains around 1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in published_shapes(c).items():
        if key.endswith("norm.weight") or key.endswith("layernorm.weight"):
            sd[key] = 1 + 0.2 * torch.randn(shape, generator=g)
        elif key.endswith("expert_bias"):
            sd[key] = 0.05 * torch.randn(shape, generator=g)
        else:
            sd[key] = 0.2 * torch.randn(shape, generator=g)
    return sd


def write_published_checkpoint(path, name: str, sd=None):
    path.mkdir(parents=True)
    c = published_config(name)
    (path / "config.json").write_text(json.dumps(c))
    sd = random_state_dict(c) if sd is None else sd
    save_file(sd, str(path / "model.safetensors"))
    return c, sd


# ---- the published forward, re-implemented from its formulas (independently of unigrpo's class) ----

def ref_rms(x, w, eps):
    return w * (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def ref_rope(t, positions, rd, theta):
    """Rotate-half RoPE on the first rd channels of t (B, h, T, hd) at the given absolute positions (T,)."""
    inv = 1.0 / theta ** (torch.arange(0, rd, 2).float() / rd)
    emb = torch.cat([positions.float()[:, None] * inv[None]] * 2, dim=-1)  # (T, rd)
    rot, rest = t[..., :rd], t[..., rd:]
    half = rd // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    return torch.cat([rot * emb.cos() + rotated * emb.sin(), rest], dim=-1)


def ref_mlp(sd, prefix, x):
    return (F.silu(x @ sd[f"{prefix}.gate_proj.weight"].T) * (x @ sd[f"{prefix}.up_proj.weight"].T)) @ sd[
        f"{prefix}.down_proj.weight"].T


def ref_moe(sd, c, p, x):
    """Every expert on every token, then the top-k of softmax(gate(x)) (+ bias) picked and weighted, un-renormalised."""
    probs = torch.softmax(x @ sd[f"{p}.mlp.gate.weight"].T, dim=-1)  # (B, T, E)
    if f"{p}.mlp.expert_bias" in sd:
        probs = probs + sd[f"{p}.mlp.expert_bias"]
    weights, chosen = probs.topk(c["num_experts_per_tok"], dim=-1)  # (B, T, k)
    every = torch.stack([ref_mlp(sd, f"{p}.mlp.experts.{e}", x) for e in range(c["num_experts"])], dim=-2)
    picked = every.gather(-2, chosen[..., None].expand(*chosen.shape, x.shape[-1]))  # (B, T, k, d)
    out = (weights[..., None] * picked).sum(-2)
    if f"{p}.shared_expert.gate_proj.weight" in sd:
        out = out + ref_mlp(sd, f"{p}.shared_expert", x)
    return out


def reference_logits(sd, c, ids, key_mask=None):
    """The published LLaDAMoEModelLM forward (bidirectional, positions 0..T-1); ``key_mask`` (B, T) hides padding
    keys as the dllm library's copy of the published code does (the hub's code drops the mask)."""
    B, T = ids.shape
    d, nh, nkv, eps = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["rms_norm_eps"]
    hd = d // nh
    rd = int(hd * c["partial_rotary_factor"])
    x = sd["model.embed_tokens.weight"][ids]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        n = ref_rms(x, sd[f"{p}.input_layernorm.weight"], eps)
        q = (n @ sd[f"{p}.self_attn.q_proj.weight"].T).view(B, T, nh, hd)
        k = (n @ sd[f"{p}.self_attn.k_proj.weight"].T).view(B, T, nkv, hd)
        v = (n @ sd[f"{p}.self_attn.v_proj.weight"].T).view(B, T, nkv, hd).transpose(1, 2)
        if c["qk_layernorm"]:
            q = ref_rms(q, sd[f"{p}.self_attn.q_norm.weight"], eps)
            k = ref_rms(k, sd[f"{p}.self_attn.k_norm.weight"], eps)
        q = ref_rope(q.transpose(1, 2), torch.arange(T), rd, c["rope_theta"])
        k = ref_rope(k.transpose(1, 2), torch.arange(T), rd, c["rope_theta"])
        k, v = k.repeat_interleave(nh // nkv, dim=1), v.repeat_interleave(nh // nkv, dim=1)
        scores = q @ k.transpose(-1, -2) / hd**0.5  # (B, nh, T, T)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask.bool()[:, None, None, :], float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v
        h = x + att.transpose(1, 2).reshape(B, T, d) @ sd[f"{p}.self_attn.o_proj.weight"].T
        m = ref_rms(h, sd[f"{p}.post_attention_layernorm.weight"], eps)
        x = h + (ref_mlp(sd, f"{p}.mlp", m) if c["moe_layer_freq"][i] == 0 else ref_moe(sd, c, p, m))
    return ref_rms(x, sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


def left_padded_batch(vocab, lengths=(7, 10), seed=1):
    g = torch.Generator().manual_seed(seed)
    T = max(lengths)
    ids = torch.randint(3, vocab, (len(lengths), T), generator=g)
    mask = torch.tensor([[0] * (T - n) + [1] * n for n in lengths])
    return ids, mask


# ---- equivalence ----

@pytest.mark.parametrize("name", ["A", "B"])
def test_published_checkpoint_gives_the_published_logits_with_left_padding(tmp_path, name):
    c, sd = write_published_checkpoint(tmp_path / "ckpt", name)
    model = load_model(tmp_path / "ckpt").eval()
    assert isinstance(model, LLaDAMoEModelLM) and set(model.state_dict()) == set(sd)
    ids, mask = left_padded_batch(c["vocab_size"])
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
        unpadded = model(ids[:1, 3:]).logits
    reference = reference_logits(sd, c, ids, key_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=1e-5)  # float32 rounding differs by CPU
    torch.testing.assert_close(ours[1], reference_logits(sd, c, ids[1:])[0], atol=1e-5, rtol=1e-5)  # the hub's forward
    # padding is invisible: the padded row's real positions give the unpadded row's logits (RoPE is relative)
    assert torch.allclose(ours[0, 3:], unpadded[0], atol=1e-4)
    assert reference.abs().max() > 1 and reference[real].std() > 0.5  # not a near-constant output


@pytest.mark.parametrize("name", ["A", "B"])
def test_saved_model_loads_by_name_into_the_published_forward(tmp_path, name):
    config = LLaDAMoEConfig(**{k: v for k, v in published_config(name).items() if k not in ("model_type",
                                                                                            "architectures")})
    torch.manual_seed(0)
    model = LLaDAMoEModelLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.2 * torch.randn_like(param))
        for buffer in model.buffers():
            buffer.add_(0.05 * torch.randn_like(buffer))
    model.save_pretrained(tmp_path / "ours")
    sd = load_file(str(tmp_path / "ours" / "model.safetensors"))
    c = published_config(name)
    assert {k: list(v.shape) for k, v in sd.items()} == published_shapes(c)
    ids, mask = left_padded_batch(c["vocab_size"], seed=3)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], reference_logits(sd, c, ids, key_mask=mask)[real], atol=1e-5, rtol=1e-5)
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "lladamoe" and saved["architectures"] == ["LLaDAMoEModelLM"]
    # every published key is written (rope_scaling: null is the published code's default, left out)
    assert [key for key in c if key not in saved and key != "rope_scaling"] == []


@pytest.mark.parametrize("change", ["missing", "mis-shaped"])
def test_a_missing_or_misshaped_expert_tensor_is_one_error_naming_it(tmp_path, change):
    c = published_config("A")
    sd = random_state_dict(c)
    key = "model.layers.1.mlp.experts.2.up_proj.weight"
    if change == "missing":
        del sd[key]
    else:
        sd[key] = torch.zeros(3, c["hidden_size"])
    write_published_checkpoint(tmp_path / "bad", "A", sd)
    with pytest.raises((ValueError, RuntimeError), match=r"layers\.1\.mlp\.experts\.2\.up_proj"):
        load_model(tmp_path / "bad")


def test_the_router_loss_is_not_added_and_labels_give_plain_cross_entropy(tmp_path):
    write_published_checkpoint(tmp_path / "ckpt", "A")
    model = load_model(tmp_path / "ckpt")
    ids = torch.randint(3, 64, (2, 6))
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(ids, labels=labels)
    assert torch.allclose(out.loss, F.cross_entropy(out.logits.flatten(0, 1), labels.flatten(), ignore_index=-100))
    with pytest.raises(TypeError, match="output_router_logits"):
        model(ids, output_router_logits=True)


# ---- the model_type collision with dense LLaDA ----

def test_published_llada_model_type_loads_the_moe_class_and_dense_llada_still_loads_dense(tmp_path, micro_model_dir):
    write_published_checkpoint(tmp_path / "moe", "A")
    assert isinstance(load_model(tmp_path / "moe"), LLaDAMoEModelLM)
    dense = load_model(micro_model_dir)
    assert isinstance(dense, LLaDAModelLM) and dense.config.model_type == "llada"
    # the Auto classes alone would read the published folder as dense LLaDA: one clear error instead of a wrong model
    from transformers import AutoModelForMaskedLM

    with pytest.raises(ValueError, match="num_experts=4 describes LLaDA-MoE.*load_model"):
        AutoModelForMaskedLM.from_pretrained(tmp_path / "moe")


def test_a_folder_saved_from_a_published_checkpoint_loads_with_the_auto_classes(tmp_path):
    import subprocess
    import sys

    write_published_checkpoint(tmp_path / "moe", "A")
    load_model(tmp_path / "moe").save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["model_type"] == "lladamoe" and saved["auto_map"]["AutoConfig"].startswith("configuration_lladamoe")
    code = ("import sys, unigrpo\nfrom transformers import AutoModel, AutoModelForMaskedLM\n"
            "print(type(AutoModelForMaskedLM.from_pretrained(sys.argv[1])).__name__, "
            "type(AutoModel.from_pretrained(sys.argv[1])).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "saved")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["LLaDAMoEModelLM", "LLaDAMoEModelLM"]


# ---- sampler cache, training plumbing ----

def test_span_forward_with_the_block_cache_matches_the_full_forward(tmp_path):
    from unigrpo.models.block_cache import BlockKVCache

    c, _ = write_published_checkpoint(tmp_path / "ckpt", "A")
    model = load_model(tmp_path / "ckpt").eval()
    ids, mask = left_padded_batch(c["vocab_size"])
    cache = BlockKVCache()
    with torch.no_grad():
        full = model(ids, attention_mask=mask, kv_cache=cache).logits
        span = model(ids[:, 4:8], attention_mask=mask, kv_cache=cache, span_start=4).logits
    assert len(cache.keys) == c["num_hidden_layers"] and LLaDAMoEModelLM.span_lookbehind == 0
    assert torch.allclose(span, full[:, 4:8], atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    write_published_checkpoint(tmp_path / "ckpt", "A")
    model = load_model(tmp_path / "ckpt").train()
    ids = torch.randint(3, 64, (2, 7))
    model(ids).logits.sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(ids).logits.sum().backward()
    for g, p in zip(plain, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-5)


def test_lora_targets_attention_shared_expert_and_dense_mlp_but_not_routed_experts_or_router(tmp_path):
    from peft import LoraConfig, get_peft_model

    from unigrpo.models.modeling_llada_moe import LORA_TARGET_MODULES

    write_published_checkpoint(tmp_path / "ckpt", "A")
    model = get_peft_model(load_model(tmp_path / "ckpt"), LoraConfig(r=4, target_modules=LORA_TARGET_MODULES))
    adapted = {n[n.index("layers."):n.index(".lora_A")] for n, _ in model.named_parameters() if ".lora_A" in n}
    attention = {f"layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "k_proj", "v_proj", "o_proj")}
    dense = {f"layers.0.mlp.{p}" for p in ("gate_proj", "up_proj", "down_proj")}
    shared = {f"layers.{i}.shared_expert.{p}" for i in (1, 2) for p in ("gate_proj", "up_proj", "down_proj")}
    assert adapted == attention | dense | shared
    model(torch.randint(3, 64, (2, 6))).logits.sum().backward()
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


# ---- tiny preset through the CLI ----

def test_init_tiny_llada_moe_generates_and_loads_with_the_auto_class(tmp_path, capsys):
    from transformers import AutoModelForMaskedLM

    from unigrpo.cli import main

    out = tmp_path / "moe"
    assert main(["init-tiny", "--architecture", "llada-moe", "--output", str(out), "--preset", "micro"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_type"] == "lladamoe" and saved["num_experts"] > saved["num_experts_per_tok"] > 1
    assert type(AutoModelForMaskedLM.from_pretrained(out)).__name__ == "LLaDAMoEModelLM"
    capsys.readouterr()
    assert main(["generate", "--model", str(out), "--prompt", "12+34=", "--prompt", "1-2=",
                 "--gen_length", "8", "--block_length", "4", "--steps", "4"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["generate", "--model", str(out), "--prompt", "12+34=", "--gen_length", "8",
                 "--block_length", "4", "--steps", "8", "--kv_cache", "dual", "--confidence_threshold", "0.9"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_init_tiny_python_api_writes_a_loadable_moe(tmp_path):
    path = init_tiny(tmp_path / "m", preset="micro", architecture="llada-moe")
    model = load_model(path)
    assert isinstance(model, LLaDAMoEModelLM) and model.config.qk_layernorm


def test_three_lora_training_steps_on_the_tiny_moe_with_the_tiny_arith_recipe(tmp_path, capsys):
    """The likelihood path end to end: the tiny arithmetic recipe's settings, LoRA on the attention projections."""
    from pathlib import Path

    from unigrpo.cli import main

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith.yaml"
    model = init_tiny(tmp_path / "moe", preset="micro", architecture="llada-moe")
    out = tmp_path / "run"
    assert main(["train", "--config", str(recipe), "--model_name_or_path", str(model), "--output_dir", str(out),
                 "--max_steps", "3", "--per_device_train_batch_size", "16", "--eval_limit", "16",
                 "--eval_steps", "3", "--save_steps", "3", "--logging_steps", "1", "--disable_tqdm", "true",
                 "--use_peft", "true", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    tensors = load_file(out / "adapter_model.safetensors")
    assert tensors and all(".self_attn." in name for name in tensors)  # experts and router untouched
    assert "held-out accuracy" in capsys.readouterr().out
    assert isinstance(load_model(out), LLaDAMoEModelLM)  # the adapter folder loads with its base merged in
