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
    """A state dict written from the published checkpoints' key/shape table, independently of the model class."""
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
    """A plain re-implementation of one block from the published forward matches the class."""
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


def test_hub_ids_resolve_through_the_hub_cache_without_running_the_repos_code(monkeypatch, micro_model_dir):
    """``org/name`` → ``snapshot_download`` (weights, configs, tokenizer, and the ``*.py`` files that saved folders
    keep, see test_remote_code.py; the project's classes load the weights); offline → one clear error."""
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
    assert {"*.safetensors", "*.json", "*.py"} <= set(patterns)
    with pytest.raises(FileNotFoundError, match="no such model folder or hub id: 'someone/missing' is not a folder here"):
        resolve_model_path("someone/missing")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path("./not/a/hub/id")


# Every field of the published ``ModelConfig`` (configuration_llada.py of LLaDA-8B / MMaDA's models/): the published
# ``LLaDAModelLM.__init__`` reads each one from the config, so a config.json lacking any of them does not load there.
PUBLISHED_LLADA_CONFIG_KEYS = [
    "d_model", "n_heads", "n_kv_heads", "n_layers", "mlp_ratio", "mlp_hidden_size", "activation_type", "block_type",
    "block_group_size", "alibi", "alibi_bias_max", "rope", "rope_full_precision", "flash_attention",
    "attention_dropout", "multi_query_attention", "attention_layer_norm", "residual_dropout", "embedding_dropout",
    "input_emb_norm", "layer_norm_type", "layer_norm_with_affine", "rms_norm_eps", "attention_layer_norm_with_affine",
    "max_sequence_length", "rope_theta", "include_qkv_bias", "include_bias", "bias_for_layer_norm", "scale_logits",
    "vocab_size", "embedding_size", "weight_tying", "eos_token_id", "pad_token_id", "mask_token_id", "init_device",
    "init_fn", "init_std", "init_cutoff_factor", "precision",
]
# MMaDA's ``MMadaConfig`` adds these (modeling_mmada.py's allowed keys).
PUBLISHED_MMADA_EXTRA_KEYS = [
    "llm_vocab_size", "llm_model_path", "codebook_size", "num_vq_tokens", "num_new_special_tokens",
    "gradient_checkpointing", "new_vocab_size",
]


@pytest.mark.parametrize("mmada", [False, True])
def test_saved_config_has_every_key_of_the_published_config(tmp_path, mmada):
    path = init_tiny(tmp_path / "m", preset="micro", mmada=mmada)
    load_model(path).save_pretrained(tmp_path / "saved")
    for folder in (path, tmp_path / "saved"):
        saved = json.loads((folder / "config.json").read_text())
        expected = PUBLISHED_LLADA_CONFIG_KEYS + (PUBLISHED_MMADA_EXTRA_KEYS if mmada else [])
        assert [key for key in expected if key not in saved] == []
        assert saved["alibi_bias_max"] == 8.0 and saved["attention_layer_norm_with_affine"] is True


def test_shipped_checkpoints_have_every_key_of_the_published_config():
    from unigrpo.models import builtin_checkpoints, resolve_model_path

    for name in builtin_checkpoints():
        saved = json.loads((resolve_model_path(name) / "config.json").read_text())
        expected = PUBLISHED_LLADA_CONFIG_KEYS + (PUBLISHED_MMADA_EXTRA_KEYS if saved["model_type"] == "mmada" else [])
        assert [key for key in expected if key not in saved] == [], name


def test_forward_rejects_keyword_arguments_it_does_not_use(micro_model_dir):
    model = load_model(micro_model_dir)
    x = torch.randint(10, 100, (2, 6))
    bias = torch.ones(2, 1, 6, 6, dtype=torch.bool)  # MMaDA's padding bias: silently dropped before
    with pytest.raises(TypeError, match=r"'attention_bias'.*pass attention_mask \(B, T\).*accepts input_ids, "
                                        r"attention_mask, labels, kv_cache, span_start"):
        model(x, attention_bias=bias)
    with pytest.raises(TypeError, match="'return_dict'"):
        model(input_ids=x, return_dict=True)
    assert model(input_ids=x, attention_mask=torch.ones(2, 6)).logits.shape == (2, 6, model.config.embedding_size)
    assert model.accepts_loss_kwargs is False  # the Trainer must not hand it num_items_in_batch


def test_import_unigrpo_registers_the_auto_classes_without_the_trainers(micro_model_dir, tmp_path):
    """A fresh interpreter: `import unigrpo` alone lets transformers' Auto classes load llada and mmada folders."""
    import subprocess
    import sys

    mmada = init_tiny(tmp_path / "mmada", preset="micro", mmada=True)
    code = (
        "import sys, unigrpo\n"
        "from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM\n"
        "for path in sys.argv[1:]:\n"
        "    print(AutoConfig.from_pretrained(path).model_type, type(AutoModel.from_pretrained(path)).__name__,\n"
        "          type(AutoModelForMaskedLM.from_pretrained(path)).__name__)\n"
        "print(sorted(m for m in ('unigrpo.trainer', 'unigrpo.sft', 'trl', 'datasets') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(micro_model_dir), str(mmada)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[:3] == ["llada LLaDAModelLM LLaDAModelLM", "mmada MMadaModelLM MMadaModelLM", "[]"]


def test_the_confident_benchmark_model_copies_held_out_digits_exactly_with_the_plain_sampler():
    """tiny-copy-sft (issue #18): the plain sampler — no cache, no threshold, greedy, one token a step — answers
    held-out prompts character for character, confidently (8 tokens a step keeps this test to seconds)."""
    from rollouts import SamplerConfig, generate_text, tokenize_prompts
    from unigrpo.data.long_answers import make_copy_dataset
    from unigrpo.models import builtin_checkpoints, resolve_model_path

    assert "tiny-copy-sft" in builtin_checkpoints()
    assert (resolve_model_path("tiny-copy-sft") / "model.safetensors").stat().st_size <= 20_000_000
    rows = sorted(make_copy_dataset("test", limit=64), key=lambda row: len(row["answer"]))[:4]  # 64–68 digits
    model, tokenizer = load_model("tiny-copy-sft").eval(), load_tokenizer("tiny-copy-sft")
    prompt_ids, prompt_mask = tokenize_prompts(tokenizer, [row["prompt"] for row in rows])
    config = SamplerConfig(gen_length=256, block_length=256, steps=32, temperature=0.0, cache="none")
    with torch.no_grad():
        out = generate_text(model, prompt_ids, prompt_mask, mask_token_id=tokenizer.mask_token_id,
                            eos_token_id=tokenizer.eos_token_id, config=config)
    answers = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    assert answers == [row["answer"] for row in rows]
    assert out.stats.committed_confidence > 0.9
