"""The LLaDA/MMaDA model class: published names, loading, bidirectionality, padding, LoRA, bad input."""

import json

import pytest
import torch
from safetensors.torch import save_file

from unigrpo.models import (
    LORA_TARGET_MODULES,
    LLaDAConfig,
    LLaDAModelLM,
    MMadaModelLM,
    init_tiny,
    load_model,
    load_tokenizer,
    resolve_mask_token_id,
    tiny_config,
)

PUBLISHED_BLOCK_KEYS = [
    "attn_norm.weight", "q_proj.weight", "k_proj.weight", "v_proj.weight", "attn_out.weight",
    "ff_norm.weight", "ff_proj.weight", "up_proj.weight", "ff_out.weight",
]


def published_state_dict(config: LLaDAConfig) -> dict[str, torch.Tensor]:
    """A state dict written from CHECKPOINTS.md's key/shape table, independently of the model class."""
    d, mlp, vocab = config.d_model, config.mlp_hidden_size, config.embedding_size
    shapes = {"attn_norm.weight": [d], "q_proj.weight": [d, d], "k_proj.weight": [d, d], "v_proj.weight": [d, d],
              "attn_out.weight": [d, d], "ff_norm.weight": [d], "ff_proj.weight": [mlp, d],
              "up_proj.weight": [mlp, d], "ff_out.weight": [d, mlp]}
    sd = {"model.transformer.wte.weight": torch.randn(vocab, d), "model.transformer.ln_f.weight": torch.ones(d),
          "model.transformer.ff_out.weight": torch.randn(vocab, d)}
    for i in range(config.n_layers):
        for key in PUBLISHED_BLOCK_KEYS:
            sd[f"model.transformer.blocks.{i}.{key}"] = torch.randn(shapes[key]) * 0.02
    return sd


def write_published_checkpoint(path, config, model_type="llada"):
    path.mkdir(parents=True)
    cfg = config.to_dict()
    cfg["model_type"] = model_type
    cfg["architectures"] = ["LLaDAModelLM" if model_type == "llada" else "MMadaModelLM"]
    cfg["auto_map"] = {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM"}
    (path / "config.json").write_text(json.dumps(cfg))
    sd = published_state_dict(config)
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, str(path / "model.safetensors"))
    return sd


def test_published_checkpoint_loads_with_no_missing_or_unexpected_keys(tmp_path):
    config = tiny_config("micro")
    sd = write_published_checkpoint(tmp_path / "ckpt", config)
    model = load_model(tmp_path / "ckpt")
    assert isinstance(model, LLaDAModelLM)
    loaded = model.state_dict()
    assert set(loaded) == set(sd) and len(loaded) == 3 + 9 * config.n_layers
    for key, value in sd.items():
        assert torch.equal(loaded[key].float(), value.to(torch.bfloat16).float()), key


def test_mmada_checkpoint_loads_as_mmada(tmp_path):
    config = tiny_config("micro", mmada=True)
    write_published_checkpoint(tmp_path / "mmada", config, model_type="mmada")
    model = load_model(tmp_path / "mmada")
    assert isinstance(model, MMadaModelLM) and model.config.codebook_size == 8192


def test_checkpoint_with_wrong_keys_is_refused(tmp_path):
    config = tiny_config("micro")
    path = tmp_path / "bad"
    path.mkdir()
    (path / "config.json").write_text(json.dumps({**config.to_dict(), "model_type": "llada"}))
    sd = published_state_dict(config)
    sd["model.transformer.blocks.0.extra.weight"] = sd.pop("model.transformer.blocks.0.q_proj.weight")
    save_file(sd, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="q_proj"):
        load_model(path)


def test_bad_paths_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")


def test_bidirectional_attention(micro_model_dir):
    model = load_model(micro_model_dir).eval()
    x = torch.randint(10, 100, (1, 12))
    y = x.clone()
    y[0, -1] = (x[0, -1] + 1) % 100 + 10  # change the last token only
    with torch.no_grad():
        a, b = model(x).logits, model(y).logits
    assert not torch.allclose(a[0, 0], b[0, 0])  # the first position sees the last one


def test_save_load_round_trip_gives_identical_logits(micro_model_dir, tmp_path):
    model = load_model(micro_model_dir).eval()
    model.save_pretrained(tmp_path / "copy")
    again = load_model(tmp_path / "copy").eval()
    x = torch.randint(0, 100, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(x).logits, again(x).logits)


def test_padding_mask_hides_pad_tokens_and_no_mask_equals_all_ones(micro_model_dir):
    model = load_model(micro_model_dir).eval()
    x = torch.randint(10, 100, (1, 8))
    padded = torch.cat([torch.full((1, 3), 1), x], dim=1)
    other_pad = torch.cat([torch.full((1, 3), 7), x], dim=1)
    mask = torch.tensor([[0, 0, 0] + [1] * 8])
    with torch.no_grad():
        a = model(padded, attention_mask=mask).logits[:, 3:]
        b = model(other_pad, attention_mask=mask).logits[:, 3:]
        assert torch.allclose(a, b, atol=1e-5)  # pad token values are invisible
        assert torch.equal(model(x).logits, model(x, attention_mask=torch.ones_like(x)).logits)


