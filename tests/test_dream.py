"""The Dream model class (issue #19): published names and config, strict loading, equivalence with an independent
re-implementation of the published forward in both directions, the aligned-logit convention, the block cache's
one-position lookbehind in the sampler, the tiny preset and the command line."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from model_helpers import sharpened
from rollouts import SamplerConfig, generate_text
from rollouts.text_sampler import block_logits
from unigrpo.models import (DREAM_LORA_TARGET_MODULES, DreamConfig, DreamModel, LLaDAModelLM, init_tiny, load_model,
                            load_tokenizer)
from unigrpo.models.block_cache import BlockKVCache

# Dream-v0-Instruct-7B's config.json as published (hub repository Dream-org/Dream-v0-Instruct-7B).
PUBLISHED_7B_CONFIG = {
    "architectures": ["DreamModel"], "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_dream.DreamConfig", "AutoModel": "modeling_dream.DreamModel"},
    "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 3584,
    "initializer_range": 0.02, "intermediate_size": 18944, "mask_token_id": 151666, "max_position_embeddings": 131072,
    "max_window_layers": 28, "model_type": "Dream", "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "pad_token_id": 151643, "rms_norm_eps": 1e-06, "rope_scaling": None,
    "rope_theta": 1000000.0, "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.46.2", "use_cache": True, "use_mrope": False, "use_sliding_window": False,
    "vocab_size": 152064,
}
# A tiny random config with the published keys: grouped-query attention (4 query heads, 2 key/value heads), Dream's θ.
TINY = {**PUBLISHED_7B_CONFIG, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "mask_token_id": 63,
        "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "max_window_layers": 2, "torch_dtype": "float32"}


def published_shapes(cfg: dict) -> dict[str, tuple]:
    """Key → shape of a published Dream checkpoint (its safetensors index: 3 + 12 tensors per layer, biases on
    q/k/v only), written from that table independently of the model class."""
    d, inner, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    layer = {"input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
             "self_attn.q_proj.weight": (q, d), "self_attn.q_proj.bias": (q,),
             "self_attn.k_proj.weight": (kv, d), "self_attn.k_proj.bias": (kv,),
             "self_attn.v_proj.weight": (kv, d), "self_attn.v_proj.bias": (kv,), "self_attn.o_proj.weight": (d, q),
             "mlp.gate_proj.weight": (inner, d), "mlp.up_proj.weight": (inner, d), "mlp.down_proj.weight": (d, inner)}
    shapes = {"model.embed_tokens.weight": (vocab, d), "model.norm.weight": (d,), "lm_head.weight": (vocab, d)}
    for i in range(cfg["num_hidden_layers"]):
        shapes.update({f"model.layers.{i}.{key}": shape for key, shape in layer.items()})
    return shapes


def random_tensor(shape, generator, bias: bool = False) -> torch.Tensor:
    """Weights large enough that the logits are far from uniform: matrices ~ N(0, 4/fan_in), norm weights
    ~ 1 ± 0.2, biases ~ N(0, 0.1²)."""
    if len(shape) == 2:
        return torch.randn(shape, generator=generator) * 2 / math.sqrt(shape[1])
    if bias:
        return 0.1 * torch.randn(shape, generator=generator)
    return 1 + 0.2 * torch.randn(shape, generator=generator)


def published_state_dict(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: random_tensor(shape, generator, key.endswith(".bias")) for key, shape in published_shapes(cfg).items()}


def write_published_checkpoint(path, cfg: dict, sd: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg))
    save_file(sd, str(path / "model.safetensors"))


def reference_logits(sd: dict, cfg: dict, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The published Dream forward in plain torch, then the published generation's realignment.

    Qwen2 decoder layers without the causal mask: RMSNorm (fp32, weight after), q/k/v with biases, rotate-half RoPE
    at Dream's left-padding positions (cumsum(mask) − 1, padding at 1), grouped-query attention by repeating each
    key/value head, softmax(q·kᵀ/√hd) with padding keys hidden, o_proj, SiLU-gated MLP; final norm, lm_head. The
    network's output at i predicts token i + 1; generation reads cat(out[:, :1], out[:, :-1]).
    """
    B, T = input_ids.shape
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = cfg["hidden_size"] // nh, cfg["rms_norm_eps"]
    real = attention_mask.bool()
    positions = (real.long().cumsum(-1) - 1).masked_fill(~real, 1)  # (B, T)
    inv_freq = 1.0 / cfg["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd)
    angles = positions[..., None].float() * inv_freq  # (B, T, hd/2)
    cos, sin = torch.cat([angles, angles], -1).cos()[:, None], torch.cat([angles, angles], -1).sin()[:, None]
    hidden_key = torch.zeros(B, 1, 1, T).masked_fill(~real[:, None, None, :], -math.inf)

    def rms(t, w):
        return w * (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps))

    def rope(t):
        return t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin

    def repeat_kv(t):  # (B, nkv, T, hd) → (B, nh, T, hd), head j of the queries uses key/value head j // (nh/nkv)
        return t[:, :, None].expand(B, nkv, nh // nkv, T, hd).reshape(B, nh, T, hd)

    h = sd["model.embed_tokens.weight"][input_ids]
    for i in range(cfg["num_hidden_layers"]):
        w = {k.split(f"model.layers.{i}.")[1]: v for k, v in sd.items() if k.startswith(f"model.layers.{i}.")}
        n = rms(h, w["input_layernorm.weight"])

        def project(name, heads):
            out = n @ w[f"self_attn.{name}.weight"].T + w[f"self_attn.{name}.bias"]
            return out.view(B, T, heads, hd).transpose(1, 2)

        q = rope(project("q_proj", nh))
        k, v = repeat_kv(rope(project("k_proj", nkv))), repeat_kv(project("v_proj", nkv))
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + hidden_key, dim=-1) @ v
        h = h + attention.transpose(1, 2).reshape(B, T, nh * hd) @ w["self_attn.o_proj.weight"].T
        m = rms(h, w["post_attention_layernorm.weight"])
        gated = F.silu(m @ w["mlp.gate_proj.weight"].T) * (m @ w["mlp.up_proj.weight"].T)
        h = h + gated @ w["mlp.down_proj.weight"].T
    out = rms(h, sd["model.norm.weight"]) @ sd["lm_head.weight"].T  # (B, T, V): position i predicts token i + 1
    return torch.cat([out[:, :1], out[:, :-1]], dim=1)


