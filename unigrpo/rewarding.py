"""Scoring completions with several reward functions and combining them (DESIGN §3.7, §6).

A reward that raises fails the step with an error naming the reward and the sample (``reward_errors: raise``,
the default), or turns that sample's reward into None = not applicable and counts it (``reward_errors: skip``).
A reward that breaks its contract (wrong number of values, text instead of numbers) always fails: that is a bug
in the reward, not a bad sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rewards import call_rewards_concurrently, get_reward, invoke_reward, reward_name, validate_reward_output

REWARD_ERRORS = ("raise", "skip")


def resolve_reward_funcs(reward_funcs) -> tuple[list, list[str]]:
    """Reward functions given as callables, registered names or ``pkg.module:function`` paths → (funcs, names)."""
    if reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and not reward_funcs):
        raise ValueError("reward_funcs is empty: give at least one reward function (name, import path or callable)")
    if not isinstance(reward_funcs, (list, tuple)):
        reward_funcs = [reward_funcs]
    funcs, names = [], []
    for item in reward_funcs:
        func = get_reward(item) if isinstance(item, str) else item
        if not callable(func):
            raise ValueError(f"reward {item!r} is not callable")
        funcs.append(func)
        names.append(item if isinstance(item, str) else reward_name(func))
    return funcs, names


@dataclass
class RewardScores:
    """values (N, F): each reward on each completion, NaN = not applicable; skipped (F,): samples turned to None."""

    values: torch.Tensor
    skipped: list[int]


def score_completions(funcs, prompts, completions, completion_ids, columns: dict[str, list],
                      reward_errors: str = "raise") -> RewardScores:
    """Each reward on every completion. ``async def`` rewards (e.g. a judge server) run concurrently; if any reward
    fails, the rewards are re-run one by one to name (or skip) the failing samples."""
    if reward_errors not in REWARD_ERRORS:
        raise ValueError(f"reward_errors={reward_errors!r}; valid: {list(REWARD_ERRORS)}")
    kwargs = dict(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    try:
        results, skipped = call_rewards_concurrently(funcs, **kwargs), [0] * len(funcs)
    except Exception:  # noqa: BLE001 - diagnosed reward by reward below
        results, skipped = map(list, zip(*(score_one_reward(f, kwargs, reward_errors) for f in funcs)))
    scores = [[math.nan if v is None else float(v) for v in values] for values in results]
    values = torch.tensor(scores, dtype=torch.float32).T.reshape(len(completions), len(funcs))
    return RewardScores(values, skipped)


def score_one_reward(func, kwargs: dict, reward_errors: str) -> tuple[list[float | None], int]:
    """One reward on the batch; if it raises, sample by sample, so that the error names the sample (or skips it)."""
    name, n = reward_name(func), len(kwargs["completions"])
    try:
        raw = invoke_reward(func, **kwargs)
    except Exception:  # noqa: BLE001
        raw = None
    if raw is not None:
        skipped = 0
        if reward_errors == "skip" and isinstance(raw, (list, tuple)) and len(raw) == n:
            bad = [isinstance(v, float) and not math.isfinite(v) for v in raw]
            raw, skipped = [None if b else v for v, b in zip(raw, bad)], sum(bad)
        return validate_reward_output(name, raw, n), skipped  # contract violations always raise
    values, skipped = [], 0
    for i in range(n):
        one = {k: v[i : i + 1] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
        try:
            values.append(validate_reward_output(name, invoke_reward(func, **one), 1)[0])
        except Exception as error:  # noqa: BLE001 - a bad sample, reported or skipped
            if reward_errors == "raise":
                raise RuntimeError(f"reward {name!r} failed on sample {i}: {error!r}") from error
            values.append(None)
            skipped += 1
    return values, skipped


def combine_rewards(per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r_i = Σ_f w_f · r_{i,f}, skipping rewards that do not apply (NaN) → (N,)."""
    return torch.nansum(per_func * weights[None, :], dim=1)


def preflight_rewards(funcs, dataset, num_rows: int = 2) -> None:
    """Call every reward once on the first rows with empty completions, before any model work.

    A reward that returns the wrong number of values or non-numbers fails here with its name, not after the first
    rollout. (Empty answers are a legal input: rewards must score them, usually 0.)
    """
    rows = [dataset[i] for i in range(min(num_rows, len(dataset)))]
    if not rows:
        raise ValueError("the train dataset is empty")
    columns = {k: [row[k] for row in rows] for k in rows[0] if k != "prompt"}
    score_completions(funcs, [row["prompt"] for row in rows], [""] * len(rows), [[] for _ in rows], columns)
