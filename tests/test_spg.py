"""SPG (arXiv 2510.09541): block-wise masks, the ELBO / EUBO sandwich, the sign-chosen objective, and a short run."""

import math

import pytest
import torch

from unigrpo import UniGRPOConfig
from unigrpo.estimator_spg import SPGEstimator, block_masks, sandwiched_logp, spg_elbo, spg_eubo
from unigrpo.likelihood import ESTIMATORS, answer_token_logps, assemble_view, get_estimator

# Hand case: K = 2 masks, N = 2 answers, L = 3 tokens, n = 3 answer tokens each.
PROBS = torch.tensor([[[0.5, 0.2, 0.8], [0.9, 0.6, 0.3]],   # mask k = 0: answers 0, 1
                      [[0.4, 0.1, 0.7], [0.5, 0.5, 0.5]]])  # mask k = 1
MASKS = torch.tensor([[[0, 1, 1], [1, 1, 1]],
                      [[0, 0, 1], [1, 0, 0]]]).bool()
RATIOS = torch.tensor([[2 / 3, 1.0], [1 / 3, 1 / 3]])  # t_k = |M_k| / 3
L = math.log


def test_elbo_matches_the_hand_computation():
    # answer 0: mask 0 scores tokens 1, 2; mask 1 token 2 → ((log .2 + log .8)/2 + log .7)/2
    # answer 1: mask 0 scores all three; mask 1 token 0 → ((log .9 + log .6 + log .3)/3 + log .5)/2
    expected = [((L(.2) + L(.8)) / 2 + L(.7)) / 2, ((L(.9) + L(.6) + L(.3)) / 3 + L(.5)) / 2]
    assert torch.allclose(spg_elbo(PROBS.log(), MASKS), torch.tensor(expected), atol=1e-6)


def test_eubo_matches_the_hand_computation():
    # β = 2. Answer 0, tokens covered {1, 2}:
    #   token 1: ½·(0.2²/(2/3)) = 0.03 ; token 2: ½·(0.8²/(2/3) + 0.7²/(1/3)) = ½·(0.96 + 1.47) = 1.215
    # Answer 1, tokens {0, 1, 2}: ½·(0.81/1 + 0.25/(1/3)) = 0.78 ; ½·0.36 = 0.18 ; ½·0.09 = 0.045
    expected = [(L(0.03) + L(1.215)) / 2 / 2, (L(0.78) + L(0.18) + L(0.045)) / 3 / 2]
    assert torch.allclose(spg_eubo(PROBS.log(), MASKS, RATIOS, beta=2.0), torch.tensor(expected), atol=1e-6)


def test_the_bound_is_chosen_by_the_sign_of_the_advantage():
    lower, upper = torch.tensor([-1.0, -2.0, -3.0]), torch.tensor([-0.5, -1.0, -2.0])
    A = torch.tensor([0.7, -0.4, 0.0])  # A = 0 takes the negative side, as in the published code
    assert torch.allclose(sandwiched_logp(lower, upper, A, "mix", 0.25), torch.tensor([-1.0, -1.75, -2.75]))
    assert torch.allclose(sandwiched_logp(lower, upper, A, "eubo", 0.25), torch.tensor([-1.0, -1.0, -2.0]))
    assert torch.allclose(sandwiched_logp(lower, upper, A, "elbo", 0.25), lower)


def test_policy_loss_is_minus_advantage_times_the_chosen_bound():
    estimator = SPGEstimator(block_length=3, spg_num_masks=2, spg_eubo_beta=2.0, spg_mix_weight=0.5)
    answers = torch.tensor([[1, 2, 3], [4, 5, 6]])
    view = assemble_view(torch.zeros(2, 2, dtype=torch.long), None, answers.repeat(2, 1), MASKS.reshape(4, 3),
                         RATIOS.reshape(4), torch.arange(2).repeat(2))
    logps = (PROBS.log() * MASKS).reshape(4, 3)  # what answer_token_logps returns: 0 where not scored
    advantages = torch.tensor([9.0, 9.0, 1.5, -0.5])  # the micro-batch's; this task's answers are 2 and 3
    loss, index = estimator.policy_loss(logps, view, advantages, view.answer_index + 2, group_size=2)
    elbo = spg_elbo(PROBS.log(), MASKS)
    eubo = spg_eubo(PROBS.log(), MASKS, RATIOS, 2.0)
    assert index.tolist() == [2, 3]
    assert torch.allclose(loss, torch.stack([-1.5 * elbo[0], 0.5 * (0.5 * eubo[1] + 0.5 * elbo[1])]))


