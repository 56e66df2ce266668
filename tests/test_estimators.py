"""The likelihood estimators behind one interface (issue #9): unigrpo, d1, coupled."""

from types import SimpleNamespace

import pytest
import torch

from unigrpo import UniGRPOConfig
from unigrpo.likelihood import (ESTIMATORS, assemble_view, estimator_options, get_estimator, masked_token_logps,
                                sequence_logp)

MASK = 99
PROMPT = torch.tensor([[5, 5, 10, 11, 12, 13], [20, 21, 22, 23, 24, 25]])  # row 0 left-padded with 5
PROMPT_MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
ANSWER = torch.tensor([[30, 31, 32, 2, 2, 2], [40, 41, 42, 43, 44, 2]])
ELIGIBLE = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]).bool()
SUFFIX = torch.tensor([[7], [7]])


def view(name, ratio=0.5, seed=0, **options):
    return get_estimator(name, **options).noise(PROMPT, PROMPT_MASK, ANSWER, ELIGIBLE, torch.full((2,), ratio), MASK,
                                                torch.Generator().manual_seed(seed), suffix_ids=SUFFIX)


def test_registry_and_options():
    assert {"coupled", "d1", "unigrpo", "wd1", "spg"} <= set(ESTIMATORS)  # every algorithm, by name
    assert get_estimator("d1", p_mask_prompt=0.3).p_mask_prompt == 0.3
    with pytest.raises(ValueError, match="unknown likelihood_estimator 'diffu'"):
        get_estimator("diffu")
    with pytest.raises(ValueError, match="p_mask_prompt=1.0"):
        get_estimator("d1", p_mask_prompt=1.0)


def test_an_option_the_estimator_does_not_take_is_an_error_not_ignored():
    with pytest.raises(ValueError, match=r"likelihood_estimator 'd1' takes no option 'unused'; its options: "
                                         r"p_mask_prompt"):
        get_estimator("d1", p_mask_prompt=0.3, unused=1)
    with pytest.raises(ValueError, match=r"'unigrpo' takes no option 'p_mask_prompt'; its options: none"):
        get_estimator("unigrpo", p_mask_prompt=0.15)


def test_the_trainer_passes_each_estimator_only_the_options_it_declares():
    config = SimpleNamespace(p_mask_prompt=0.25, epsilon=0.2)
    assert estimator_options("unigrpo", config) == {} and estimator_options("coupled", config) == {}
    assert estimator_options("d1", config) == {"p_mask_prompt": 0.25}
    for name in ESTIMATORS:  # every declared option is a config field, so the trainer can always build it
        get_estimator(name, **estimator_options(name, UniGRPOConfig(output_dir="unused", report_to="none")))


def test_assemble_view_lays_out_prompt_answer_and_suffix_for_each_row():
    answers = torch.tensor([[1, 2], [3, 4], [5, 6]])  # rows scoring answers 1, 0, 1
    index = torch.tensor([1, 0, 1])
    suffix = torch.tensor([[7], [8]])  # answer 0's, answer 1's
    v = assemble_view(PROMPT, PROMPT_MASK, answers, answers > 2, torch.tensor([0.1, 0.2, 0.3]), index, suffix)
    assert v.input_ids.tolist() == [[20, 21, 22, 23, 24, 25, 1, 2, 8], [5, 5, 10, 11, 12, 13, 3, 4, 7],
                                    [20, 21, 22, 23, 24, 25, 5, 6, 8]]
    assert v.attention_mask.tolist() == [[1] * 9, [0, 0] + [1] * 7, [1] * 9]  # row 1 is answer 0's padded prompt
    assert torch.equal(v.answer_index, index) and v.suffix_length == 1
    unpadded = assemble_view(PROMPT[1:], PROMPT_MASK[1:], answers[:1], answers[:1] > 0, torch.ones(1))
    assert unpadded.attention_mask is None and unpadded.suffix_length == 0  # no padding: no attention mask
    assert unpadded.input_ids.tolist() == [[20, 21, 22, 23, 24, 25, 1, 2]] and unpadded.answer_index.tolist() == [0]