def left_padded_batch(vocab: int = 60, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (3, 11), generator=generator)
    mask = (torch.arange(11) >= torch.tensor([[4], [0], [2]])).long()  # rows 0 and 2 left-padded
    return ids.masked_fill(mask == 0, 0), mask


# ---- config, loading, equivalence ----------------------------------------------------------------------------------


def test_the_published_7b_config_loads_with_its_values(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_7B_CONFIG))
    config = AutoConfig.from_pretrained(tmp_path)  # auto_map present, trust_remote_code off: this project's class
    assert type(config) is DreamConfig and config.model_type == "Dream"
    values = {key: getattr(config, key) for key in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                    "num_key_value_heads", "intermediate_size", "vocab_size",
                                                    "rope_theta", "rms_norm_eps", "mask_token_id", "pad_token_id",
                                                    "eos_token_id", "tie_word_embeddings")}
    assert values == dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                          intermediate_size=18944, vocab_size=152064, rope_theta=1e6, rms_norm_eps=1e-6,
                          mask_token_id=151666, pad_token_id=151643, eos_token_id=151643, tie_word_embeddings=False)
    assert config.head_dim == 128
    config.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    missing = [k for k in PUBLISHED_7B_CONFIG if k not in saved and k not in ("rope_scaling", "torch_dtype")]
    assert missing == [] and saved["model_type"] == "Dream" and saved["auto_map"] == PUBLISHED_7B_CONFIG["auto_map"]
    with pytest.raises(ValueError, match="num_key_value_heads"):
        DreamConfig(num_attention_heads=28, num_key_value_heads=5)
    with pytest.raises(ValueError, match="rope_scaling"):
        DreamConfig(rope_scaling={"rope_type": "yarn", "factor": 4.0})


def test_a_published_checkpoint_loads_strictly_and_equals_the_reference_forward(tmp_path):
    sd = published_state_dict(TINY)
    assert len(sd) == 3 + 12 * TINY["num_hidden_layers"]  # as the 7B index: 339 = 3 + 12 · 28
    write_published_checkpoint(tmp_path / "ckpt", TINY, sd)
    model = load_model(tmp_path / "ckpt").eval()
    assert type(model) is DreamModel and model.span_lookbehind == 1
    assert type(AutoModelForMaskedLM.from_pretrained(tmp_path / "ckpt")) is DreamModel
    assert type(AutoModel.from_pretrained(tmp_path / "ckpt")) is DreamModel  # the auto_map's class name, ours
    assert set(model.state_dict()) == set(sd)
    ids, mask = left_padded_batch()
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
    expected = reference_logits(sd, TINY, ids, mask)
    assert ours.std() > 1.0  # far from uniform: the comparison can fail
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)  # float32 rounding, which differs by CPU
    # padding changes nothing at the real positions: row 0 alone, unpadded, gives the same logits
    with torch.no_grad():
        alone = model(ids[:1, 4:]).logits
    torch.testing.assert_close(alone[:, 1:], ours[:1, 5:], atol=1e-5, rtol=1e-5)