@pytest.mark.parametrize("seed", range(5))
def test_upper_is_at_least_lower_with_one_mask_or_agreeing_masks(seed):
    generator = torch.Generator().manual_seed(seed)
    eligible = torch.arange(12)[None] < torch.randint(1, 13, (16, 1), generator=generator)  # prefixes, n ≥ 1
    logps = torch.log_softmax(3 * torch.randn(3, 16, 12, 50, generator=generator), -1)[..., 0]  # (K, N, L)
    one = block_masks(eligible, 4, generator)[None] & eligible  # K = 1
    same = one.expand(3, -1, -1)  # K = 3 masks that agree, different log-probs
    for masks, token_logps in ((one, logps[:1]), (same, logps)):
        ratios = masks.sum(-1).float() / eligible.sum(-1).float()
        for beta in (1.0, 1.5, 3.0):
            upper = spg_eubo(token_logps, masks, ratios, beta)
            assert (upper >= spg_elbo(token_logps, masks) - 1e-5).all()


def test_block_masks_keep_earlier_blocks_clean_and_mask_everything_after_the_block():
    B, eligible = 4, torch.tensor([[1] * 7 + [0] * 5, [1] * 12, [1] + [0] * 11]).bool()
    chosen = torch.zeros(3, 3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        mask = block_masks(eligible, B, generator)
        for i in range(3):
            n = int(eligible[i].sum())
            b = int(mask[i].nonzero()[0]) // B  # the block holding the first masked position
            end = min(b * B + B, n)  # its answer tokens are b·B .. end − 1
            assert b * B < n and mask[i, end:].all() and not mask[i, : b * B].any()
            chosen[i, b] += 1
    assert (chosen[0, :2] > 100).all() and (chosen[1] > 70).all() and chosen[2, 0] == 300  # every block drawn


def test_the_view_never_masks_the_prompt_and_scores_answer_tokens_only():
    prompt, prompt_mask = torch.tensor([[5, 5, 10, 11], [20, 21, 22, 23]]), torch.tensor([[0, 0, 1, 1], [1] * 4])
    answers = torch.tensor([[30, 31, 32, 33, 2, 2, 2, 2], [40, 41, 42, 43, 44, 45, 46, 2]])
    eligible = torch.tensor([[1] * 5 + [0] * 3, [1] * 8]).bool()
    estimator = get_estimator("spg", block_length=4, spg_num_masks=3, spg_eubo_beta=1.5, spg_mix_weight=0.5,
                              spg_negative_bound="mix")
    for seed in range(30):
        v = estimator.noise(prompt, prompt_mask, answers, eligible, torch.full((2,), 0.5), 99,
                            torch.Generator().manual_seed(seed), suffix_ids=torch.tensor([[7], [7]]))
        assert v.input_ids.shape == (6, 13) and v.answer_index.tolist() == [0, 1] * 3
        assert torch.equal(v.input_ids[:, :4], prompt.repeat(3, 1)) and (v.input_ids[:, -1] == 7).all()
        masked = v.input_ids[:, 4:12] == 99
        assert torch.equal(v.score_mask, masked & eligible.repeat(3, 1)) and v.score_mask.any(1).all()
        assert torch.allclose(v.mask_ratio, v.score_mask.sum(1) / eligible.repeat(3, 1).sum(1))


def test_registered_with_its_options_and_checked_by_the_config(tmp_path):
    assert "spg" in ESTIMATORS
    common = dict(output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=8, num_generations=4,
                  likelihood_estimator="spg")
    with pytest.raises(ValueError, match="spg_negative_bound='upper'"):
        UniGRPOConfig(**common, spg_negative_bound="upper")
    with pytest.raises(ValueError, match="spg_mix_weight=1.5"):
        UniGRPOConfig(**common, spg_mix_weight=1.5)
    with pytest.raises(ValueError, match="set beta: 0 and loss_type: grpo"):
        UniGRPOConfig(**common, beta=0.04)


def test_no_ratio_and_the_trainer_loss_is_the_sandwiched_objective(micro_model_dir, tmp_path):
    from test_trainer import first_rows, make_trainer

    trainer = make_trainer(micro_model_dir, tmp_path, likelihood_estimator="spg", num_iterations=2, spg_num_masks=2)
    rollouts = trainer.make_rollouts(first_rows(trainer))
    (task,) = rollouts.tasks
    assert task.old_logps == [None, None] and trainer.forward_counts["old"] == 0  # −A·ŝ has no ratio to θ_old
    loss = trainer.compute_loss(trainer.model, rollouts.inputs_for_step(0))
    view = task.views[0]
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, view, task.completion_ids)  # (2N, L)
    lower, upper = trainer.estimator.bounds(logps, view)
    A = rollouts.advantages
    expected = (-A * torch.where(A > 0, lower, 0.5 * upper + 0.5 * lower)).mean()
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
