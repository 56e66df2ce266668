"""Reward functions for UniGRPO and their registry (docs/design.md §6). Importable without torch (and without sympy: the
symbolic math check runs in a child process, see ``rewards.math_worker``).

Built-in: ``math_correctness`` (2.0), ``think_format`` (0.5), ``boxed_format`` (0.5), ``countdown`` (1.0), ``exact_answer`` (1.0),
``sudoku`` (share of cells), ``clip_score``, ``image_reward`` (in its own environment: ``unigrpo rewards setup
image-reward``), ``judge``. Register your own with
``@register_reward("name")``, name it in a recipe as ``package.module:function``, or offer it from another package
through the ``unigrpo.rewards`` entry-point group. Settings of ``clip_score``, ``image_reward`` and ``judge`` go in a
recipe's ``reward_kwargs`` (their factories' arguments; ``UNIGRPO_<REWARD>_*`` variables are the fallback).
"""

from . import clip, countdown, exact_match, format, image_reward, judge, math_correctness, sudoku  # noqa: F401  (register the built-in rewards)
from .registry import (
    build_reward,
    call_reward,
    call_rewards_concurrently,
    completion_text,
    get_reward,
    invoke_reward,
    list_rewards,
    reward_name,
    register_reward,
    validate_reward_output,
)

__all__ = [
    "build_reward",
    "call_reward",
    "call_rewards_concurrently",
    "completion_text",
    "get_reward",
    "invoke_reward",
    "list_rewards",
    "reward_name",
    "register_reward",
    "validate_reward_output",
]