def test_our_saved_model_loads_into_the_reference_by_published_names(tmp_path):
    config = DreamConfig(**{k: v for k, v in TINY.items() if k not in ("architectures", "auto_map", "model_type")})
    model = DreamModel(config).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(random_tensor(tuple(p.shape), generator, name.endswith("bias")))
    model.save_pretrained(tmp_path / "ours")
    sd = load_file(str(tmp_path / "ours" / "model.safetensors"))
    shapes = published_shapes(TINY)
    assert {k: tuple(v.shape) for k, v in sd.items()} == shapes
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "Dream" and saved["architectures"] == ["DreamModel"]
    ids, mask = left_padded_batch(seed=1)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask).logits
    torch.testing.assert_close(ours, reference_logits(sd, TINY, ids, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("damage,named", [
    ("rename", "model.layers.1.self_attn.k_proj.bias"),
    ("drop", "model.layers.0.mlp.up_proj.weight"),
    ("reshape", "model.layers.0.self_attn.q_proj.bias"),
])
def test_a_damaged_checkpoint_is_one_error_naming_the_tensor(tmp_path, damage, named):
    sd = published_state_dict(TINY)
    if damage == "rename":
        sd[named.replace("k_proj", "key_proj")] = sd.pop(named)
    elif damage == "drop":
        del sd[named]
    else:
        sd[named] = torch.zeros(sd[named].shape[0] + 1)
    write_published_checkpoint(tmp_path / "bad", TINY, sd)
    with pytest.raises((ValueError, RuntimeError), match=named.replace(".", r"\.")):
        load_model(tmp_path / "bad")


# ---- the aligned-logit convention and the block cache --------------------------------------------------------------


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    """(model, mask id, eos id): a micro Dream with 4 query / 2 key-value heads, sharpened (model_helpers)."""
    folder = init_tiny(tmp_path_factory.mktemp("dream") / "m", preset="micro", architecture="dream", n_heads=4)
    return sharpened(folder)


def test_logits_are_aligned_to_their_own_position(dream):
    """logits[:, i] is the network's output at i − 1: changing token j changes the output at j, which is read as
    the logits of position j + 1 — and the lm_head output itself is shifted by exactly one."""
    model = dream[0]
    x = torch.randint(10, 90, (2, 9))
    with torch.no_grad():
        raw = model.lm_head(model.model(x))
        logits = model(x).logits
    torch.testing.assert_close(logits[:, 1:], raw[:, :-1], atol=0, rtol=0)
    torch.testing.assert_close(logits[:, 0], raw[:, 0], atol=0, rtol=0)


def cached_batch(dream):
    mask_id = dream[1]
    ids, mask = left_padded_batch(vocab=90, seed=2)
    ids = ids.masked_fill(mask == 0, dream[2])
    x = torch.cat([ids, torch.randint(10, 90, (3, 8))], dim=1)  # (3, 19)
    x[:, 13:17] = mask_id
    return x, torch.cat([mask, torch.ones(3, 8, dtype=torch.long)], dim=1)


@pytest.mark.parametrize("span", [(11, 19), (11, 15), (15, 19), (0, 19)])
def test_a_span_forward_from_one_position_earlier_equals_the_full_forward(dream, span):
    model = dream[0]
    x, mask = cached_batch(dream)
    start, stop = span
    behind = min(model.span_lookbehind, start)
    cache = BlockKVCache()
    with torch.no_grad():
        full = model(x, attention_mask=mask, kv_cache=cache).logits
        part = model(x[:, start - behind:stop], attention_mask=mask, kv_cache=cache, span_start=start - behind).logits
    torch.testing.assert_close(part[:, behind:], full[:, start:stop], atol=1e-5, rtol=1e-5)
    if start:  # without the lookbehind, the span's first logits are those of its own start: wrong
        with torch.no_grad():
            short = model(x[:, start:stop], attention_mask=mask, kv_cache=cache, span_start=start).logits
        assert not torch.allclose(short[:, 0], full[:, start], atol=1e-3)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_block_logits_of_a_cached_step_equal_the_full_forward_on_a_fresh_cache(dream, cache):
    model = dream[0]
    x, mask = cached_batch(dream)
    config = SamplerConfig(gen_length=8, block_length=4, steps=8, cache=cache)
    window, kv_cache = slice(15, 19), BlockKVCache()
    with torch.no_grad():
        full = block_logits(model, x, mask, None, config, window, kv_cache, refresh=True)
        cached = block_logits(model, x, mask, None, config, window, kv_cache, refresh=False)
        plain = model(x, attention_mask=mask).logits[:, window]
    torch.testing.assert_close(full, plain, atol=0, rtol=0)
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def one_layer_dream(tmp_path_factory):
    """One layer: its keys and values depend on each position's own token only, so within a block the cached ones
    of the untouched positions are exact and the cached sampler must give the plain sampler's answers."""
    folder = init_tiny(tmp_path_factory.mktemp("dream1") / "m", preset="micro", architecture="dream", n_heads=4,
                       n_layers=1)
    return sharpened(folder, seed=3)


def sample(setup, cache, threshold=None):
    model, mask_id, eos_id = setup
    ids, mask = left_padded_batch(vocab=90, seed=4)
    ids = ids.masked_fill(mask == 0, eos_id)
    config = SamplerConfig(gen_length=12, block_length=4, steps=12, cache=cache, threshold=threshold)
    return generate_text(model, ids, mask, mask_token_id=mask_id, eos_token_id=eos_id, config=config)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("threshold", [None, 0.2])
def test_the_cached_sampler_equals_the_plain_one_where_the_cache_is_exact(one_layer_dream, cache, threshold,
                                                                           monkeypatch):
    plain = sample(one_layer_dream, "none", threshold)
    fast = sample(one_layer_dream, cache, threshold)
    assert torch.equal(fast.sequences, plain.sequences) and torch.equal(fast.commit_step, plain.commit_step)
    assert not (fast.completion_ids == one_layer_dream[1]).any()
    if threshold is not None:
        assert fast.forwards < 12  # threshold decoding ended some block early
    monkeypatch.setattr(DreamModel, "span_lookbehind", 0)  # the sampler ignoring the shift reads wrong logits
    assert not torch.equal(sample(one_layer_dream, cache, threshold).sequences, plain.sequences)


def test_llada_reads_no_lookbehind():
    assert LLaDAModelLM.span_lookbehind == 0 and DreamModel.span_lookbehind == 1


# ---- training-side pieces ------------------------------------------------------------------------------------------


def test_gradient_checkpointing_gives_the_same_gradients(dream):
    model = dream[0]
    x, mask = cached_batch(dream)
    model.train()
    try:
        model(x, attention_mask=mask).logits.sum().backward()
        plain = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        model.gradient_checkpointing_enable()
        model(x, attention_mask=mask).logits.sum().backward()
        for g, p in zip(plain, model.parameters()):
            torch.testing.assert_close(g, p.grad, atol=1e-5, rtol=1e-4)
    finally:
        model.gradient_checkpointing_disable()
        model.zero_grad(set_to_none=True)
        model.eval()


def test_lora_targets_every_projection_but_not_the_head(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = load_model(init_tiny(tmp_path / "m", preset="micro", architecture="dream"))
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=DREAM_LORA_TARGET_MODULES))
    wrapped = sorted({n.split(".lora_A")[0].split("layers.0.")[1] for n, _ in peft.named_parameters()
                      if "lora_A" in n and "layers.0." in n})
    assert wrapped == ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj",
                       "self_attn.q_proj", "self_attn.v_proj"]
    assert not any("lm_head.lora" in n for n, _ in peft.named_parameters())


