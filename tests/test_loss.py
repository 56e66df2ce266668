import math

import pytest
import torch

from unigrpo.loss import LOSS_TYPES, clipped_surrogate, get_loss_normaliser, k3_kl, per_token_loss


def test_clipped_surrogate_matches_hand_computation():
    logps = torch.tensor([[math.log(0.5), math.log(0.9)], [math.log(0.2), math.log(0.3)]])
    old = torch.tensor([[math.log(0.25), math.log(0.9)], [math.log(0.4), math.log(0.3)]])
    adv = torch.tensor([[1.0], [-2.0]])
    loss, clipped = clipped_surrogate(logps, old, adv, 0.2, 0.28)
    # row 0: ρ = 2 → clip 1.28, A = 1: -min(2, 1.28) = -1.28 ; ρ = 1: -1
    # row 1: ρ = 0.5 → clip 0.8, A = -2: -min(-1, -1.6) = 1.6 ; ρ = 1: 2
    assert torch.allclose(loss, torch.tensor([[-1.28, -1.0], [1.6, 2.0]]))
    assert clipped.tolist() == [[True, False], [True, False]]


def test_k3_kl_values():
    ref = torch.tensor([math.log(0.5), math.log(0.2)])
    cur = torch.tensor([math.log(0.25), math.log(0.2)])
    # exp(log 2) - log 2 - 1
    assert torch.allclose(k3_kl(ref, cur), torch.tensor([1 - math.log(2.0), 0.0]))
    assert (k3_kl(torch.randn(100), torch.randn(100)) >= 0).all()


def test_ratio_one_and_kl_zero_before_update():
    logps = torch.randn(3, 5)
    adv = torch.tensor([[1.0], [-1.0], [0.5]])
    loss, kl, clipped = per_token_loss(logps, logps.clone(), logps.clone(), adv, 0.2, 0.2, beta=0.1)
    assert torch.equal(kl, torch.zeros(3, 5))
    assert torch.allclose(loss, -adv.expand(3, 5))
    assert not clipped.any()


def test_normalisations():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    idx = torch.arange(2)
    assert get_loss_normaliser("grpo")(values, mask, idx, 2, 3).item() == pytest.approx((2.0 + 4.0) / 2)
    assert get_loss_normaliser("bnpo")(values, mask, idx, 2, 3).item() == pytest.approx(10.0 / 4)
    assert get_loss_normaliser("dr_grpo")(values, mask, idx, 2, 3).item() == pytest.approx(10.0 / 6)
    assert get_loss_normaliser("dapo")(values, mask, idx, 2, 3, global_tokens=8).item() == pytest.approx(10.0 / 8)
    # several rows of one answer (an estimator with two views per answer) pool into that answer
    two_rows = get_loss_normaliser("grpo")(values, mask, torch.tensor([0, 0]), 1, 3)
    assert two_rows.item() == pytest.approx(10.0 / 4)
    assert sorted(LOSS_TYPES) == ["bnpo", "dapo", "dr_grpo", "grpo"]
    with pytest.raises(ValueError, match="valid"):
        get_loss_normaliser("ppo")
