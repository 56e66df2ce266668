"""The trajectory-aware estimator (TraceRL, arXiv 2509.06949): views along the sampler's commit order."""

import random

import pytest
import torch

from unigrpo import UniGRPOConfig
from unigrpo.likelihood import ESTIMATORS, answer_token_logps, estimator_options, get_estimator, rollout_inputs
from unigrpo.masking import loss_eligible_positions
from unigrpo.recipe_check import check_recipe

MASK = 99
PROMPT = torch.tensor([[5, 5, 10, 11, 12, 13], [20, 21, 22, 23, 24, 25]])  # row 0 left-padded with 5
PROMPT_MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6])
ANSWER = torch.tensor([[30, 31, 32, 2, 2, 2], [40, 41, 42, 43, 44, 2]])
ELIGIBLE = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6]).bool()  # eos_in_loss = 1: answer 0's last two EOS are out
SUFFIX = torch.tensor([[7], [7]])
# Answer 0 finished early: its EOS (position 3) was committed at step 1, the row left at step 5, so its EOS padding
# (positions 4, 5) carries step 5; answer 1 committed two tokens at steps 0 and 1, then one at 2 and one at 3.
COMMIT_STEP = torch.tensor([[2, 0, 5, 1, 5, 5], [0, 0, 1, 1, 2, 3]])


def view(shrink, commit_step=COMMIT_STEP):
    return get_estimator("trajectory", trajectory_shrink=shrink).noise(
        PROMPT, PROMPT_MASK, ANSWER, ELIGIBLE, torch.full((2,), 0.5), MASK, torch.Generator().manual_seed(0),
        suffix_ids=SUFFIX, commit_step=commit_step)


def answer_masks(v):
    return (v.input_ids[:, 6:12] == MASK).int().tolist()


