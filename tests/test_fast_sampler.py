"""Fast rollouts (issue #7): the block KV cache of the model and the sampler's cache / threshold / factor options."""

import dataclasses
import math

import pytest
import torch

from rollouts import SamplerConfig, generate_text, tokenize_prompts
from rollouts.text_sampler import (
    RECIPE_KEYS,
    commit_count,
    factor_commit_count,
    fast_dllm_commit_count,
    threshold_commit_count,
)
from unigrpo.models import load_model, load_tokenizer, resolve_model_path
from unigrpo.models.block_cache import BlockKVCache
from model_helpers import sharpened
from unigrpo.models.tiny import init_tiny

PROMPTS = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])


@pytest.fixture(scope="module")
def sharp(tmp_path_factory):
    """(model, mask id, eos id): a micro model with 2 key/value heads for 4 query heads (grouped-query attention),
    sharpened so that confidences are well apart (``model_helpers.sharpened``)."""
    folder = init_tiny(tmp_path_factory.mktemp("gqa") / "m", preset="micro", n_heads=4, n_kv_heads=2)
    return sharpened(folder)


@pytest.fixture(scope="module")
def arith():
    """The shipped tiny arithmetic model (SFT'd, confident) and 200 held-out prompts, left-padded."""
    from unigrpo.data.arith import make_arith_dataset
    from unigrpo.prompts import prompt_texts

    path = resolve_model_path("tiny-arith-sft")
    model, tok = load_model(path).eval(), load_tokenizer(path)
    prompts = prompt_texts([row["prompt"] for row in make_arith_dataset("test", limit=200)], tok)
    ids, mask = tokenize_prompts(tok, prompts)
    return model, tok, ids, mask


def run(setup, prompt, attention_mask=None, seed=None, **config):
    model, mask_id, eos_id = setup[:3]
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return generate_text(model, prompt, attention_mask, mask_token_id=mask_id, eos_token_id=eos_id,
                         config=SamplerConfig(**config), generator=generator)


def padded_batch(setup):
    pad = setup[2]
    batch = torch.tensor([[pad, pad, pad, 40, 41], [50, 51, 52, 53, 54], [pad, 60, 61, 62, 63]])
    return batch, (torch.arange(5) >= torch.tensor([[3], [0], [1]])).long()


# ---- the model's block KV cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("span", [(5, 13), (5, 9), (9, 13), (0, 13)])
def test_a_span_forward_on_a_fresh_cache_equals_the_full_forward(sharp, span):
    model, mask_id, _ = sharp
    batch, mask = padded_batch(sharp)
    x = torch.cat([batch, torch.randint(0, 40, (3, 8))], dim=1)  # (3, 13)
    x[:, 7:11] = mask_id
    full_mask = torch.cat([mask, torch.ones(3, 8, dtype=torch.long)], dim=1)
    cache = BlockKVCache()
    with torch.no_grad():
        full = model(x, attention_mask=full_mask, kv_cache=cache).logits  # (3, 13, V)
        assert len(cache.keys) == model.config.n_layers and cache.keys[0].shape == (3, 2, 13, 8)  # nkv = 2
        start, stop = span
        part = model(x[:, start:stop], attention_mask=full_mask, kv_cache=cache, span_start=start).logits
    assert part.shape == (3, stop - start, full.shape[-1])
    torch.testing.assert_close(part, full[:, start:stop], atol=1e-5, rtol=1e-5)


def test_a_span_forward_reads_the_cached_keys_outside_the_span(sharp):
    model = sharp[0]
    x = torch.cat([PROMPTS, torch.full((2, 8), sharp[1])], dim=1)  # (2, 13)
    cache = BlockKVCache()
    with torch.no_grad():
        full = model(x, kv_cache=cache).logits
        for layer in range(len(cache.keys)):  # perturb what the prompt positions stored
            cache.keys[layer][:, :, :5] += 1.0
        part = model(x[:, 5:], kv_cache=cache, span_start=5).logits
    assert not torch.allclose(part, full[:, 5:], atol=1e-3)  # the stale keys were used, not recomputed