def test_the_likelihood_reads_the_aligned_logits(dream):
    """The estimators read ``logits[:, i]`` as token i's distribution; for Dream that is the network's output at
    i − 1, so the answer's token log-probs equal log-softmax of the lm_head output one position earlier."""
    from unigrpo.likelihood import answer_token_logps, get_estimator

    model, mask_id, _ = dream
    prompt, prompt_mask = left_padded_batch(vocab=90, seed=5)
    answer = torch.randint(10, 90, (3, 6))
    estimator = get_estimator("unigrpo")
    view = estimator.noise(prompt, prompt_mask, answer, torch.ones(3, 6, dtype=torch.bool), torch.full((3,), 0.5),
                           mask_id, torch.Generator().manual_seed(0))
    assert torch.equal(view.input_ids[:, :11], prompt.repeat(view.input_ids.shape[0] // 3, 1))  # prompt never masked
    with torch.no_grad():
        logps = answer_token_logps(model, view, answer)
        raw = model.lm_head(model.model(view.input_ids, attention_mask=view.attention_mask))  # (R, T, V)
    L = answer.shape[1]
    expected = torch.log_softmax(raw[:, -L - 1 - view.suffix_length: raw.shape[1] - 1 - view.suffix_length], -1)
    expected = expected.gather(-1, answer[view.answer_index].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logps[view.score_mask], expected[view.score_mask], atol=1e-5, rtol=1e-5)
    assert view.score_mask.any()


# ---- tiny preset and command line ----------------------------------------------------------------------------------


def test_init_tiny_dream_then_auto_loading_and_generate(tmp_path, capsys):
    from unigrpo.cli import main

    folder = tmp_path / "dream"
    assert main(["init-tiny", "--architecture", "dream", "--preset", "micro", "--output", str(folder)]) == 0
    model, tokenizer = AutoModelForMaskedLM.from_pretrained(folder), load_tokenizer(folder)
    assert type(model) is DreamModel and model.config.model_type == "Dream"
    assert model.config.mask_token_id == tokenizer.mask_token_id and model.config.num_key_value_heads == 1
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["DreamModel"]
    capsys.readouterr()
    for extra in ([], ["--kv_cache", "dual", "--confidence_threshold", "0.9"]):
        assert main(["generate", "--model", str(folder), "--prompt", "12+34=", "--prompt", "1-2=", "--gen_length",
                     "8", "--block_length", "4", "--steps", "8", *extra]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["init-tiny", "--architecture", "gpt", "--output", str(tmp_path / "x")]) != 0
    assert "dream" in capsys.readouterr().err


# ---- training on a tiny Dream --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory):
    return init_tiny(tmp_path_factory.mktemp("dream_dir") / "m", preset="micro", architecture="dream")


@pytest.mark.parametrize("estimator", ["unigrpo", "d1", "coupled"])
def test_ratio_is_one_before_the_first_update_and_the_prompt_stays_unmasked(dream_dir, tmp_path, estimator):
    from test_trainer import first_rows, make_trainer
    from unigrpo.likelihood import answer_token_logps

    trainer = make_trainer(dream_dir, tmp_path, likelihood_estimator=estimator)
    (rollouts,) = trainer.make_rollouts(first_rows(trainer)).tasks
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, rollouts.views[0], rollouts.completion_ids)
    assert torch.isfinite(logps).all() and torch.equal(logps, rollouts.old_logps[0])
    L = rollouts.completion_ids.shape[1]
    for view in rollouts.views:
        P = view.input_ids.shape[1] - L - view.suffix_length
        assert (view.input_ids[:, P:P + L] == trainer.mask_token_id).any()
        if estimator != "d1":  # d1 masks prompt tokens on purpose (its estimator); the others never do
            assert not (view.input_ids[:, :P] == trainer.mask_token_id).any()


def test_three_steps_of_the_tiny_arith_recipe_train_a_tiny_dream(dream_dir, tmp_path):
    from pathlib import Path

    from unigrpo.cli import main

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith.yaml"
    out = tmp_path / "rl"
    assert main(["train", "--config", str(recipe), "--model_name_or_path", str(dream_dir), "--max_steps", "3",
                 "--output_dir", str(out), "--per_device_train_batch_size", "32", "--eval_strategy", "no",
                 "--eval_on_start", "false", "--save_strategy", "no", "--load_best_model_at_end", "false",
                 "--logging_steps", "1", "--disable_tqdm", "true"]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    assert type(load_model(out)) is DreamModel


def test_the_published_dream_tokenizer_loads_as_qwen2s_without_its_code(tmp_path):
    """Dream ships ``tokenization_dream.DreamTokenizer`` (remote code: a copy of Qwen2's byte-level BPE) with only
    vocab.json + merges.txt; load_tokenizer loads those files with transformers' Qwen2 tokenizer, running no
    repository code. A toy vocabulary in the published layout: ``Ġ`` is the byte-level space."""
    specials = {"<|endoftext|>": 0, "<|beginoftext|>": 1, "<|mask|>": 2}
    vocab = {**specials, "a": 3, "b": 4, "ab": 5, "Ġ": 6, "Ġab": 7}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\na b\nĠ ab\n")
    added = {str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                      "special": True} for t, i in specials.items()}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "DreamTokenizer", "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "added_tokens_decoder": added, "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "mask_token": "<|mask|>", "unk_token": None, "errors": "replace"}))
    (tmp_path / "tokenization_dream.py").write_text("raise SystemExit('the repository code ran')\n")
    (tmp_path / "config.json").write_text(json.dumps(TINY))
    tokenizer = load_tokenizer(tmp_path)
    assert type(tokenizer).__name__ == "Qwen2Tokenizer" and tokenizer.padding_side == "left"
    assert (tokenizer.mask_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (2, 0, 0)
    assert tokenizer("ab ab<|mask|>", add_special_tokens=False)["input_ids"] == [5, 7, 2]
