"""Scoring completions with several reward functions and combining them (docs/design.md §3.7, §6).

A reward that raises fails the step with an error naming the reward and the sample (``reward_errors: raise``,
the default), or turns that sample's reward into None = not applicable and counts it (``reward_errors: skip``).
A reward that breaks its contract (wrong number of values, text instead of numbers) always fails: that is a bug
in the reward, not a bad sample. With a time limit (``reward_timeout``), a reward that does not return in time —
a hung worker or judge server — is a failure of that reward, not of the run: it scores None for the batch and the
samples are counted as skipped (the hung call is left behind in a daemon thread).
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass

import torch

from rewards import call_rewards_concurrently, get_reward, invoke_reward, reward_name, validate_reward_output

REWARD_ERRORS = ("raise", "skip")


class RewardTimeout(TimeoutError):
    """A reward call did not return within ``reward_timeout`` seconds."""


def time_limited(func, seconds: float):
    """``func`` as a sync callable that raises ``RewardTimeout`` after ``seconds`` (the call runs in a daemon thread,
    so a hung reward cannot hold the run; sync and ``async def`` rewards alike)."""
    name = reward_name(func)

    def call(**kwargs):
        box = {}

        def target():
            try:
                box["value"] = invoke_reward(func, **kwargs)
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = error

        worker = threading.Thread(target=target, daemon=True, name=f"reward-{name}")
        worker.start()
        worker.join(seconds)
        if worker.is_alive():
            raise RewardTimeout(f"reward {name!r} did not return within reward_timeout={seconds} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    call.__name__ = name
    return call


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
                      reward_errors: str = "raise", timeout: float | None = None) -> RewardScores:
    """Each reward on every completion. ``async def`` rewards (e.g. a judge server) run concurrently; if any reward
    fails, the rewards are re-run one by one to name (or skip) the failing samples. With ``timeout`` (seconds per
    reward call) each reward runs under that limit, one after the other."""
    if reward_errors not in REWARD_ERRORS:
        raise ValueError(f"reward_errors={reward_errors!r}; valid: {list(REWARD_ERRORS)}")
    kwargs = dict(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    try:
        if timeout is not None:
            raise RewardTimeout  # straight to one reward at a time, each under its limit
        results, skipped = call_rewards_concurrently(funcs, **kwargs), [0] * len(funcs)
    except Exception:  # noqa: BLE001 - diagnosed reward by reward below
        limited = funcs if timeout is None else [time_limited(f, timeout) for f in funcs]
        results, skipped = map(list, zip(*(score_one_reward(f, kwargs, reward_errors) for f in limited)))
    scores = [[math.nan if v is None else float(v) for v in values] for values in results]
    values = torch.tensor(scores, dtype=torch.float32).T.reshape(len(completions), len(funcs))
    return RewardScores(values, skipped)


def score_one_reward(func, kwargs: dict, reward_errors: str) -> tuple[list[float | None], int]:
    """One reward on the batch; if it raises, sample by sample, so that the error names the sample (or skips it)."""
    name, n = reward_name(func), len(kwargs["completions"])
    try:
        raw = invoke_reward(func, **kwargs)
    except RewardTimeout as error:
        warnings.warn(f"{error}: it scores None (not applicable) for this batch of {n}", stacklevel=2)
        return [None] * n, n
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
            if reward_errors == "raise" and not isinstance(error, RewardTimeout):
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