def test_the_cache_leaves_the_training_forward_alone(sharp):
    model = sharp[0]
    x = torch.cat([PROMPTS, torch.full((2, 8), sharp[1])], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(x, kv_cache=BlockKVCache()).logits, model(x).logits, atol=0, rtol=0)


def test_cache_misuse_is_a_clear_error(sharp):
    model, x = sharp[0], torch.cat([PROMPTS, torch.full((2, 8), sharp[1])], dim=1)
    with pytest.raises(ValueError, match="span_start needs a kv_cache"):
        model(x[:, 5:], span_start=5)
    with pytest.raises(ValueError, match="outside the cache"):
        model(x[:, 5:], kv_cache=BlockKVCache(), span_start=5)


# ---- commit counts -------------------------------------------------------------------------------------------------


def test_threshold_and_factor_counts_golden_values():
    inf = math.inf
    confidence = torch.tensor([[0.97, 0.2, 0.93, -inf], [0.45, 0.4, -inf, -inf], [1.0, 1.0, 0.99, 0.3]])
    assert threshold_commit_count(confidence, 0.9).tolist() == [2, 0, 3]
    assert threshold_commit_count(confidence, 1.0).tolist() == [0, 0, 0]  # '>': τ = 1 is never parallel
    # factor f = 1: the n-th best must be ≥ 1 − 1/(n + 1): 0.5, 0.667, 0.75, 0.8 for n = 1…4
    assert factor_commit_count(confidence, 1.0).tolist() == [2, 0, 3]
    assert factor_commit_count(confidence, 0.1).tolist() == [1, 0, 3]  # bounds 0.95, 0.967, 0.975, 0.98
    config = SamplerConfig(gen_length=4, block_length=4, steps=4, threshold=0.9)
    assert commit_count(torch.tensor([1, 1, 0]), confidence, config).tolist() == [2, 1, 3]  # ≥ schedule, ≥ 1