@pytest.mark.parametrize("name", ["unigrpo", "coupled"])
def test_prompt_and_suffix_are_never_masked(name):
    for seed in range(20):
        v = view(name, ratio=0.9, seed=seed)
        rows = v.input_ids.shape[0]
        assert torch.equal(v.input_ids[:, :6], PROMPT.repeat(rows // 2, 1))
        assert (v.input_ids[:, -1] == 7).all() and v.suffix_length == 1


def test_d1_masks_the_whole_answer_and_some_real_prompt_tokens_never_padding():
    masked_prompt = torch.zeros(2, 6)
    for seed in range(200):
        v = view("d1", seed=seed, p_mask_prompt=0.15)
        assert (v.input_ids[:, 6:12] == MASK).all() and (v.input_ids[:, -1] == 7).all()
        assert torch.equal(v.score_mask, ELIGIBLE) and torch.equal(v.answer_index, torch.arange(2))
        masked_prompt += (v.input_ids[:, :6] == MASK).float()
    assert (masked_prompt[0, :2] == 0).all()  # padding is never masked
    rate = masked_prompt[PROMPT_MASK.bool()].sum() / (200 * PROMPT_MASK.sum())
    assert 0.11 < rate < 0.19  # ≈ p_mask_prompt
    assert (view("d1", p_mask_prompt=0.0).input_ids[:, :6] == PROMPT).all()


def test_coupled_masks_are_complementary_and_score_every_eligible_token_once():
    for seed in range(20):
        v = view("coupled", ratio=0.3, seed=seed)
        first, second = (v.input_ids[:, 6:12] == MASK).chunk(2)
        assert torch.equal(first, ~second)  # complementary
        assert torch.equal(v.answer_index, torch.tensor([0, 1, 0, 1]))
        scored = v.score_mask[:2].long() + v.score_mask[2:].long()
        assert torch.equal(scored, ELIGIBLE.long())  # each eligible token exactly once per pair
        assert torch.allclose(v.mask_ratio, torch.tensor([0.3, 0.3, 0.7, 0.7]))


def test_coupled_pair_sums_to_the_full_answer_log_likelihood_of_its_rows():
    # with fixed token log-probs, the pair's summed score is the sum over all eligible tokens, whatever the mask,
    # and each row's mean (MMaDA Eq. 4) is finite
    assert torch.isfinite(sequence_logp(-torch.rand(4, 6), view("coupled").score_mask)).all()
    token_logps = -torch.rand(2, 6)
    v = view("coupled", seed=3)
    rows = token_logps[v.answer_index]
    total = torch.zeros(2).index_add(0, v.answer_index, (rows * v.score_mask).sum(-1))
    assert torch.allclose(total, (token_logps * ELIGIBLE).sum(1))


def test_token_logps_at_the_scored_positions_only_match_the_full_computation():
    """The update computes log-softmax only where score_mask is set (the 126k-word fp32 logits are the largest
    tensor of the update): same values and gradients there, bit for bit, and 0 (no gradient) elsewhere."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=generator).to(torch.bfloat16).requires_grad_()  # (R, L, V)
    targets = torch.randint(0, 11, (3, 5), generator=generator)
    score_mask = torch.tensor([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]]).bool()  # row 1 scores nothing
    full = masked_token_logps(logits, targets)
    (full_grad,) = torch.autograd.grad((full * score_mask).sum(), logits)
    scored = masked_token_logps(logits, targets, score_mask)
    (scored_grad,) = torch.autograd.grad((scored * score_mask).sum(), logits)
    assert scored.dtype == torch.float32 and scored.shape == (3, 5)
    assert torch.equal(scored[score_mask], full[score_mask].detach())
    assert torch.equal(scored[~score_mask], torch.zeros(int((~score_mask).sum())))
    assert torch.equal(scored_grad, full_grad) and not scored_grad[~score_mask].any()


@pytest.mark.parametrize("name", ["d1", "coupled"])
def test_training_runs_with_each_estimator(micro_model_dir, tmp_path, name):
    from test_trainer import make_trainer

    trainer = make_trainer(micro_model_dir, tmp_path, likelihood_estimator=name, max_steps=4, num_iterations=2)
    trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    rows_per_answer = 2 if name == "coupled" else 1
    assert trainer.forward_counts["policy"] == 4 * 16 * rows_per_answer  # 4 inner steps × 16 answers × rows


SHORT_RUN_OPTIONS = {"trajectory": {"trajectory_shrink": 2}}
"""name → options for the short run (trajectory's default shrink gives one view per answer on 4-token answers)."""


@pytest.mark.parametrize("name", [name for name in ESTIMATORS if name != "unigrpo"])  # unigrpo: test_trainer.py
def test_short_run_with_each_algorithm_raises_a_trivially_learnable_reward(micro_model_dir, tmp_path, name):
    from test_trainer import make_trainer

    trainer = make_trainer(micro_model_dir, tmp_path, likelihood_estimator=name, max_steps=40, learning_rate=1e-2,
                           num_iterations=1, **SHORT_RUN_OPTIONS.get(name, {}))
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    assert len(rewards) == 40
    assert sum(rewards[-8:]) / 8 > sum(rewards[:8]) / 8 + 0.15, rewards
