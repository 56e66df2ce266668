import pytest
import torch

from unigrpo.likelihood import UniGRPOEstimator
from unigrpo.masking import (
    clip_ratios,
    draw_spaced_ratios,
    draw_uniform_ratios,
    get_mask_schedule,
    loss_eligible_positions,
    mask_answer_tokens,
    spaced_mask_ratios,
)


def test_spaced_schedule_follows_algorithm_1():
    # t_1 = 250, μ = 3, T = 1000: t_n = floor((n-1)/(μ-1)·(T − t_1) + t_1) = 250, 625, 1000.
    ratios = spaced_mask_ratios(torch.tensor([250, 999, 0]), num_iterations=3, num_levels=1000)
    assert ratios.shape == (3, 3)
    assert torch.allclose(ratios[:, 0], torch.tensor([0.25, 0.625, 1.0]))
    assert torch.allclose(ratios[:, 1], torch.tensor([0.999, 0.999, 1.0]))  # floor(0.5·1 + 999) = 999
    assert torch.allclose(ratios[:, 2], torch.tensor([0.0, 0.5, 1.0]))
    # μ = 4, t_1 = 100: 100, floor(400) = 400, 700, 1000
    assert torch.allclose(spaced_mask_ratios(torch.tensor([100]), 4, 1000)[:, 0], torch.tensor([0.1, 0.4, 0.7, 1.0]))
    # μ = 1: only t_1
    assert torch.allclose(spaced_mask_ratios(torch.tensor([300]), 1, 1000), torch.tensor([[0.3]]))


def test_spaced_draw_is_seeded_monotone_and_clipped():
    g = torch.Generator().manual_seed(0)
    ratios = draw_spaced_ratios(64, 4, 1000, g)
    assert (ratios[1:] >= ratios[:-1]).all() and torch.allclose(ratios[-1], torch.ones(64))
    again = draw_spaced_ratios(64, 4, 1000, torch.Generator().manual_seed(0))
    assert torch.equal(ratios, again)
    clipped = draw_spaced_ratios(64, 4, 1000, torch.Generator().manual_seed(0), 0.2, 0.9)
    assert clipped.min() >= 0.2 and clipped.max() <= 0.9
    assert torch.equal(clipped, clip_ratios(ratios, 0.2, 0.9))


def test_uniform_schedule_bounds():
    ratios = draw_uniform_ratios(1000, 3, 1000, torch.Generator().manual_seed(1), 0.3, 0.6)
    assert ratios.shape == (3, 1000) and ratios.min() >= 0.3 and ratios.max() <= 0.6
    with pytest.raises(ValueError, match="valid"):
        get_mask_schedule("cosine")


def test_mask_at_least_one_eligible_and_ratio_respected():
    g = torch.Generator().manual_seed(0)
    eligible = torch.ones(2000, 16, dtype=torch.bool)
    eligible[:, 10:] = False
    mask = mask_answer_tokens(eligible, torch.zeros(2000), g)  # ratio 0 still masks one eligible token
    assert ((mask & eligible).sum(1) == 1).all() and not (mask & ~eligible).any()
    mask = mask_answer_tokens(eligible, torch.full((2000,), 0.3), g)
    assert abs(mask.float().mean().item() - 0.3) < 0.01
    assert (mask & eligible).any(dim=1).all()
    full = mask_answer_tokens(eligible, torch.ones(2000), g)
    assert full.all()


def test_prompt_never_masked_and_same_view_for_all_models():
    prompt = torch.tensor([[5, 6, 7, 8], [0, 0, 7, 8]])
    prompt_mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    completion = torch.tensor([[9, 10, 11, 1], [12, 1, 1, 1]])
    eligible = loss_eligible_positions(completion, eos_token_id=1, eos_in_loss=1)
    assert eligible.tolist() == [[True, True, True, True], [True, True, False, False]]
    view = UniGRPOEstimator().noise(prompt, prompt_mask, completion, eligible, torch.ones(2), 99,
                                    torch.Generator().manual_seed(0))
    assert torch.equal(view.input_ids[:, :4], prompt)  # prompt untouched even at ratio 1
    assert (view.input_ids[:, 4:] == 99).all()
    assert torch.equal(view.score_mask, eligible)
    assert view.attention_mask[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]


def test_eos_in_loss_counts():
    completion = torch.tensor([[3, 1, 1, 1, 1]])
    assert loss_eligible_positions(completion, 1, 0).tolist() == [[True, False, False, False, False]]
    assert loss_eligible_positions(completion, 1, 2).tolist() == [[True, True, True, False, False]]
