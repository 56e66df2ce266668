"""wd1 (arXiv 2507.08838): group softmax weights, the ratio-free weighted likelihood, and a short run that learns."""

import math

import pytest
import torch

from unigrpo import UniGRPOConfig
from unigrpo.estimator_wd1 import WD1Estimator, wd1_answer_loss, wd1_weights
from unigrpo.likelihood import ESTIMATORS, answer_token_logps, get_estimator


def test_weights_match_a_hand_computed_group_softmax():
    # group 1: A = (1, 0, −1), ψ = 1; S = e + 1 + 1/e; w⁺ = (e, 1, 1/e)/S, w⁻ = (1/e, 1, e)/S
    e = math.e
    S = e + 1 + 1 / e
    expected = [(e - 1 / e) / S, 0.0, -(e - 1 / e) / S]  # ≈ (0.575210, 0, −0.575210)
    # group 2: all answers scored the same: every weight 0 (as GRPO's advantages would be)
    weights = wd1_weights(torch.tensor([1.0, 0.0, -1.0, 2.0, 2.0, 2.0]), group_size=3)
    assert torch.allclose(weights, torch.tensor(expected + [0.0, 0.0, 0.0]), atol=1e-6)
    assert weights[0].item() == pytest.approx(0.575210, abs=1e-6)
    # ψ sharpens: with ψ = 2, w⁺ − w⁻ of the best answer is (e² − e⁻²)/(e² + 1 + e⁻²)
    sharp = wd1_weights(torch.tensor([1.0, 0.0, -1.0]), group_size=3, psi=2.0)
    assert sharp[0].item() == pytest.approx((e**2 - e**-2) / (e**2 + 1 + e**-2), abs=1e-6)


def test_answer_loss_is_the_weighted_sum_of_token_log_probs():
    logps = torch.log(torch.tensor([[0.5, 0.25], [0.9, 0.3], [0.1, 0.2]]))
    mask = torch.tensor([[True, True], [True, False], [True, True]])
    w = torch.tensor([0.575210, 0.0, -0.575210])
    # −0.575210·(log 0.5 + log 0.25) = 1.196116 ; 0 ; 0.575210·(log 0.1 + log 0.2) = −2.250236
    loss = wd1_answer_loss(logps, mask, w)
    assert torch.allclose(loss, torch.tensor([1.196116, 0.0, -2.250236]), atol=1e-5)


def test_registered_with_its_options_and_checked_by_the_config(tmp_path):
    assert "wd1" in ESTIMATORS
    estimator = get_estimator("wd1", p_mask_prompt=0.2, wd1_psi=0.5)
    assert isinstance(estimator, WD1Estimator) and estimator.psi == 0.5 and not estimator.uses_ratio
    with pytest.raises(ValueError, match="wd1_psi=0"):
        get_estimator("wd1", wd1_psi=0.0)
    common = dict(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=8, num_generations=4,
                  likelihood_estimator="wd1")
    with pytest.raises(ValueError, match="set beta: 0 and loss_type: grpo"):
        UniGRPOConfig(**common, beta=0.04)
    with pytest.raises(ValueError, match="set beta: 0 and loss_type: grpo"):
        UniGRPOConfig(**common, loss_type="dapo")


def test_no_old_log_probs_are_computed_and_the_loss_is_the_weighted_likelihood(micro_model_dir, tmp_path):
    from test_trainer import first_rows, make_trainer

    trainer = make_trainer(micro_model_dir, tmp_path, likelihood_estimator="wd1", num_iterations=2)
    rollouts = trainer.make_rollouts(first_rows(trainer))
    (task,) = rollouts.tasks
    assert task.old_logps == [None, None] and trainer.forward_counts["old"] == 0  # ratio-free: no θ_old pass
    inputs = rollouts.inputs_for_step(1)
    loss = trainer.compute_loss(trainer.model, inputs)
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, task.views[1], task.completion_ids)  # (N, L): d1's view
    weights = wd1_weights(rollouts.advantages, 4)
    expected = (-weights * (logps * task.views[1].score_mask).sum(-1)).mean()  # grpo: mean over answers
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
    assert (task.views[1].input_ids[:, -4:] == trainer.mask_token_id).all()  # the whole answer masked (d1)
