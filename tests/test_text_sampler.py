"""rollouts/text_sampler.py against docs/design.md §4: golden values, invariants, and a slow plain reference loop."""

import math

import pytest
import torch

from rollouts import RECIPE_KEYS, SamplerConfig, generate_text, num_transfer_tokens
from rollouts.text_sampler import gumbel_max_sample, select_commits, truncate_after_eos
from model_helpers import sharpened


@pytest.fixture(scope="module")
def micro(micro_model_dir):
    """(model, mask id, eos id): the micro model, sharpened (``model_helpers.sharpened``)."""
    return sharpened(micro_model_dir)


def run(micro, prompt, attention_mask=None, seed=None, eos=True, model=None, **config):
    base, mask_id, eos_id = micro
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return generate_text(model or base, prompt, attention_mask, mask_token_id=mask_id,
                         eos_token_id=eos_id if eos else None, config=SamplerConfig(**config), generator=generator)


PROMPTS = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])  # (2, 5), no padding


class Output:
    def __init__(self, logits):
        self.logits = logits


class FixedModel(torch.nn.Module):
    """Logits that depend only on the position: token ``60 + t % 3`` wins at position t with a margin rising in t,
    so the most confident masked position is always the rightmost one. Records every call's kwargs and inputs."""

    def __init__(self, vocab=100):
        super().__init__()
        self.vocab, self.calls = vocab, []

    def forward(self, input_ids, **kwargs):
        self.calls.append((input_ids.clone(), kwargs))
        B, T = input_ids.shape
        logits = torch.zeros(B, T, self.vocab)
        t = torch.arange(T)
        logits[:, t, 60 + t % 3] = 1.0 + 0.1 * t.float()
        return Output(logits)


# ---- the plain reference: one unpadded prompt, temperature 0, Python loops, a second forward for CFG ----------------


def reference_generate(model, prompt, mask_id, gen_length, block_length, steps, cfg_scale=0.0):
    """LLaDA's loop written out slowly: per block, per step, full softmax, commit the k most probable masked
    positions of the block (ties → earlier position). Returns the sequence (P+L,) and the commit steps (L,)."""
    P, num_blocks = len(prompt), gen_length // block_length
    steps_per_block = steps // num_blocks
    x = torch.cat([prompt, torch.full((gen_length,), mask_id)])[None]
    commit_step, step = [None] * gen_length, 0
    for block in range(num_blocks):
        lo, hi = P + block * block_length, P + (block + 1) * block_length
        base, extra = divmod(block_length, steps_per_block)
        counts = [base + (i < extra) for i in range(steps_per_block)]
        for k in counts:
            with torch.no_grad():
                logits = model(x).logits[0]
                if cfg_scale:
                    unconditional = x.clone()
                    unconditional[0, :P] = mask_id
                    u = model(unconditional).logits[0]
                    logits = u + (cfg_scale + 1) * (logits - u)
            logits[:, mask_id] = -torch.inf  # the mask is never a prediction
            conf, pred = torch.softmax(logits.float(), -1).max(-1)
            candidates = sorted((-conf[p].item(), p) for p in range(lo, hi) if x[0, p] == mask_id)
            for _, p in candidates[:k]:
                x[0, p] = pred[p]
                commit_step[p - P] = step
            step += 1
    return x[0], torch.tensor(commit_step)


@pytest.mark.parametrize("gen_length,block_length,steps", [(12, 6, 4), (10, 5, 4), (8, 8, 3)])
def test_temperature_zero_equals_the_plain_reference_loop(micro, gen_length, block_length, steps):
    model = micro[0]
    kwargs = dict(gen_length=gen_length, block_length=block_length, steps=steps, temperature=0.0)
    out = run(micro, PROMPTS, eos=False, **kwargs)
    assert torch.equal(out.sequences, run(micro, PROMPTS, eos=False, **kwargs).sequences)  # deterministic
    for b in range(len(PROMPTS)):
        sequence, commit_step = reference_generate(model, PROMPTS[b], micro[1], gen_length, block_length, steps)
        assert torch.equal(out.sequences[b], sequence)
        assert torch.equal(out.commit_step[b], commit_step)


def test_cfg_equals_the_two_forward_reference_and_scale_zero_is_off(micro):
    kwargs = dict(gen_length=8, block_length=4, steps=4)
    guided = run(micro, PROMPTS, eos=False, cfg_scale=2.0, **kwargs)
    for b in range(len(PROMPTS)):
        sequence, _ = reference_generate(micro[0], PROMPTS[b], micro[1], cfg_scale=2.0, **kwargs)
        assert torch.equal(guided.sequences[b], sequence)
    off = run(micro, PROMPTS, eos=False, cfg_scale=0.0, **kwargs)
    assert torch.equal(off.sequences, run(micro, PROMPTS, eos=False, **kwargs).sequences)
    assert not torch.equal(off.sequences, guided.sequences)  # guidance does change this model's answers


