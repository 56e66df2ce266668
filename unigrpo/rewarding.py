"""Scoring completions with several reward functions and combining them (docs/design.md §3.7, §6).

A reward that raises fails the step with an error naming the reward and the sample (``reward_errors: raise``,
the default), or turns that sample's reward into None = not applicable and counts it (``reward_errors: skip``).
A reward that breaks its contract (wrong number of values, text instead of numbers) always fails: that is a bug
in the reward, not a bad sample. With a time limit (``reward_timeout``), a reward that does not return in time —
a hung worker or judge server — is a failure of that reward, not of the run: it scores None for the batch, the
samples are counted as skipped and a warning is logged for every such batch (the hung call is left behind in a
daemon thread). The pre-flight call before training follows the same policy and limit.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from rewards import call_rewards_concurrently, get_reward, invoke_reward, reward_name, validate_reward_output
from rewards.registry import build_reward, unknown_arguments

log = logging.getLogger(__name__)

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


def resolve_reward_funcs(reward_funcs, reward_kwargs: Mapping | None = None) -> tuple[list, list[str]]:
    """Reward functions given as callables, registered names or ``pkg.module:function`` paths → (funcs, names).

    ``reward_kwargs`` (a recipe's ``reward_kwargs:``) maps a reward's name to the arguments of its factory: that
    reward is built by the factory with them (``rewards.clip.make_clip_score`` for ``clip_score``)."""
    if reward_funcs is None or (isinstance(reward_funcs, (list, tuple)) and not reward_funcs):
        raise ValueError("reward_funcs is empty: give at least one reward function (name, import path or callable)")
    if not isinstance(reward_funcs, (list, tuple)):
        reward_funcs = [reward_funcs]
    problems = reward_kwargs_problems(reward_funcs, reward_kwargs, build=False)
    if problems:
        raise ValueError(problems[0])
    funcs, names = [], []
    for item in reward_funcs:
        if isinstance(item, str) and item in (reward_kwargs or {}):
            func = build_reward(item, reward_kwargs[item])
        else:
            func = get_reward(item) if isinstance(item, str) else item
        if not callable(func):
            raise ValueError(f"reward {item!r} is not callable")
        funcs.append(func)
        names.append(item if isinstance(item, str) else reward_name(func))
    return funcs, names


def reward_kwargs_problems(reward_funcs, reward_kwargs: Mapping | None, build: bool = True) -> list[str]:
    """Every problem of ``reward_kwargs`` for these ``reward_funcs``, one line each, loading no model: a key that
    is not one of the rewards, a reward without a factory, an argument its factory does not take (with the
    closest one it does) and, with ``build``, what the factory itself rejects (a missing weights file)."""
    if not reward_kwargs:
        return []
    if not isinstance(reward_kwargs, Mapping):
        return [f"reward_kwargs must map a reward name to its arguments, got {reward_kwargs!r}"]
    names = [item for item in reward_funcs if isinstance(item, str)]
    problems = []
    for name, kwargs in reward_kwargs.items():
        where = f"reward_kwargs: {name}"
        if name not in names:
            import difflib

            close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: not one of reward_funcs {names}{hint}")
            continue
        if not isinstance(kwargs, Mapping):
            problems.append(f"{where}: give a mapping of argument: value, got {kwargs!r}")
            continue
        try:
            factory = getattr(get_reward(name), "factory", None)
        except ValueError:
            continue  # an unknown reward is reported under reward_funcs
        if factory is None:
            problems.append(f"{where}: this reward takes no arguments (it declares no factory)")
            continue
        unknown = unknown_arguments(factory, kwargs)
        problems += [f"{where}: {line}" for line in unknown]
        if build and not unknown:
            try:
                factory(**kwargs)  # the factories check their files and settings; models load on the first call
            except (TypeError, ValueError) as error:
                problems.append(f"{where}: {str(error).removeprefix(f'{name}: ')}")
    return problems


@dataclass
class RewardScores:
    """values (N, F): each reward on each completion, NaN = not applicable; skipped (F,): samples turned to None."""

    values: torch.Tensor
    skipped: list[int]


def score_completions(funcs, prompts, completions, completion_ids, columns: dict[str, list],
                      reward_errors: str = "raise", timeout: float | None = None) -> RewardScores:
    """Each reward on every completion. Without ``timeout``, all rewards are called at once (``async def`` ones,
    e.g. a judge server, concurrently), and only if one fails are they re-run one by one to name (or skip) the
    failing samples. With ``timeout`` (seconds per reward call) each reward runs under that limit, one after the
    other."""
    if reward_errors not in REWARD_ERRORS:
        raise ValueError(f"reward_errors={reward_errors!r}; valid: {list(REWARD_ERRORS)}")
    kwargs = dict(prompts=prompts, completions=completions, completion_ids=completion_ids, **columns)
    results, skipped = all_at_once(funcs, kwargs) if timeout is None else None, [0] * len(funcs)
    if results is None:  # one reward at a time: each under the time limit, or to find the failing samples
        limited = funcs if timeout is None else [time_limited(f, timeout) for f in funcs]
        results, skipped = map(list, zip(*(score_one_reward(f, kwargs, reward_errors) for f in limited)))
    scores = [[math.nan if v is None else float(v) for v in values] for values in results]
    values = torch.tensor(scores, dtype=torch.float32).T.reshape(len(completions), len(funcs))
    return RewardScores(values, skipped)


def all_at_once(funcs, kwargs: dict) -> list[list[float | None]] | None:
    """Every reward's values from one concurrent call, or None if any reward failed (the caller then diagnoses
    reward by reward)."""
    try:
        return call_rewards_concurrently(funcs, **kwargs)
    except Exception:  # noqa: BLE001 - diagnosed reward by reward by the caller
        return None


def score_one_reward(func, kwargs: dict, reward_errors: str) -> tuple[list[float | None], int]:
    """One reward on the batch → (values, skipped); if it raises, sample by sample, so that the error names the
    sample (or skips it). What it returns is checked whatever the policy (``checked_values``)."""
    name, n = reward_name(func), len(kwargs["completions"])
    try:
        raw = invoke_reward(func, **kwargs)
    except RewardTimeout as error:  # logged, not warnings.warn: that would show only the first batch's
        log.warning("%s: it scores None (not applicable) for this batch of %d", error, n)
        return [None] * n, n
    except Exception:  # noqa: BLE001 - retried sample by sample to find the failing ones
        return score_sample_by_sample(func, kwargs, reward_errors)
    return checked_values(name, raw, n, reward_errors)


def score_sample_by_sample(func, kwargs: dict, reward_errors: str) -> tuple[list[float | None], int]:
    """The reward on one sample at a time: a sample that raises (or times out) fails the step naming the sample
    under ``raise`` (a time-out never does), or scores None and is counted under ``skip``."""
    name, n = reward_name(func), len(kwargs["completions"])
    values, skipped = [], 0
    for i in range(n):
        one = {k: v[i : i + 1] if isinstance(v, list) and len(v) == n else v for k, v in kwargs.items()}
        try:
            raw = invoke_reward(func, **one)
        except Exception as error:  # noqa: BLE001 - a bad sample, reported or skipped
            if reward_errors == "raise" and not isinstance(error, RewardTimeout):
                raise RuntimeError(f"reward {name!r} failed on sample {i}: {error!r}") from error
            values.append(None)
            skipped += 1
            continue
        (value,), bad = checked_values(name, raw, 1, reward_errors)
        values.append(value)
        skipped += bad
    return values, skipped


def checked_values(name: str, raw, n: int, reward_errors: str) -> tuple[list[float | None], int]:
    """A reward's return value → (values, skipped). Under ``skip``, NaN / ±inf become None and are counted; anything
    else outside the contract (wrong count, text, NaN under ``raise``) raises ``ValueError`` naming the reward."""
    skipped = 0
    if reward_errors == "skip" and isinstance(raw, (list, tuple)) and len(raw) == n:
        bad = [isinstance(v, float) and not math.isfinite(v) for v in raw]
        raw, skipped = [None if b else v for v, b in zip(raw, bad)], sum(bad)
    return validate_reward_output(name, raw, n), skipped


def combine_rewards(per_func: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r_i = Σ_f w_f · r_{i,f}, skipping rewards that do not apply (NaN) → (N,)."""
    return torch.nansum(per_func * weights[None, :], dim=1)


def preflight_rewards(funcs, dataset, reward_errors: str = "raise", timeout: float | None = None,
                      num_rows: int = 2) -> None:
    """Call every reward once on the first rows with empty completions, before any model work, under the same
    ``reward_errors`` policy and ``timeout`` as the training steps.

    A reward that returns the wrong number of values or non-numbers fails here with its name, not after the first
    rollout (whatever the policy: that is a bug in the reward). A reward that raises, returns NaN or hangs on every
    call fails here only under ``raise``, as it would at step 1. Rewards that declare ``preflight = False`` (a judge:
    each call is a billed request to a server) are left out. (Empty answers are a legal input: rewards must score
    them, usually 0.)
    """
    rows = [dataset[i] for i in range(min(num_rows, len(dataset)))]
    if not rows:
        raise ValueError("the train dataset is empty")
    checked = [f for f in funcs if getattr(f, "preflight", True)]
    if not checked:
        return
    columns = {k: [row[k] for row in rows] for k in rows[0] if k != "prompt"}
    score_completions(checked, [row["prompt"] for row in rows], [""] * len(rows), [[] for _ in rows], columns,
                      reward_errors, timeout)