def test_rmsnorm_and_rope_follow_the_published_forward(micro_model_dir):
    """A plain re-implementation of one block from CHECKPOINTS.md matches the class."""
    model = load_model(micro_model_dir).eval()
    cfg, block = model.config, model.model.transformer["blocks"][0]
    x = torch.randn(2, 5, cfg.d_model)

    def rms(t, w):
        return w * (t.float() * torch.rsqrt(t.float().pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps)).to(t.dtype)

    hd, nh = cfg.head_dim, cfg.n_heads
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, hd, 2).float() / hd)
    freqs = torch.arange(5).float()[:, None] * inv[None]
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()

    def rope(t):
        half = t.shape[-1] // 2
        return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

    n = rms(x, block.attn_norm.weight)
    q = rope((n @ block.q_proj.weight.T).view(2, 5, nh, hd).transpose(1, 2))
    k = rope((n @ block.k_proj.weight.T).view(2, 5, nh, hd).transpose(1, 2))
    v = (n @ block.v_proj.weight.T).view(2, 5, nh, hd).transpose(1, 2)
    att = torch.softmax(q @ k.transpose(-1, -2) / hd**0.5, -1) @ v
    h = x + att.transpose(1, 2).reshape(2, 5, -1) @ block.attn_out.weight.T
    m = rms(h, block.ff_norm.weight)
    out = h + (torch.nn.functional.silu(m @ block.ff_proj.weight.T) * (m @ block.up_proj.weight.T)) @ block.ff_out.weight.T
    from unigrpo.models.modeling_llada import rotary_cos_sin

    c, s = rotary_cos_sin(5, hd, cfg.rope_theta, x.device)
    with torch.no_grad():
        assert torch.allclose(block(x, c, s), out, atol=1e-5)


def test_tied_head_uses_embedding(tmp_path):
    config = tiny_config("micro", weight_tying=True)
    model = LLaDAModelLM(config).eval()
    assert "model.transformer.ff_out.weight" not in model.state_dict()
    x = torch.randint(0, 50, (1, 4))
    hidden = {}
    model.model.transformer["ln_f"].register_forward_hook(lambda m, i, o: hidden.setdefault("h", o))
    logits = model(x).logits
    assert torch.allclose(logits, hidden["h"] @ model.model.transformer["wte"].weight.T, atol=1e-6)


def test_gradient_checkpointing_gives_the_same_gradients(micro_model_dir):
    model = load_model(micro_model_dir)
    x = torch.randint(0, 100, (2, 7))
    model.train()
    model(x).logits.sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing_enable()
    model(x).logits.sum().backward()
    for g, p in zip(plain, model.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-5)


def test_lora_wraps_and_only_adapters_get_gradients(micro_model_dir):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(load_model(micro_model_dir), LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES))
    names = [n for n, _ in model.named_parameters() if "lora_" in n]
    assert any("q_proj" in n for n in names) and any("blocks.0.ff_out" in n for n in names)
    assert not any("transformer.ff_out.lora" in n for n in names)  # the LM head is not a target
    model(torch.randint(0, 100, (2, 6))).logits.sum().backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad
        else:
            assert not p.requires_grad and p.grad is None, name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "lora_B" in n)


def test_tokenizer_round_trip_and_mask_token(micro_model_dir, tmp_path):
    tokenizer = load_tokenizer(micro_model_dir)
    model = load_model(micro_model_dir)
    assert resolve_mask_token_id(model, tokenizer) == tokenizer.mask_token_id == model.config.mask_token_id
    text = tokenizer.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert tokenizer.convert_tokens_to_ids("\\boxed{") != tokenizer.unk_token_id


def test_missing_mask_token_is_an_error():
    class NoMask:
        mask_token_id = None

        def get_vocab(self):
            return {}

    class NoConfig:
        config = object()

    with pytest.raises(ValueError, match="no mask token"):
        resolve_mask_token_id(NoConfig(), NoMask())


def test_config_rejects_unsupported_architecture():
    with pytest.raises(ValueError, match="alibi"):
        LLaDAConfig(alibi=True)
    with pytest.raises(ValueError, match="n_heads"):
        LLaDAConfig(d_model=100, n_heads=3)


def test_init_tiny_writes_auto_loadable_folder(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    path = init_tiny(tmp_path / "t", preset="micro")
    assert type(AutoModel.from_pretrained(path)).__name__ == "LLaDAModelLM"
    assert AutoTokenizer.from_pretrained(path).mask_token == "<|mdm_mask|>"


def test_hub_ids_resolve_through_the_hub_cache_without_the_repos_code(monkeypatch, micro_model_dir):
    """``org/name`` → ``snapshot_download`` (weights, configs, tokenizer; no ``*.py``); offline → one clear error."""
    import huggingface_hub

    from unigrpo.models import load_model, resolve_model_path

    calls = []

    def fake_snapshot_download(repo_id, allow_patterns=None, **kwargs):
        calls.append((repo_id, tuple(allow_patterns)))
        if repo_id == "GSAI-ML/LLaDA-8B-Instruct":
            return str(micro_model_dir)
        raise huggingface_hub.errors.LocalEntryNotFoundError("no cached snapshot and offline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert resolve_model_path("GSAI-ML/LLaDA-8B-Instruct") == micro_model_dir
    assert load_model("GSAI-ML/LLaDA-8B-Instruct").config.model_type == "llada"
    repo, patterns = calls[0]
    assert "*.safetensors" in patterns and "*.json" in patterns and not any(p.endswith(".py") for p in patterns)
    with pytest.raises(FileNotFoundError, match="'someone/missing' is not a folder here and could not be fetched"):
        resolve_model_path("someone/missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path("./not/a/hub/id")
