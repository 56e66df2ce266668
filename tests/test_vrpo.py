"""The VRPO-style estimator (LLaDA 1.5's variance reduction on UniGRPO's estimate): stratified ratios, the view,
K = 1 being UniGRPO, lower variance than one mask, the memory plan's rows, and a short run that learns."""

import pytest
import torch

from unigrpo.estimator_vrpo import VRPOEstimator, stratified_ratios
from unigrpo.likelihood import ESTIMATORS, get_estimator

PROMPT = torch.tensor([[0, 0, 20, 21, 22, 23], [30, 31, 32, 33, 34, 35]])
PROMPT_MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
ANSWER = torch.tensor([[1, 2, 3, 4, 9, 9], [5, 6, 7, 8, 3, 9]])
ELIGIBLE = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]).bool()
SUFFIX = torch.tensor([[7], [7]])
MASK = 99


def view(ratio, seed=0, **options):
    return get_estimator("vrpo", **options).noise(PROMPT, PROMPT_MASK, ANSWER, ELIGIBLE, ratio, MASK,
                                                  torch.Generator().manual_seed(seed), suffix_ids=SUFFIX)


def test_ratios_rotate_the_step_ratio_by_k_over_K():
    # p = 0.3, 0.95, 0.5 with K = 3: t_k = frac(p + k/3), written out by hand; rows k·N + i
    got = stratified_ratios(torch.tensor([0.3, 0.95, 0.5]), 3)
    expected = [0.3, 0.95, 0.5, 0.3 + 1 / 3, 0.95 + 1 / 3 - 1, 0.5 + 1 / 3, 0.3 + 2 / 3, 0.95 + 2 / 3 - 1, 0.5 + 2 / 3 - 1]
    assert torch.allclose(got, torch.tensor(expected), atol=1e-6)
    assert stratified_ratios(torch.tensor([0.5]), 2).tolist() == [0.5, 1.0]  # frac(1) = 0 is read as the full mask
    assert stratified_ratios(torch.tensor([1.0]), 1).tolist() == [1.0]  # Algorithm 1's last step stays full
    for p in torch.rand(20).tolist():  # exactly one ratio in each interval of width 1/K
        bins = sorted(((stratified_ratios(torch.tensor([p]), 4) * 4).ceil().long() - 1).tolist())
        assert bins == [0, 1, 2, 3]


def test_view_rows_prompt_and_suffix_untouched_and_scored_where_masked():
    for seed in range(10):
        v = view(torch.tensor([0.2, 0.7]), seed=seed, vrpo_num_masks=3)
        assert v.input_ids.shape == (6, 13) and v.answer_index.tolist() == [0, 1, 0, 1, 0, 1]
        assert torch.equal(v.input_ids[:, :6], PROMPT.repeat(3, 1)) and (v.input_ids[:, -1] == 7).all()
        masked = v.input_ids[:, 6:12] == MASK
        assert torch.equal(v.score_mask, masked & ELIGIBLE.repeat(3, 1)) and v.score_mask.any(dim=1).all()
        assert torch.allclose(v.mask_ratio, stratified_ratios(torch.tensor([0.2, 0.7]), 3))
        assert v.attention_mask[0, :2].tolist() == [0, 0]  # the padded prompt stays padded


def test_one_mask_is_unigrpo_exactly():
    ratio = torch.tensor([0.4, 1.0])
    ours = view(ratio, seed=5, vrpo_num_masks=1)
    theirs = get_estimator("unigrpo").noise(PROMPT, PROMPT_MASK, ANSWER, ELIGIBLE, ratio, MASK,
                                            torch.Generator().manual_seed(5), suffix_ids=SUFFIX)
    assert torch.equal(ours.input_ids, theirs.input_ids) and torch.equal(ours.score_mask, theirs.score_mask)


def answer_scores(v, num_answers):
    """The answer's score as the grpo loss reads it: mean over all its scored tokens (all K rows) of a token
    log-prob that worsens with how much of the row is masked, −(1 + 3·t)."""
    token_logps = -(1 + 3 * v.mask_ratio)[:, None].expand_as(v.score_mask) * v.score_mask
    total = torch.zeros(num_answers).index_add(0, v.answer_index, token_logps.sum(-1))
    count = torch.zeros(num_answers).index_add(0, v.answer_index, v.score_mask.sum(-1).float())
    return total / count


def test_stratified_rows_cut_the_variance_of_the_score_more_than_k_fold():
    """VRPO's point: at the same draws of the step ratio p, K = 4 stratified rows give an answer score whose
    variance is well below 1/4 of one mask's (what K independent masks would give)."""
    generator = torch.Generator().manual_seed(0)
    one, four = [], []
    for seed in range(300):
        p = torch.rand(2, generator=generator)
        one.append(answer_scores(view(p, seed=seed, vrpo_num_masks=1), 2))
        four.append(answer_scores(view(p, seed=seed, vrpo_num_masks=4), 2))
    var_one, var_four = torch.stack(one).var(0), torch.stack(four).var(0)
    assert (var_four < var_one / 4).all(), (var_one, var_four)


def test_registered_and_checked():
    assert "vrpo" in ESTIMATORS and isinstance(get_estimator("vrpo"), VRPOEstimator)
    assert get_estimator("vrpo", vrpo_num_masks=3).max_rows_per_answer(64, 64) == 3  # what the memory plan counts
    with pytest.raises(ValueError, match="vrpo_num_masks=0"):
        get_estimator("vrpo", vrpo_num_masks=0)
