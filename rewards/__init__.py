"""Reward functions for UniGRPO and their registry. Importable without torch.

Register your own with ``@register_reward("name")``, or name it in a recipe as ``package.module:function``.
"""

from . import format, math_correctness  # noqa: F401  (register the built-in rewards)
from .registry import (
    call_reward,
    call_rewards_concurrently,
    completion_text,
    get_reward,
    list_rewards,
    register_reward,
    validate_reward_output,
)

__all__ = [
    "call_reward",
    "call_rewards_concurrently",
    "completion_text",
    "get_reward",
    "list_rewards",
    "register_reward",
    "validate_reward_output",
]