def test_cfg_runs_one_forward_with_the_real_prompt_tokens_masked(micro):
    model, mask_id = FixedModel(), micro[1]
    prompt, attention_mask = torch.tensor([[3, 3, 20, 21]]), torch.tensor([[0, 0, 1, 1]])
    run(micro, prompt, attention_mask, model=model, gen_length=4, block_length=4, steps=2, cfg_scale=1.0)
    assert len(model.calls) == 2  # one forward per step, conditional and unconditional rows concatenated
    input_ids, kwargs = model.calls[0]
    assert input_ids[:, :4].tolist() == [[3, 3, 20, 21], [3, 3, mask_id, mask_id]]  # pads stay pads
    assert kwargs["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1, 1, 1]] * 2


def test_attention_mask_is_passed_only_when_there_is_padding(micro):
    kwargs = dict(gen_length=4, block_length=4, steps=1)
    for attention_mask, expected in [(None, None), (torch.ones(2, 5, dtype=torch.long), None),
                                     (torch.tensor([[0, 1, 1, 1, 1], [1] * 5]), [[0] + [1] * 8, [1] * 9])]:
        model = FixedModel()
        run(micro, PROMPTS, attention_mask, model=model, **kwargs)
        mask = model.calls[0][1].get("attention_mask")
        assert (mask if mask is None else mask.tolist()) == expected


# ---- schedule and block invariants -------------------------------------------------------------------------------


def test_num_transfer_tokens_golden_values():
    assert num_transfer_tokens(torch.tensor([10, 3, 0, 8]), 4).tolist() == [
        [3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0], [2, 2, 2, 2]]
    assert num_transfer_tokens(torch.tensor([5]), 1).tolist() == [[5]]


def test_select_commits_golden_values():
    confidence = torch.tensor([[0.1, 0.9, 0.5, 0.8], [0.3, 0.2, 0.1, 0.0], [0.5, 0.5, -math.inf, 0.5]])
    assert select_commits(confidence, torch.tensor([2, 0, 2])).tolist() == [
        [False, True, False, True], [False, False, False, False], [True, True, False, False]]  # ties → earlier


@pytest.mark.parametrize("remasking,temperature", [("low_confidence", 1.0), ("random", 0.0), ("random", 1.0)])
def test_every_step_commits_its_scheduled_count_inside_its_block(micro, remasking, temperature):
    out = run(micro, PROMPTS, gen_length=16, block_length=8, steps=6, temperature=temperature, remasking=remasking,
              seed=0, eos=False)
    assert not (out.completion_ids == micro[1]).any()
    assert torch.equal(out.sequences[:, :5], PROMPTS)
    for row in out.commit_step:
        # 8 masked per block over 3 steps → 3, 3, 2; block 0 owns steps 0-2 and block 1 steps 3-5
        assert torch.bincount(row, minlength=6).tolist() == [3, 3, 2, 3, 3, 2]
        assert (row[:8] <= 2).all() and (row[8:] >= 3).all()


def test_the_mask_token_is_never_committed():
    class PrefersMask(FixedModel):
        def forward(self, input_ids, **kwargs):
            out = super().forward(input_ids, **kwargs)
            out.logits[:, ::2, 99] = 50.0  # the mask id wins by far at every other position
            return out

    out = generate_text(PrefersMask(), PROMPTS, mask_token_id=99, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=4, steps=4))
    assert not (out.completion_ids == 99).any()
    assert (torch.bincount(out.commit_step[0], minlength=4) == 2).all()


def test_low_confidence_commits_the_most_confident_first():
    # FixedModel's confidence rises with position: each block is filled right to left, one token per step
    out = generate_text(FixedModel(), PROMPTS, mask_token_id=99, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=4, steps=8))
    assert out.commit_step.tolist() == [[3, 2, 1, 0, 7, 6, 5, 4]] * 2
    assert out.completion_ids.tolist() == [[60 + t % 3 for t in range(5, 13)]] * 2


# ---- padding: a batch equals each prompt alone ---------------------------------------------------------------------