class Confident(torch.nn.Module):
    """Position-only logits: token 60 + t % 3 with probability ≈ 0.99 at even positions and ≈ 0.5 at odd ones."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, **kwargs):
        self.calls += 1
        B, T = input_ids.shape
        logits = torch.zeros(B, T, 100)
        t = torch.arange(T)
        logits[:, t, 60 + t % 3] = torch.where(t % 2 == 0, 9.5, 4.6)  # e^9.5/(e^9.5+99) ≈ 0.99; e^4.6 ≈ 99.5 → 0.5
        return type("Out", (), {"logits": logits})()


def test_threshold_commits_every_confident_position_and_ends_the_block_early():
    config = SamplerConfig(gen_length=8, block_length=4, steps=8, threshold=0.9)
    model = Confident()
    out = generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=None, config=config)
    # Prompt length 5: answer positions 5…12, of which the even ones (6, 8 | 10, 12) are confident. A block's
    # first step commits both of its confident positions (1 scheduled, 2 above τ), then one per step (ties → left).
    assert out.commit_step.tolist() == [[1, 0, 2, 0, 5, 4, 6, 4]] * 2
    assert out.forwards == model.calls == 6  # 3 steps per block instead of 4
    assert not (out.completion_ids == 99).any()
    assert out.completion_ids[0].tolist() == [60 + t % 3 for t in range(5, 13)]


def test_factor_decoding_commits_in_parallel_too():
    model = Confident()
    out = generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=4, steps=8, factor=0.5))
    # f = 0.5: bounds 0.75, 0.83 for the 1st and 2nd best; 0.99 passes both, 0.5 neither
    assert out.commit_step.tolist() == [[1, 0, 2, 0, 5, 4, 6, 4]] * 2
    assert out.forwards == 6 and not (out.completion_ids == 99).any()


# ---- the fast sampler against the plain one ------------------------------------------------------------------------


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 3)])
@pytest.mark.parametrize("gen_length,block_length,steps", [(12, 6, 4), (8, 8, 8), (16, 4, 16)])
def test_threshold_one_without_cache_equals_the_plain_sampler(sharp, temperature, seed, gen_length, block_length,
                                                               steps):
    kwargs = dict(gen_length=gen_length, block_length=block_length, steps=steps, temperature=temperature)
    batch, mask = padded_batch(sharp)
    plain = run(sharp, batch, mask, seed=seed, **kwargs)
    fast = run(sharp, batch, mask, seed=seed, threshold=1.0, **kwargs)
    assert torch.equal(fast.sequences, plain.sequences) and torch.equal(fast.commit_step, plain.commit_step)
    assert fast.forwards == plain.forwards == steps


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_a_cache_refreshed_at_every_step_is_exact(sharp, cache, cfg_scale):
    # one step per block: every forward is a block's first, which refreshes the cache, so nothing is stale
    batch, mask = padded_batch(sharp)
    kwargs = dict(gen_length=12, block_length=4, steps=3, cfg_scale=cfg_scale)
    assert torch.equal(run(sharp, batch, mask, cache=cache, **kwargs).sequences,
                       run(sharp, batch, mask, **kwargs).sequences)


@pytest.mark.parametrize("cache,threshold", [("prefix", None), ("dual", None), ("dual", 0.9), ("none", 0.5)])
@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_fast_padded_batch_equals_each_prompt_alone_and_leaves_no_mask(sharp, cache, threshold, cfg_scale):
    batch, mask = padded_batch(sharp)
    kwargs = dict(gen_length=16, block_length=8, steps=16, cache=cache, threshold=threshold, cfg_scale=cfg_scale)
    together = run(sharp, batch, mask, **kwargs)
    assert not (together.completion_ids == sharp[1]).any()
    for b in range(3):
        alone = run(sharp, batch[b:b + 1], mask[b:b + 1], **kwargs)
        assert torch.equal(together.sequences[b], alone.sequences[0])
        assert torch.equal(together.commit_step[b], alone.commit_step[0])


def test_cached_steps_forward_only_the_span(sharp):
    calls = []

    class Spy(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            calls.append((input_ids.shape[1], kwargs.get("span_start")))
            return sharp[0](input_ids, **kwargs)

    for cache, span_width in [("prefix", [8, 4]), ("dual", [4, 4])]:
        calls.clear()
        generate_text(Spy(), PROMPTS, mask_token_id=sharp[1], eos_token_id=None,
                      config=SamplerConfig(gen_length=8, block_length=4, steps=4, cache=cache))
        # block 0: full (13) then a span from 5; block 1: full then a span from 9
        assert calls == [(13, None), (span_width[0], 5), (13, None), (span_width[1], 9)]


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cache_agrees_with_the_plain_sampler_on_the_trained_model(arith, cache):
    """One token per step at temperature 0. The cache is an approximation — the prompt's keys and values stay
    those of the block's first step, while in the plain sampler they move as answer tokens are committed — so
    answers may differ. Measured on the tiny arithmetic model: 80.5 % of 200 answers identical for both caches,
    and the same task accuracy (benchmarks/RESULTS.md "Fast rollouts"); the bound is 70 %."""
    model, tok, ids, mask = arith
    kwargs = dict(gen_length=6, block_length=6, steps=6, temperature=0.0)
    plain = generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                          config=SamplerConfig(**kwargs))
    fast = generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                         config=SamplerConfig(cache=cache, **kwargs))
    agreement = (fast.completion_ids == plain.completion_ids).all(dim=1).float().mean().item()
    assert agreement >= 0.70, agreement


def test_threshold_decoding_saves_forwards_on_the_trained_model(arith):
    model, tok, ids, mask = arith
    kwargs = dict(gen_length=6, block_length=6, steps=6, temperature=0.0)
    plain = generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                          config=SamplerConfig(**kwargs))
    fast = generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                         config=SamplerConfig(threshold=0.9, **kwargs))
    assert fast.forwards < plain.forwards
    assert (fast.completion_ids == plain.completion_ids).all(dim=1).float().mean().item() >= 0.9


# ---- configuration -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(cache="kv"), "cache='kv'"),
        (dict(threshold=0.0), "threshold=0.0"),
        (dict(threshold=1.5), "threshold=1.5"),
        (dict(factor=-1.0), "factor=-1.0"),
        (dict(factor=float("inf")), "factor=inf"),
        (dict(threshold=0.9, remasking="random"), "remasking='low_confidence'"),
    ],
)
def test_bad_fast_options_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


def test_trainer_config_carries_and_checks_the_fast_options(tmp_path):
    from unigrpo import UniGRPOConfig

    base = dict(output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=4, report_to="none")
    config = UniGRPOConfig(kv_cache="dual", confidence_threshold=0.9, **base).sampler_config()
    assert (config.cache, config.threshold, config.factor) == ("dual", 0.9, None)
    with pytest.raises(ValueError, match="cache='full'"):
        UniGRPOConfig(kv_cache="full", **base)
    with pytest.raises(ValueError, match="threshold=2.0"):
        UniGRPOConfig(confidence_threshold=2.0, **base)


# ---- Fast-dLLM's threshold rule (threshold_rule='fast_dllm') -------------------------------------------------------


class Staircase(torch.nn.Module):
    """Logits whose softmax hits exact confidences: answer position j (0…7, blocks of 4) predicts token j, tied
    with j + 8, j + 16 … so that its probability is exactly 1, 1/2, 1/3 or 1/4 (every other logit −inf, the mask
    id 32 included, so forbidding the mask changes nothing). Row 0, by j % 4: 1 | 1/2 | 1/2 once position j − 1 is
    committed, else 1/4 | 1/3. Row 1: every position 1. ``calls`` counts forwards."""

    MASK, P = 32, 3

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, input_ids, **kwargs):
        self.calls += 1
        B, T = input_ids.shape
        ties = torch.ones(B, T, dtype=torch.long)  # how many tokens share the top logit
        answer = input_ids[:, self.P :]  # (B, 8)
        left_done = torch.cat([torch.ones(B, 1, dtype=torch.bool), answer[:, :-1] != self.MASK], dim=1)
        row0 = torch.tensor([1, 2, 4, 3] * 2)
        row0 = torch.where((torch.arange(8) % 4 == 2) & left_done[0], 2, row0)
        ties[0, self.P :] = row0
        logits = torch.full((B, T, 33), -torch.inf)
        j = (torch.arange(T) - self.P).clamp(0, 7).expand(B, T)  # (B, T) answer position (prompt: any)
        for m in range(4):  # token j + 8m gets logit 0 while m < ties
            logits.scatter_(2, (j + 8 * m)[..., None], torch.where(ties > m, 0.0, -torch.inf)[..., None])
        return type("Out", (), {"logits": logits})()


@pytest.mark.parametrize(
    "threshold,row0_steps,forwards",
    [
        # c = 1/2, ≥: block 0 step 0 commits j = 0 (1) and 1 (1/2 ≥ c); step 1 j = 2 (now 1/2); step 2 j = 3
        # (1/3 < c: only the most confident, as Fast-dLLM's "at least one"). Block 1 the same. Row 1 commits a whole
        # block in its first step, then waits (nothing left to commit) while row 0 finishes: 3 forwards a block.
        (0.5, [0, 0, 1, 2, 4, 4, 5, 6], 6),
        # c just above 1/2: 1/2 no longer passes, so one position a step — 4 forwards a block, 8 > steps = 2
        (0.5 + 1e-9, [0, 1, 2, 3, 4, 5, 6, 7], 8),
    ],
)
def test_fast_dllm_rule_follows_a_hand_written_trace(threshold, row0_steps, forwards):
    """Fast-dLLM (``llada/generate.py``: ``get_transfer_index`` with ``threshold``): the schedule is ignored (steps=2
    would be one step per block), a step commits every masked position of the block with confidence ≥ c and at
    least the most confident one, and a block loops until no row has a mask. commit_step = block · K + step."""
    model = Staircase()
    config = SamplerConfig(gen_length=8, block_length=4, steps=2, threshold=threshold, threshold_rule="fast_dllm")
    out = generate_text(model, torch.tensor([[1, 2, 3], [4, 5, 6]]), mask_token_id=32, eos_token_id=None,
                        config=config)
    assert out.commit_step.tolist() == [row0_steps, [0, 0, 0, 0, 4, 4, 4, 4]]
    assert out.forwards == model.calls == forwards
    assert out.completion_ids.tolist() == [list(range(8))] * 2


def test_floor_rule_keeps_the_schedule_and_strict_threshold():
    """The default rule on the same model: with steps = 2 the schedule commits a whole block per step (a floor
    Fast-dLLM does not have); with one scheduled token per step, 1/2 does not pass c = 1/2 (``>``)."""
    prompts = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = generate_text(Staircase(), prompts, mask_token_id=32, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=4, steps=2, threshold=0.5))
    assert out.forwards == 2 and out.commit_step.tolist() == [[0, 0, 0, 0, 1, 1, 1, 1]] * 2
    out = generate_text(Staircase(), prompts, mask_token_id=32, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=4, steps=8, threshold=0.5))
    assert out.commit_step[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7] and out.forwards == 8


def test_fast_dllm_count_golden_values():
    inf = math.inf
    confidence = torch.tensor([[0.9, 0.2, 0.93, -inf], [0.45, 0.4, -inf, -inf], [-inf, -inf, -inf, -inf]])
    assert fast_dllm_commit_count(confidence, 0.9).tolist() == [2, 1, 1]  # ≥; at least one (none left: no commit)
    assert threshold_commit_count(confidence, 0.9).tolist() == [1, 0, 0]  # the floor rule's '>'
    config = SamplerConfig(gen_length=4, block_length=4, steps=4, threshold=0.9, threshold_rule="fast_dllm")
    assert commit_count(torch.tensor([3, 3, 3]), confidence, config).tolist() == [2, 1, 1]  # schedule ignored
    assert config.max_steps_per_block == 4 and SamplerConfig(gen_length=8, block_length=4, steps=2).max_steps_per_block == 1


def test_threshold_rule_is_a_checked_recipe_key():
    assert RECIPE_KEYS["threshold_rule"] == "threshold_rule"
    with pytest.raises(ValueError, match=r"threshold_rule='fastdllm' is not valid; choose one of \['floor', 'fast_dllm'\]"):
        SamplerConfig.from_recipe(threshold_rule="fastdllm")
    with pytest.raises(ValueError, match="threshold_rule='fast_dllm' follows Fast-dLLM's threshold path.*"
                                         "confidence_factor=None"):
        SamplerConfig.from_recipe(threshold_rule="fast_dllm", confidence_factor=1.0)
    from unigrpo.config import SamplingArguments

    config = SamplingArguments(threshold_rule="fast_dllm").sampler_config()
    assert (config.threshold_rule, config.threshold) == ("fast_dllm", 0.9)
    assert SamplingArguments().sampler_config().threshold_rule == "floor"


# ---- early finish: no forwards for what is finished (issue #18) ----------------------------------------------------


class EosRows(torch.nn.Module):
    """Position-only logits like ``Confident``, except that the row whose prompt starts with token p predicts EOS
    (2) with probability ≈ 0.99 at answer position ``eos_at[p]``, and is confident (≈ 0.99) everywhere when p is in
    ``sure``. Rows are told apart by their prompt, whatever their place in the batch. Records each forward's rows."""

    def __init__(self, eos_at, sure=(), prompt_length=5):
        super().__init__()
        self.eos_at, self.sure, self.P, self.rows = eos_at, sure, prompt_length, []

    def forward(self, input_ids, **kwargs):
        self.rows.append(input_ids.shape[0])
        B, T = input_ids.shape
        t = torch.arange(T)
        logits = torch.zeros(B, T, 100)
        logits[:, t, 60 + t % 3] = torch.where(t % 2 == 0, 9.5, 4.6)
        for r, first in enumerate(input_ids[:, 0].tolist()):
            if first in self.sure:
                logits[r, t, 60 + t % 3] = 9.5
            if first in self.eos_at:
                logits[r, self.P + self.eos_at[first], 2] = 12.0
        return type("Out", (), {"logits": logits})()


