"""Scoring with several rewards: weights, None = not applicable, and the reward_errors policy."""

import math

import pytest
import torch

from unigrpo.rewarding import combine_rewards, resolve_reward_funcs, score_completions


def length_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def image_only(completions, task, **kwargs):
    return [1.0 if t == "t2i" else None for t in task]


def fragile(completions, **kwargs):
    if any("boom" in c for c in completions):
        raise ZeroDivisionError("boom")
    return [1.0] * len(completions)


def nan_reward(completions, **kwargs):
    return [math.nan if c == "x" else 0.5 for c in completions]


COMPLETIONS = ["ab", "boom", "x"]
ARGS = dict(prompts=["p"] * 3, completions=COMPLETIONS, completion_ids=[[], [], []], columns={"task": ["t2t", "t2i", "t2t"]})


def test_weights_and_not_applicable():
    scores = score_completions([length_reward, image_only], **ARGS)
    assert scores.values[:, 0].tolist() == [2.0, 4.0, 1.0]
    assert scores.values[1, 1] == 1.0 and scores.values[0, 1].isnan() and scores.values[2, 1].isnan()
    combined = combine_rewards(scores.values, torch.tensor([0.5, 2.0]))
    assert combined.tolist() == [1.0, 4.0, 0.5]


def test_a_raising_reward_names_the_sample_by_default():
    with pytest.raises(RuntimeError, match="reward 'fragile' failed on sample 1"):
        score_completions([length_reward, fragile], **ARGS)


def test_skip_turns_the_failing_samples_into_none_and_counts_them():
    scores = score_completions([length_reward, fragile, nan_reward], **ARGS, reward_errors="skip")
    assert scores.skipped == [0, 1, 1]
    assert scores.values[1, 1].isnan() and scores.values[0, 1] == 1.0 and scores.values[2, 1] == 1.0
    assert scores.values[2, 2].isnan() and scores.values[0, 2] == 0.5
    with pytest.raises(ValueError, match="nan at index 2|returned nan"):
        score_completions([nan_reward], **ARGS)


def test_contract_violations_always_raise():
    with pytest.raises(ValueError, match="returned 1 values for 3"):
        score_completions([lambda **k: [1.0]], **ARGS, reward_errors="skip")
    with pytest.raises(ValueError, match="reward_errors"):
        score_completions([length_reward], **ARGS, reward_errors="ignore")


def test_resolve_by_name_path_and_callable():
    funcs, names = resolve_reward_funcs(["math_correctness", "rewards.format:boxed_format", length_reward])
    assert names == ["math_correctness", "rewards.format:boxed_format", "length_reward"]
    with pytest.raises(ValueError, match="empty"):
        resolve_reward_funcs([])


# ---- reward_timeout (issue #8) -------------------------------------------------------------------------------------


def hangs(completions, **kwargs):
    import time

    time.sleep(30)
    return [1.0] * len(completions)


async def hangs_async(completions, **kwargs):
    import asyncio

    await asyncio.sleep(30)
    return [1.0] * len(completions)


def hangs_on_boom(completions, **kwargs):
    if any("boom" in c for c in completions):
        if len(completions) > 1:
            raise ValueError("batch failed")  # forces the sample-by-sample pass
        hangs(completions)
    return [2.0] * len(completions)


@pytest.mark.parametrize("slow", [hangs, hangs_async])
def test_a_hanging_reward_scores_none_for_the_batch_and_the_run_goes_on(slow):
    import time

    start = time.perf_counter()
    with pytest.warns(UserWarning, match=f"reward '{slow.__name__}' did not return within reward_timeout=0.3 s"):
        scores = score_completions([length_reward, slow], **ARGS, timeout=0.3)
    assert time.perf_counter() - start < 5  # one wait, not one per sample
    assert scores.values[:, 0].tolist() == [2.0, 4.0, 1.0]  # the other reward is unaffected
    assert scores.values[:, 1].isnan().all() and scores.skipped == [0, 3]


def test_a_sample_that_hangs_is_skipped_even_when_errors_raise():
    scores = score_completions([hangs_on_boom], **ARGS, timeout=0.3)  # reward_errors="raise" (the default)
    assert scores.values[:, 0].tolist()[0] == 2.0 and math.isnan(scores.values[1, 0]) and scores.skipped == [1]


def test_timeouts_leave_fast_rewards_and_their_errors_alone():
    assert torch.equal(score_completions([length_reward], **ARGS, timeout=5).values,
                       score_completions([length_reward], **ARGS).values)
    with pytest.raises(RuntimeError, match="reward 'fragile' failed on sample 1"):
        score_completions([fragile], **ARGS, timeout=5)


def test_reward_timeout_is_validated(tmp_path):
    from unigrpo import UniGRPOConfig

    base = dict(output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=4, report_to="none")
    assert UniGRPOConfig(**base).reward_timeout == 600.0 and UniGRPOConfig(reward_timeout=None, **base)
    with pytest.raises(ValueError, match="reward_timeout=0"):
        UniGRPOConfig(reward_timeout=0, **base)


def test_a_nan_or_inf_reward_is_a_clear_error_unless_skipped():
    with pytest.raises(ValueError, match="reward 'nan_reward' returned nan at index 2; use None"):
        score_completions([nan_reward], **ARGS)
    assert score_completions([nan_reward], **ARGS, reward_errors="skip").skipped == [1]
