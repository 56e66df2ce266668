"""The LLaDA/MMaDA text sampler against DESIGN §4, and against a plain reference loop."""

import pytest
import torch

from rollouts import SamplerConfig, generate_text, get_sampler, num_transfer_tokens
from unigrpo.models import load_model, load_tokenizer


@pytest.fixture(scope="module")
def model_and_ids(micro_model_dir):
    model, tok = load_model(micro_model_dir).eval(), load_tokenizer(micro_model_dir)
    return model, tok.mask_token_id, tok.eos_token_id


def run(model_and_ids, prompt, mask=None, seed=None, eos=True, **config):
    model, mask_id, eos_id = model_and_ids
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return generate_text(model, prompt, mask, mask_token_id=mask_id, eos_token_id=eos_id if eos else None,
                         config=SamplerConfig(**config), generator=generator)


PROMPTS = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])


def test_schedule_golden_values():
    assert num_transfer_tokens(torch.tensor([10, 3, 0]), 4).tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0]]


def test_no_mask_left_and_exact_commits_per_step(model_and_ids):
    out = run(model_and_ids, PROMPTS, gen_length=16, block_length=8, steps=6, temperature=1.0, seed=0, eos=False)
    assert not (out.completion_ids == model_and_ids[1]).any()
    assert torch.equal(out.sequences[:, :5], PROMPTS)
    # 8 tokens per block over 3 steps → 3, 3, 2 per step; steps 0-2 in block 0, 3-5 in block 1
    for row in out.commit_step:
        counts = torch.bincount(row, minlength=6).tolist()
        assert counts == [3, 3, 2, 3, 3, 2]
        assert (row[:8] < 3).all() and (row[8:] >= 3).all()  # nothing beyond the current block early


def test_temperature_zero_equals_a_hand_run_argmax_loop(model_and_ids):
    model, mask_id, _ = model_and_ids
    out = run(model_and_ids, PROMPTS, eos=False, gen_length=8, block_length=4, steps=4, temperature=0.0)
    again = run(model_and_ids, PROMPTS, eos=False, gen_length=8, block_length=4, steps=4, temperature=0.0)
    assert torch.equal(out.sequences, again.sequences)
    # plain reference: per row, per step, commit the 2 most probable masked positions of the block
    for b in range(2):
        x = torch.cat([PROMPTS[b], torch.full((8,), mask_id)])[None]
        for block in range(2):
            lo, hi = 5 + 4 * block, 9 + 4 * block
            for _ in range(2):
                with torch.no_grad():
                    probs = torch.softmax(model(x).logits[0], -1)
                conf, pred = probs.max(-1)
                candidates = [(conf[p].item(), -p, p) for p in range(lo, hi) if x[0, p] == mask_id]
                for _, _, p in sorted(candidates, reverse=True)[:2]:
                    x[0, p] = pred[p]
        assert torch.equal(x[0], out.sequences[b])


def test_cfg_scale_zero_equals_no_cfg_and_cfg_changes_output(model_and_ids):
    base = run(model_and_ids, PROMPTS, gen_length=8, block_length=8, steps=8, temperature=0.0, cfg_scale=0.0)
    assert torch.equal(base.sequences, run(model_and_ids, PROMPTS, gen_length=8, block_length=8, steps=8).sequences)
    guided = run(model_and_ids, PROMPTS, gen_length=8, block_length=8, steps=8, cfg_scale=3.0)
    assert not torch.equal(base.sequences, guided.sequences)


def test_batched_equals_per_prompt_with_padding(model_and_ids):
    eos_pad = model_and_ids[2]
    short, long_ = torch.tensor([40, 41]), torch.tensor([50, 51, 52, 53, 54])
    batch = torch.stack([torch.cat([torch.full((3,), eos_pad), short]), long_])
    mask = torch.tensor([[0, 0, 0, 1, 1], [1, 1, 1, 1, 1]])
    together = run(model_and_ids, batch, mask, gen_length=8, block_length=4, steps=4)
    # the padded prompt alone, with the same padding (positions are absolute, so the pads are kept)
    alone_short = run(model_and_ids, batch[:1], mask[:1], gen_length=8, block_length=4, steps=4)
    alone_long = run(model_and_ids, batch[1:], None, gen_length=8, block_length=4, steps=4)
    assert torch.equal(together.sequences[0], alone_short.sequences[0])
    assert torch.equal(together.sequences[1], alone_long.sequences[0])
    # and pad token values are invisible: other pad ids give the same answer
    other = batch.clone()
    other[0, :3] = 77
    assert torch.equal(run(model_and_ids, other, mask, gen_length=8, block_length=4, steps=4).completion_ids,
                       together.completion_ids)


def test_seeded_sampling_reproduces_and_seeds_differ(model_and_ids):
    kwargs = dict(gen_length=16, block_length=8, steps=8, temperature=1.0)
    a = run(model_and_ids, PROMPTS, seed=1, **kwargs)
    assert torch.equal(a.sequences, run(model_and_ids, PROMPTS, seed=1, **kwargs).sequences)
    assert not torch.equal(a.sequences, run(model_and_ids, PROMPTS, seed=2, **kwargs).sequences)


def test_random_remasking_commits_on_schedule(model_and_ids):
    out = run(model_and_ids, PROMPTS, gen_length=8, block_length=8, steps=4, remasking="random", seed=0, eos=False)
    for row in out.commit_step:
        assert torch.bincount(row, minlength=4).tolist() == [2, 2, 2, 2]


def test_everything_after_first_eos_is_eos(model_and_ids):
    model, mask_id, eos = model_and_ids

    class EosAtThird(torch.nn.Module):
        """Predicts token 60 everywhere except EOS at answer position 2."""

        def forward(self, input_ids, attention_mask=None):
            logits = torch.zeros(*input_ids.shape, 100)
            logits[..., 60] = 1.0
            logits[:, -6, :] = 0.0
            logits[:, -6, eos] = 5.0
            return type("Out", (), {"logits": logits})()

    out = generate_text(EosAtThird(), PROMPTS, mask_token_id=mask_id, eos_token_id=eos,
                        config=SamplerConfig(gen_length=8, block_length=8, steps=8))
    assert out.completion_ids.tolist() == [[60, 60, eos, eos, eos, eos, eos, eos]] * 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(gen_length=10, block_length=4), "gen_length=10"),
        (dict(gen_length=8, block_length=4, steps=3), "steps=3"),
        (dict(remasking="top_p"), "remasking='top_p'"),
        (dict(temperature=-1.0), "temperature=-1.0"),
        (dict(gen_length=0), "gen_length=0"),
    ],
)
def test_bad_config_names_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**kwargs)


def test_sampler_registry():
    assert get_sampler("text") is generate_text
    with pytest.raises(ValueError, match="text"):
        get_sampler("image")
