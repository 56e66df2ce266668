"""Scoring completions with several reward functions and combining them (DESIGN §3.7, §6)."""

from __future__ import annotations

import math

import torch

from rewards import call_rewards_concurrently, get_reward


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
        names.append(item if isinstance(item, str) else getattr(func, "__name__", type(func).__name__))
    return funcs, names


def score_completions(funcs, prompts, completions, completion_ids, columns: dict[str, list]) -> torch.Tensor:
    """Each reward on every completion → (N, F) float tensor; ``None`` (not applicable) becomes NaN.

    ``async def`` rewards (e.g. a judge server) run concurrently; every output is validated (length, finiteness).
    """
    results = call_rewards_concurrently(
        funcs, prompts=prompts, completions=completions, completion_ids=completion_ids, **columns
    )
    scores = [[math.nan if v is None else float(v) for v in values] for values in results]
    return torch.tensor(scores, dtype=torch.float32).T.reshape(len(completions), len(funcs))


def combine_rewards(per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r_i = Σ_f w_f · r_{i,f}, skipping rewards that do not apply (NaN) → (N,)."""
    return torch.nansum(per_func * weights[None, :], dim=1)