@pytest.mark.parametrize("cfg_scale", [0.0, 1.5])
def test_padded_batch_equals_each_prompt_alone(micro, cfg_scale):
    # RoPE positions are absolute, so a prompt alone is compared with the same left padding it has in the batch (a
    # batch of one); the pad *values* are then shown to be invisible, so only the real tokens decide the answer.
    pad = micro[2]
    batch = torch.tensor([[pad, pad, pad, 40, 41], [50, 51, 52, 53, 54], [pad, 60, 61, 62, 63]])
    mask = (torch.arange(5) >= torch.tensor([[3], [0], [1]])).long()
    kwargs = dict(gen_length=8, block_length=4, steps=4, cfg_scale=cfg_scale)
    together = run(micro, batch, mask, **kwargs)
    for b in range(3):
        alone = run(micro, batch[b:b + 1], mask[b:b + 1], **kwargs)
        assert torch.equal(together.sequences[b], alone.sequences[0])
        assert torch.equal(together.commit_step[b], alone.commit_step[0])
    other_pads = batch.masked_fill(mask == 0, 77)
    assert torch.equal(run(micro, other_pads, mask, **kwargs).completion_ids, together.completion_ids)
    # and the mask matters: reading the pads as tokens changes the padded rows' answers
    assert not torch.equal(run(micro, other_pads, None, **kwargs).completion_ids[[0, 2]],
                           together.completion_ids[[0, 2]])


# ---- randomness --------------------------------------------------------------------------------------------------


def test_gumbel_max_samples_the_tempered_softmax():
    logits = torch.tensor([0.7, 0.2, 0.1]).log().expand(40000, 3)
    generator = torch.Generator().manual_seed(0)
    freq = torch.bincount(gumbel_max_sample(logits, 1.0, generator), minlength=3) / 40000
    assert torch.allclose(freq, torch.tensor([0.7, 0.2, 0.1]), atol=0.01)
    freq = torch.bincount(gumbel_max_sample(logits, 0.5, generator), minlength=3) / 40000
    assert torch.allclose(freq, torch.tensor([49, 4, 1]) / 54, atol=0.01)  # p^(1/τ), renormalised
    assert gumbel_max_sample(logits[:2], 0.0, None).tolist() == [0, 0]


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_seeded_runs_reproduce_whatever_the_global_seed(micro, remasking):
    kwargs = dict(gen_length=16, block_length=8, steps=8, temperature=1.0, remasking=remasking)
    torch.manual_seed(1)
    a = run(micro, PROMPTS, seed=1, **kwargs)
    torch.manual_seed(2)
    b = run(micro, PROMPTS, seed=1, **kwargs)
    assert torch.equal(a.sequences, b.sequences) and torch.equal(a.commit_step, b.commit_step)
    assert not torch.equal(a.sequences, run(micro, PROMPTS, seed=2, **kwargs).sequences)


def test_random_remasking_ignores_confidence():
    # with FixedModel, low_confidence always fills right to left; random orders differ between seeds
    config = SamplerConfig(gen_length=8, block_length=8, steps=8, remasking="random")
    orders = {tuple(generate_text(FixedModel(), PROMPTS[:1], mask_token_id=99, eos_token_id=None, config=config,
                                  generator=torch.Generator().manual_seed(seed)).commit_step[0].tolist())
              for seed in range(4)}
    assert len(orders) > 1 and (7, 6, 5, 4, 3, 2, 1, 0) not in orders


# ---- EOS ---------------------------------------------------------------------------------------------------------


def test_everything_after_the_first_eos_is_eos(micro):
    eos = micro[2]

    class EosAtThird(FixedModel):
        def forward(self, input_ids, **kwargs):
            logits = torch.zeros(*input_ids.shape, 100)
            logits[..., 60] = 1.0
            logits[:, -6, eos] = 5.0  # answer position 2 of 8
            return Output(logits)

    config = SamplerConfig(gen_length=8, block_length=8, steps=8)
    out = generate_text(EosAtThird(), PROMPTS, mask_token_id=micro[1], eos_token_id=eos, config=config)
    assert out.completion_ids.tolist() == [[60, 60, eos, eos, eos, eos, eos, eos]] * 2
    assert torch.equal(out.sequences[:, 5:], out.completion_ids)
    raw = generate_text(EosAtThird(), PROMPTS, mask_token_id=micro[1], eos_token_id=None, config=config)
    assert raw.completion_ids.tolist() == [[60, 60, eos, 60, 60, 60, 60, 60]] * 2
    assert truncate_after_eos(torch.tensor([[1, 2, 3], [0, 2, 0]]), 0).tolist() == [[1, 2, 3], [0, 0, 0]]


# ---- configuration and registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(gen_length=10, block_length=4), "gen_length=10"),
        (dict(gen_length=8, block_length=4, steps=3), "steps=3"),
        (dict(gen_length=8, block_length=4, steps=1), "steps=1"),
        (dict(steps=2.5), "steps=2.5"),
        (dict(gen_length=0), "gen_length=0"),
        (dict(block_length=-4), "block_length=-4"),
        (dict(block_length=True), "block_length=True"),
        (dict(remasking="top_p"), "remasking='top_p'"),
        (dict(temperature=-1.0), "temperature=-1.0"),
        (dict(temperature=float("nan")), "temperature=nan"),
        (dict(cfg_scale=-0.5), "cfg_scale=-0.5"),
    ],
)
def test_bad_config_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