def early_pair(model_factory, prompts, mask=None, seed=None, **config):
    """(early finish on, off) on the same prompts and seed."""
    outs = []
    for early in (True, False):
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        outs.append(generate_text(model_factory(), prompts, mask, mask_token_id=99, eos_token_id=2,
                                  config=SamplerConfig(early_finish=early, **config), generator=generator))
    return outs


def test_a_decided_row_leaves_the_batch_and_the_rest_keeps_its_order():
    """Plain schedule, 4 blocks of 2: row 1's EOS (answer position 1) and position 0 are committed in block 0, so it
    is not forwarded from block 1 on; rows 0 and 2 go on, and the results are scattered back in order."""
    prompts = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34], [40, 41, 42, 43, 44]])
    models = []
    factory = lambda: models.append(EosRows({30: 1, 40: 5})) or models[-1]  # noqa: E731
    early, full = early_pair(factory, prompts, gen_length=8, block_length=2, steps=8)
    assert models[0].rows == [3, 3, 2, 2, 2, 2, 1, 1]  # row 1 leaves after block 0, row 2 (EOS at 5) after block 2
    assert models[1].rows == [3] * 8
    assert torch.equal(early.completion_ids, full.completion_ids) and torch.equal(early.sequences, full.sequences)
    assert early.completion_ids[1].tolist() == [62, 2] + [2] * 6
    assert early.completion_ids[2].tolist()[5:] == [2, 2, 2]
    assert (early.forwards, early.stats.row_forwards, full.stats.row_forwards) == (8, 16.0, 24.0)
    assert early.commit_step[1].tolist() == [1, 0] + [1] * 6  # EOS padding: the step the row was last forwarded
    assert torch.equal(early.commit_step[0], full.commit_step[0])
    assert early.stats.committed == 8 + 2 + 6  # committed by the model; the EOS padding is not counted