def test_golden_views_with_two_steps_per_chunk():
    # answer 0's distinct steps 0,1 | 2,5 → chunks [1,0,1,0,1,1]; answer 1's 0,1 | 2,3 → [0,0,0,0,1,1]
    v = view(shrink=2)
    assert v.answer_index.tolist() == [0, 0, 1, 1]
    assert answer_masks(v) == [[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]]
    assert v.score_mask.int().tolist() == [[0, 1, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0],  # padding 4, 5 never scored
                                           [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]
    assert v.mask_ratio.tolist() == pytest.approx([1.0, 4 / 6, 1.0, 2 / 6])
    visible = v.input_ids[:, 6:12] != MASK
    assert torch.equal(v.input_ids[:, 6:12][visible], ANSWER[v.answer_index][visible])  # the committed tokens


def test_golden_views_one_step_per_chunk():
    v = view(shrink=1)  # answer 0: step ranks [2,0,3,1,3,3]; answer 1: [0,0,1,1,2,3]
    assert v.answer_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert answer_masks(v) == [[1, 1, 1, 1, 1, 1], [1, 0, 1, 1, 1, 1], [1, 0, 1, 0, 1, 1], [0, 0, 1, 0, 1, 1],
                               [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1]]
    assert v.score_mask.int().tolist() == [[0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [1, 0, 0, 0, 0, 0],
                                           [0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0],
                                           [0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 0, 1]]


def test_a_chunk_of_padding_only_becomes_no_row():
    # answer 0's padding position 4 alone was committed at step 4: that chunk scores nothing and is dropped
    v = view(shrink=1, commit_step=torch.tensor([[2, 0, 5, 1, 4, 5], [0, 0, 1, 1, 2, 3]]))
    assert v.answer_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert answer_masks(v)[3] == [0, 0, 1, 0, 0, 1]  # the step-5 view: position 4 (step 4) is committed
    assert v.score_mask[3].int().tolist() == [0, 0, 1, 0, 0, 0]


def test_a_shrink_covering_every_step_is_one_fully_masked_view():
    v = view(shrink=8)
    assert v.answer_index.tolist() == [0, 1] and (v.input_ids[:, 6:12] == MASK).all()
    assert torch.equal(v.score_mask, ELIGIBLE)


def reference_views(commit_step, eligible, shrink):
    """Slow reference in TraceRL's terms: sort a row's distinct steps, each s consecutive ones form a chunk; the
    view of a chunk masks every position committed at or after the chunk's first step and scores the chunk."""
    rows = []
    for i, steps in enumerate(commit_step.tolist()):
        distinct = sorted(set(steps))
        for start in range(0, len(distinct), shrink):
            chunk = set(distinct[start : start + shrink])
            scored = [s in chunk and bool(e) for s, e in zip(steps, eligible[i].tolist())]
            if any(scored):
                rows.append((i, [s >= distinct[start] for s in steps], scored))
    return rows


@pytest.mark.parametrize("shrink", [1, 2, 3])
def test_random_trajectories_match_the_reference_and_score_each_eligible_position_once(shrink):
    rng = random.Random(shrink)
    for _ in range(30):
        N, L = 3, 7
        commit_step = torch.tensor([[rng.randrange(9) for _ in range(L)] for _ in range(N)])
        eligible = torch.tensor([[rng.random() < 0.8 for _ in range(L)] for _ in range(N)])
        prompt, answer = torch.randint(10, 90, (N, 4)), torch.randint(10, 90, (N, L))
        v = get_estimator("trajectory", trajectory_shrink=shrink).noise(
            prompt, None, answer, eligible, torch.full((N,), 0.5), MASK, commit_step=commit_step)
        expected = reference_views(commit_step, eligible, shrink)
        assert v.answer_index.tolist() == [i for i, _, _ in expected]
        assert (v.input_ids[:, 4:] == MASK).tolist() == [m for _, m, _ in expected]
        assert v.score_mask.tolist() == [s for _, _, s in expected]
        assert torch.equal(v.input_ids[:, :4], prompt[v.answer_index])  # the prompt is never masked
        times_scored = torch.zeros(N, L, dtype=torch.long).index_add(0, v.answer_index, v.score_mask.long())
        assert torch.equal(times_scored, eligible.long())  # each eligible position exactly once per answer


def test_prompt_padding_and_suffix_are_never_masked():
    for shrink in (1, 2, 8):
        v = view(shrink)
        assert torch.equal(v.input_ids[:, :6], PROMPT[v.answer_index])
        assert (v.input_ids[:, -1] == 7).all() and v.suffix_length == 1
        assert v.attention_mask[:, :6].tolist() == PROMPT_MASK[v.answer_index].tolist()


def test_early_finish_padding_is_masked_and_ordered_as_the_sampler_committed_it():
    """Through the real sampler: answer 1 commits its EOS (position 1) at step 0 and position 0 at step 1, then is
    decided and leaves; its EOS padding carries step 1, so it is masked in both views and scored in neither."""
    from test_fast_sampler import EosRows, early_pair

    prompts = torch.tensor([[20, 21, 22, 23, 24], [30, 31, 32, 33, 34], [40, 41, 42, 43, 44]])
    early, _ = early_pair(lambda: EosRows({30: 1, 40: 5}), prompts, gen_length=8, block_length=2, steps=8)
    assert early.commit_step[1].tolist() == [1, 0] + [1] * 6
    eligible = loss_eligible_positions(early.completion_ids, eos_token_id=2)
    v = get_estimator("trajectory", trajectory_shrink=1).noise(
        prompts, None, early.completion_ids, eligible, torch.ones(3), MASK, commit_step=early.commit_step)
    rows = v.answer_index == 1
    assert rows.sum() == 2
    assert (v.input_ids[rows, 5:] == MASK).int().tolist() == [[1] * 8, [1, 0] + [1] * 6]
    assert v.score_mask[rows].int().tolist() == [[0, 1] + [0] * 6, [1, 0] + [0] * 6]


def test_shrink_and_commit_step_are_checked_with_one_clear_line():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"trajectory_shrink=.* must be an integer ≥ 1"):
            get_estimator("trajectory", trajectory_shrink=bad)
    with pytest.raises(ValueError, match=r"needs each answer position's commit_step \(2, 6\) from the sampler, "
                                         r"got None"):
        view(shrink=2, commit_step=None)
    with pytest.raises(ValueError, match="trajectory_shrink=0 must be ≥ 1"):
        UniGRPOConfig(output_dir="unused", report_to="none", trajectory_shrink=0)


def test_registered_and_built_from_the_config():
    assert "trajectory" in ESTIMATORS
    config = UniGRPOConfig(output_dir="unused", report_to="none", likelihood_estimator="trajectory",
                           trajectory_shrink=3)
    assert estimator_options("trajectory", config) == {"trajectory_shrink": 3}
    estimator = get_estimator("trajectory", **estimator_options("trajectory", config))
    assert estimator.shrink == 3
    rollout = type("Rollout", (), {"commit_step": COMMIT_STEP})()
    assert rollout_inputs(estimator, rollout) == {"commit_step": COMMIT_STEP}
    assert rollout_inputs(get_estimator("unigrpo"), rollout) == {}  # the others keep the plain signature


def test_a_recipe_can_name_it_and_the_check_lists_it(tmp_path):
    from test_recipe_check import GOOD

    path = tmp_path / "r.yaml"
    path.write_text(GOOD + "likelihood_estimator: trajectory\ntrajectory_shrink: 2\n")
    assert check_recipe(path, UniGRPOConfig) == []
    path.write_text(GOOD + "likelihood_estimator: tracerl\n")
    (problem,) = check_recipe(path, UniGRPOConfig)
    assert "likelihood_estimator='tracerl'" in problem and "'trajectory'" in problem


def test_the_trainer_passes_the_rollouts_commit_steps_and_the_ratio_is_one_before_an_update(micro_model_dir,
                                                                                             tmp_path):
    from test_trainer import first_rows, make_trainer

    trainer = make_trainer(micro_model_dir, tmp_path, beta=0.1, likelihood_estimator="trajectory",
                           trajectory_shrink=1)
    seen, noise = [], trainer.estimator.noise
    trainer.estimator.noise = lambda *args, **kwargs: seen.append(kwargs["commit_step"]) or noise(*args, **kwargs)
    (task,) = trainer.make_rollouts(first_rows(trainer)).tasks
    view, commit_step = task.views[0], seen[0]
    assert commit_step.shape == task.completion_ids.shape == (16, 4)  # the sampler's, one per answer position
    eligible = loss_eligible_positions(task.completion_ids, trainer.processing_class.eos_token_id)
    # shrink 1: one view per distinct step at which some loss-eligible position was committed
    distinct = [len({s for s, e in zip(steps, keep) if e}) for steps, keep in zip(commit_step.tolist(),
                                                                                  eligible.tolist())]
    assert torch.bincount(view.answer_index, minlength=16).tolist() == distinct and max(distinct) > 1
    times_scored = torch.zeros(16, 4, dtype=torch.long).index_add(0, view.answer_index, view.score_mask.long())
    assert torch.equal(times_scored, eligible.long())
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, view, task.completion_ids)
    assert torch.isfinite(logps).all()
    assert torch.equal(logps, task.old_logps[0])  # θ_old = θ before the first update: ratio 1
    assert torch.equal(task.ref_logps[0], logps)  # and the reference agrees: KL 0


