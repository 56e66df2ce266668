"""The reward registry and the one way rewards are called.

A reward has TRL's signature: keyword arguments ``prompts``, ``completions`` (and ``completion_ids`` when known),
the dataset's other columns as lists, and ``**kwargs``; it returns one float per completion, or ``None`` where it
does not apply. Rewards are found by registered name, by ``package.module:function`` path, or through the
``unigrpo.rewards`` entry-point group of installed packages. This module imports no torch.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import math
from collections.abc import Callable
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "unigrpo.rewards"
_REGISTRY: dict[str, Callable] = {}
_entry_points_loaded = False


def register_reward(name: str):
    """Decorator: ``@register_reward("my_reward")`` makes the function available to recipes by that name."""

    def decorator(func: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not func:
            raise ValueError(f"a reward named {name!r} is already registered ({_REGISTRY[name]!r})")
        _REGISTRY[name] = func
        return func

    return decorator


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ep.load()


def list_rewards() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_reward(name_or_path: str) -> Callable:
    """A registered name, or ``package.module:function`` (also ``package.module.function``) → the function."""
    _load_entry_points()
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    if ":" in name_or_path or "." in name_or_path:
        module_name, _, attr = name_or_path.replace(":", ".").rpartition(".")
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"reward {name_or_path!r} cannot be imported: {error}") from None
        if not callable(func):
            raise ValueError(f"reward {name_or_path!r} is not callable")
        return func
    raise ValueError(f"unknown reward {name_or_path!r}; registered: {list_rewards()} (or use 'pkg.module:function')")


def completion_text(completion) -> str:
    """Plain text of a completion: a string, or TRL's conversational list of messages (their contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(m.get("content", "") if isinstance(m, dict) else str(m) for m in completion)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    raise TypeError(f"a completion must be text or a list of messages, got {type(completion).__name__}")


def reward_name(func: Callable) -> str:
    for name, registered in _REGISTRY.items():
        if registered is func:
            return name
    return getattr(func, "__name__", type(func).__name__)


def validate_reward_output(name: str, values, n: int) -> list[float | None]:
    """One value per completion, each a finite number or None; otherwise one clear ValueError."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"reward {name!r} returned {type(values).__name__}, expected a list of {n} floats or None")
    if len(values) != n:
        raise ValueError(f"reward {name!r} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)  # numpy / torch scalars
            except (TypeError, ValueError):
                raise ValueError(
                    f"reward {name!r} returned {value!r} ({type(value).__name__}) at index {i}; expected a number or None"
                ) from None
        if not math.isfinite(value):
            raise ValueError(f"reward {name!r} returned {value} at index {i}")
        out.append(float(value))
    return out


def call_reward(func: Callable, **kwargs) -> list[float | None]:
    """Call a sync or ``async def`` reward with TRL's keyword arguments and validate what it returns."""
    n = len(kwargs["completions"])
    result = func(**kwargs)
    if inspect.isawaitable(result):
        result = _run_coroutine(result)
    return validate_reward_output(reward_name(func), result, n)


async def _gather(awaitables):
    return await asyncio.gather(*awaitables)


def call_rewards_concurrently(funcs: list[Callable], **kwargs) -> list[list[float | None]]:
    """Several rewards on the same completions; the ``async def`` ones run concurrently on one event loop."""
    n = len(kwargs["completions"])
    results = [func(**kwargs) for func in funcs]
    pending = [i for i, r in enumerate(results) if inspect.isawaitable(r)]
    if pending:
        done = _run_coroutine(_gather([results[i] for i in pending]))
        for i, value in zip(pending, done):
            results[i] = value
    return [validate_reward_output(reward_name(f), r, n) for f, r in zip(funcs, results)]


def _run_coroutine(coroutine):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    # Called from inside a running loop (e.g. a notebook): run it on a private loop in a helper thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