def test_the_batch_ends_when_every_answer_is_decided():
    model = EosRows({20: 0, 30: 1})
    out = generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=2,
                        config=SamplerConfig(gen_length=8, block_length=2, steps=8))
    assert model.rows == [2, 2] and out.forwards == 2  # one block of four
    assert out.completion_ids.tolist() == [[2] * 8, [62, 2] + [2] * 6]


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_threshold_rows_leave_a_finished_block_without_waiting(cfg_scale):
    """Threshold 0.9 in blocks of 4: every position of row 0 is confident, so its block ends after one step while
    row 1 needs three (one ≈ 0.99 pair, then one 0.5 position per step); with early finish row 1 goes on alone,
    with the same tokens and commit steps as without."""
    models = []
    factory = lambda: models.append(EosRows({}, sure=(20,))) or models[-1]  # noqa: E731
    early, full = early_pair(factory, PROMPTS, gen_length=8, block_length=4, steps=8, threshold=0.9,
                             cfg_scale=cfg_scale)
    assert torch.equal(early.completion_ids, full.completion_ids)
    assert torch.equal(early.commit_step, full.commit_step)
    width = 2 if cfg_scale else 1  # CFG forwards each row twice (conditional, unconditional) in one batch
    assert models[0].rows == [2 * width, width, width] * 2  # each block: both rows, then row 1 alone
    assert models[1].rows == [2 * width] * 6
    assert early.stats.row_forwards == 8.0 and full.stats.row_forwards == 12.0