def test_text_image_understanding_and_image_answers_are_all_scored_along_their_trajectory(tmp_path_factory,
                                                                                           tmp_path):
    """t2t, mmu and t2i groups carry their sampler's commit steps (text sampler; image sampler for t2i): every
    eligible answer position is scored once per view set, and prompts (image codes included) and <|eoi|> stay."""
    from test_tasks import make_trainer as make_task_trainer
    from test_tasks import mixed_dataset, redness, target_text

    from unigrpo.models import init_tiny

    mmada = init_tiny(tmp_path_factory.mktemp("mmada") / "m", preset="micro", mmada=True, codebook_size=8,
                      num_vq_tokens=4)
    trainer = make_task_trainer(mmada, tmp_path, mixed_dataset(), [target_text, redness],
                                likelihood_estimator="trajectory", trajectory_shrink=1)
    rows = [trainer.train_dataset[i] for i in range(6)]  # 2 × (t2t, mmu, t2i)
    groups = {t: trainer.task_runner.rollout(t, [r for r in rows if r["task"] == t], 4, seed=0)
              for t in ("t2t", "mmu", "t2i")}
    for task, group in groups.items():
        assert group.commit_step.shape == group.completion_ids.shape, task
        v = trainer.estimator.noise(group.prompt_ids, group.prompt_mask, group.completion_ids, group.eligible,
                                    torch.ones(8), trainer.mask_token_id, suffix_ids=group.suffix_ids,
                                    **rollout_inputs(trainer.estimator, group))
        L, S = group.completion_ids.shape[1], v.suffix_length
        P = v.input_ids.shape[1] - L - S
        assert torch.equal(v.input_ids[:, :P], group.prompt_ids[v.answer_index]), task
        if S:
            assert torch.equal(v.input_ids[:, P + L :], group.suffix_ids[v.answer_index]), task
        times_scored = torch.zeros(8, L, dtype=torch.long).index_add(0, v.answer_index, v.score_mask.long())
        assert torch.equal(times_scored, group.eligible.long()), task
    assert len(groups["t2i"].commit_step.unique()) > 1  # the image sampler's steps, not one step for all
