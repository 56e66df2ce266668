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
