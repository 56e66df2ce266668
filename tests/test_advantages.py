import torch

from unigrpo.advantages import group_advantages


def test_group_advantages_golden_values():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv, zero_std = group_advantages(rewards, num_generations=4, scale_rewards="group", eps=0.0)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(adv[:4], (torch.tensor([1.0, 0.0, 0.0, 1.0]) - 0.5) / std)
    assert zero_std.tolist() == [False, True]


def test_all_equal_group_gives_exact_zero_and_no_nan():
    rewards = torch.full((8,), 2.5)
    for scale in ("group", "batch", "none"):
        adv, zero_std = group_advantages(rewards, 4, scale, eps=0.0)
        assert torch.equal(adv, torch.zeros(8))
        assert zero_std.all()


def test_batch_and_none_scaling():
    rewards = torch.tensor([0.0, 2.0, 1.0, 5.0])
    adv_none, _ = group_advantages(rewards, 2, "none")
    assert torch.allclose(adv_none, torch.tensor([-1.0, 1.0, -2.0, 2.0]))
    adv_batch, _ = group_advantages(rewards, 2, "batch", eps=0.0)
    assert torch.allclose(adv_batch, adv_none / rewards.std())


def test_groups_must_divide():
    import pytest

    with pytest.raises(ValueError, match="num_generations=3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale_rewards"):
        group_advantages(torch.zeros(4), 2, "nope")