def test_bad_inputs_are_clear_errors(micro):
    with pytest.raises(ValueError, match="prompt_ids must be"):
        run(micro, PROMPTS[0], gen_length=4, block_length=4, steps=1)
    with pytest.raises(ValueError, match="attention_mask shape"):
        run(micro, PROMPTS, torch.ones(2, 4), gen_length=4, block_length=4, steps=1)


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(max_completion_length=10, block_length=4), "max_completion_length=10 is not divisible by block_length=4"),
        (dict(max_completion_length=8, block_length=4, diffusion_steps=3), r"diffusion_steps=3 is not divisible .*"
                                                                            r"\(max_completion_length/block_length"),
        (dict(kv_cache="duel"), r"kv_cache='duel' is not valid; choose one of \['none', 'prefix', 'dual'\]"),
        (dict(confidence_threshold=1.5), r"confidence_threshold=1.5 must be a confidence"),
        (dict(confidence_factor=0.5, remasking="random"), "confidence_threshold/confidence_factor decoding"),
    ],
)
def test_recipe_keys_name_the_users_option(options, message):
    """Built from recipe / command-line keys, an error names the key the user wrote (not gen_length, cache …)."""
    with pytest.raises(ValueError, match=message):
        SamplerConfig.from_recipe(**options)
    with pytest.raises(TypeError, match="unknown sampler option"):
        SamplerConfig.from_recipe(gen_length=8)


def test_recipe_keys_map_onto_every_field():
    config = SamplerConfig.from_recipe(max_completion_length=8, block_length=4, diffusion_steps=4, kv_cache="dual",
                                       confidence_threshold=0.9, temperature=0.5)
    assert (config.gen_length, config.block_length, config.steps) == (8, 4, 4)
    assert (config.cache, config.threshold) == ("dual", 0.9)
    assert config.temperature == 0.5 and config.factor is None  # the rest: SamplerConfig's defaults
    assert set(RECIPE_KEYS) == {f for f in SamplerConfig.__dataclass_fields__}


def test_recipe_fields_are_the_sampler_options():
    """One source: the recipe's sampler fields are exactly RECIPE_KEYS' values, with the sampler's choices."""
    from dataclasses import fields

    from rollouts import CACHES, REMASKING
    from unigrpo.config import SamplingArguments

    recipe = {f.name: f for f in fields(SamplingArguments)}
    assert set(RECIPE_KEYS.values()) <= set(recipe)
    assert recipe["remasking"].metadata["choices"] == list(REMASKING)
    assert recipe["kv_cache"].metadata["choices"] == list(CACHES)
    config = SamplingArguments(max_completion_length=6, block_length=6, diffusion_steps=6).sampler_config(0.0)
    assert (config.gen_length, config.steps, config.temperature) == (6, 6, 0.0)
    assert (config.cache, config.threshold) == ("dual", 0.9)  # the recipe's defaults, not SamplerConfig's
    with pytest.raises(ValueError, match="max_completion_length=10 is not divisible by block_length=4"):
        SamplingArguments(max_completion_length=10, block_length=4).sampler_config()


# ---- decode statistics (the RL guard against over-confident parallel decoding) ------------------------------------


@pytest.mark.parametrize("remasking", ["low_confidence", "random"])
def test_decode_stats_count_commits_per_forward_and_their_probability(remasking):
    """Plain sampler, one block: every row gets L / steps tokens per forward. The confidence is the model's
    probability of each committed token whatever the remasking: FixedModel's winner at position t has logit
    1 + 0.1 t against 98 zeros (the mask id's column is forbidden), so p(t) = e^a / (e^a + 98)."""
    out = generate_text(FixedModel(), PROMPTS, mask_token_id=99, eos_token_id=None,
                        config=SamplerConfig(gen_length=8, block_length=8, steps=4, remasking=remasking),
                        generator=torch.Generator().manual_seed(0))
    assert (out.stats.committed, out.stats.row_forwards) == (16.0, 8.0)  # 2 rows × 8 tokens, 4 forwards × 2 rows
    assert out.stats.tokens_per_forward == 8 / 4
    expected = sum(math.exp(1 + 0.1 * t) / (math.exp(1 + 0.1 * t) + 98) for t in range(5, 13)) / 8
    assert out.stats.committed_confidence == pytest.approx(expected, rel=1e-6)
    assert 0 < out.stats.committed_confidence <= 1


def test_decode_stats_add_up_over_calls():
    """Chunks, Ray workers and processes sum their stats; the ratios are then those of the whole batch."""
    from rollouts.text_sampler import DecodeStats

    total = DecodeStats(8.0, 4.0, 6.0) + DecodeStats(8.0, 12.0, 2.0)
    assert (total.tokens_per_forward, total.committed_confidence) == (1.0, 0.5)
    assert DecodeStats().tokens_per_forward == 0.0 and DecodeStats().committed_confidence == 0.0