@pytest.mark.parametrize("cache,threshold,temperature,cfg_scale", [
    ("none", None, 1.0, 0.0), ("dual", 0.9, 0.0, 0.0), ("prefix", 0.9, 1.0, 0.0), ("dual", None, 1.0, 1.0),
])
def test_early_finish_gives_the_same_answers_on_the_trained_model(arith, cache, threshold, temperature, cfg_scale):
    """64 left-padded prompts, 3 blocks: rows leave as their answers are decided (and, with a threshold, as their
    blocks end), yet every token is the same — noise is drawn for the whole batch, so a row's draws do not depend on
    which others still run, and each row's cache rows go with it."""
    model, tok, ids, mask = arith
    ids, mask = ids[:64], mask[:64]
    outs = []
    for early in (True, False):
        config = SamplerConfig(gen_length=12, block_length=4, steps=12, temperature=temperature, cache=cache,
                               threshold=threshold, cfg_scale=cfg_scale, early_finish=early)
        outs.append(generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                                  config=config, generator=torch.Generator().manual_seed(7)))
    early, full = outs
    assert torch.equal(early.sequences, full.sequences)
    assert early.stats.row_forwards < 0.8 * full.stats.row_forwards  # most answers are decided in block 0
    finished = early.commit_step != full.commit_step  # only EOS padding may differ
    assert (early.completion_ids[finished] == tok.eos_token_id).all()


def test_the_cache_keeps_the_rows_it_is_told(sharp):
    """After ``keep_rows``, a span forward of the kept rows equals their full forward: the rows' keys and values
    are selected in the given order."""
    model, mask_id, _ = sharp
    x = torch.cat([torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34], [40, 41, 42, 43, 44]]),
                   torch.full((3, 8), mask_id)], dim=1)  # (3, 13)
    cache = BlockKVCache()
    with torch.no_grad():
        full = model(x, kv_cache=cache).logits
        cache.keep_rows(torch.tensor([2, 0]))
        assert cache.keys[0].shape[0] == 2
        part = model(x[[2, 0], 5:9], kv_cache=cache, span_start=5).logits
    torch.testing.assert_close(part, full[[2, 0], 5:9], atol=1e-5, rtol=1e-5)


def test_host_reads_are_one_per_block_or_one_per_parallel_step(monkeypatch):
    """The plain schedule decides everything on the device: one host read per block boundary (which rows are
    decided) plus the statistics'; threshold decoding adds one per step (which rows go on)."""
    reads = []
    for name in ("tolist", "item", "__bool__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name: reads.append(_n) or _o(self, *a))
    model = Confident()  # reads nothing itself
    plain = SamplerConfig(gen_length=8, block_length=2, steps=8)
    generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=2, config=plain)
    assert len(reads) == 3 + 1  # 4 blocks: 3 boundaries, and the statistics
    reads.clear()
    generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=2,
                  config=dataclasses.replace(plain, early_finish=False))
    assert len(reads) == 1  # no early finish: only the statistics
    reads.clear()
    model.calls = 0
    generate_text(model, PROMPTS, mask_token_id=99, eos_token_id=2,
                  config=SamplerConfig(gen_length=8, block_length=4, steps=8, threshold=0.9))
    assert model.calls == 6 and len(reads) == 6 + 1 + 1  # one after each step (blocks end early), 1 boundary, stats


def test_early_finish_is_a_checked_recipe_key():
    from unigrpo.config import SamplingArguments

    assert SamplingArguments().sampler_config().early_finish is True
    assert SamplingArguments(early_finish=False).sampler_config().early_finish is False
    with pytest.raises(ValueError, match="early_finish='no' must be true or false"):
        SamplingArguments(early_finish="no").sampler_config()
