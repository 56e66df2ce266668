"""The reward registry and the one way rewards are called (docs/design.md §6).

A reward has TRL's signature: keyword arguments ``prompts``, ``completions`` (and ``completion_ids`` when known),
the dataset's other columns as lists, and ``**kwargs``; it returns one float per completion, or ``None`` where it
does not apply. It may be ``async def``. Rewards are found by registered name, by ``package.module:function`` path,
or through the ``unigrpo.rewards`` entry-point group of installed packages (loaded only when asked for by name).

A reward that takes settings (weights, a server URL) declares the factory that builds it with them, as its
``factory`` attribute (``register_reward("clip_score", factory=make_clip_score)`` sets it); ``build_reward`` calls
that factory with a recipe's ``reward_kwargs``. A reward whose calls cost money or need a server (a judge) says
``preflight = False``, so that the trainer's pre-flight call leaves it out.

Third-party registration, in the other package's ``pyproject.toml``::

    [project.entry-points."unigrpo.rewards"]
    my_reward = "mypkg.rewards:my_reward"

This module imports no torch.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "unigrpo.rewards"
_REGISTRY: dict[str, Callable] = {}


def register_reward(name: str, *, overwrite: bool = False, factory: Callable | None = None):
    """Decorator: ``@register_reward("my_reward")`` makes the function available to recipes by that name.

    ``factory``: the function that builds this reward with other settings (``reward_kwargs`` in a recipe); it is
    stored as the reward's ``factory`` attribute."""
    if not isinstance(name, str) or not name or ":" in name:
        raise ValueError(f"a reward name must be a non-empty string without ':', got {name!r}")

    def decorator(func: Callable) -> Callable:
        if not callable(func):
            raise TypeError(f"register_reward({name!r}) needs a callable, got {type(func).__name__}")
        if not overwrite and name in _REGISTRY and _REGISTRY[name] is not func:
            raise ValueError(
                f"a reward named {name!r} is already registered ({_REGISTRY[name]!r}); "
                "pass overwrite=True to replace it"
            )
        if factory is not None:
            if not callable(factory):
                raise TypeError(f"register_reward({name!r}, factory=...) needs a callable, got {factory!r}")
            func.factory = factory
        _REGISTRY[name] = func
        return func

    return decorator


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_rewards() -> list[str]:
    """Registered names and the names that installed packages offer through entry points (not loaded here)."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _import_path(path: str) -> Callable:
    """``package.module:function`` (or ``package.module.function``; ``module:Class.attr`` works too)."""
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
    else:
        module_name, _, attr_path = path.rpartition(".")
    try:
        obj = importlib.import_module(module_name)
        for attr in attr_path.split("."):
            obj = getattr(obj, attr)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"reward {path!r} cannot be imported: {error}") from error
    return obj


def get_reward(name_or_path: str) -> Callable:
    """A registered name, an entry point of group ``unigrpo.rewards``, or an import path → the reward function."""
    if not isinstance(name_or_path, str):
        raise TypeError(f"get_reward takes a name or an import path, got {type(name_or_path).__name__}")
    if name_or_path in _REGISTRY:
        return _REGISTRY[name_or_path]
    entry_point = _entry_points().get(name_or_path)
    if entry_point is not None:
        try:
            func = entry_point.load()
        except Exception as error:  # a broken third-party package: say which one
            raise ValueError(
                f"reward {name_or_path!r} (entry point {entry_point.value!r}) failed to load: {error}"
            ) from error
    elif ":" in name_or_path or "." in name_or_path:
        func = _import_path(name_or_path)
    else:
        raise ValueError(
            f"unknown reward {name_or_path!r}; valid names: {', '.join(list_rewards())} "
            "(or give an import path 'package.module:function')"
        )
    if not callable(func):
        raise ValueError(f"reward {name_or_path!r} is not callable (got {type(func).__name__})")
    if entry_point is not None:
        _REGISTRY.setdefault(name_or_path, func)
    return func


def unknown_arguments(factory: Callable, kwargs: Mapping) -> list[str]:
    """One line per keyword in ``kwargs`` that ``factory`` does not take, with the closest name it does take."""
    import difflib

    params = [p.name for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    lines = []
    for key in kwargs:
        if key not in params:
            close = difflib.get_close_matches(str(key), params, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"unknown argument {key!r} of {factory.__name__} ({hint}valid: {', '.join(params)})")
    return lines


def build_reward(name_or_path: str, kwargs: Mapping) -> Callable:
    """The reward ``name_or_path`` built by its ``factory`` with ``kwargs`` (a recipe's ``reward_kwargs`` entry).

    ValueError, naming the reward: no factory, an argument the factory does not take, or the factory's own
    complaint (a missing weights file)."""
    func = get_reward(name_or_path)
    factory = getattr(func, "factory", None)
    if factory is None:
        raise ValueError(f"reward {name_or_path!r} takes no arguments (it declares no factory): remove it from "
                         "reward_kwargs, or build it yourself and name it as 'package.module:attribute'")
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"reward_kwargs of {name_or_path!r} must be a mapping of argument → value, got {kwargs!r}")
    unknown = unknown_arguments(factory, kwargs)
    if unknown:
        raise ValueError(f"reward {name_or_path!r}: {'; '.join(unknown)}")
    try:
        return factory(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"reward {name_or_path!r}: {error}") from error


def reward_name(func: Callable) -> str:
    """The registered name of ``func`` if it has one, else its ``__name__`` (what error messages and metrics show)."""
    for name, registered in _REGISTRY.items():
        if registered is func:
            return name
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def completion_text(completion) -> str:
    """Plain text of a completion: a string, or TRL's conversational form ``[{"role": "assistant", "content": …}]``.

    The contents of all non-user messages are joined; a content given as parts (``[{"type": "text", "text": …}]``)
    contributes its text parts.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        return "".join(
            _content_text(m.get("content", "")) if isinstance(m, dict) else completion_text(m)
            for m in completion
            if not (isinstance(m, dict) and m.get("role") in ("user", "system"))
        )
    raise TypeError(f"a completion must be text or a list of messages, got {type(completion).__name__}")


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # multimodal message parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return "" if content is None else str(content)


def _short_repr(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_reward_output(name: str, values, n: int) -> list[float | None]:
    """One value per completion, each a finite real number (bools count) or None → list of float | None.

    Anything else raises one ValueError naming the reward and, for a bad item, its index.
    """
    if hasattr(values, "tolist") and not isinstance(values, (list, tuple)):  # numpy array / torch tensor
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ValueError(f"reward {name!r} returned {type(values).__name__}, expected a list of {n} floats or None")
    if len(values) != n:
        raise ValueError(f"reward {name!r} returned {len(values)} values for {n} completions")
    out: list[float | None] = []
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, numbers.Real) and hasattr(value, "item") and not isinstance(value, (str, bytes)):
            try:
                value = value.item()  # 0-d numpy array / tensor
            except (TypeError, ValueError):
                pass
        if isinstance(value, (str, bytes)) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"reward {name!r} returned {_short_repr(value)} ({type(value).__name__}) at index {i}; "
                "expected a number or None"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"reward {name!r} returned {value} at index {i}; use None for 'not applicable'")
        out.append(value)
    return out


def _num_completions(kwargs) -> int:
    if "completions" not in kwargs:
        raise TypeError("call_reward needs completions=…, to check that the reward returns one value per completion")
    return len(kwargs["completions"])


def invoke_reward(func: Callable, /, **kwargs):
    """Call a sync or ``async def`` reward and return what it returned, unvalidated."""
    result = func(**kwargs)
    if inspect.isawaitable(result):
        result = _run_coroutine(_await(result))
    return result


def call_reward(func: Callable, /, **kwargs) -> list[float | None]:
    """Call a sync or ``async def`` reward with TRL's keyword arguments; validate and return its values."""
    n = _num_completions(kwargs)
    return validate_reward_output(reward_name(func), invoke_reward(func, **kwargs), n)


def call_rewards_concurrently(funcs: list[Callable], /, **kwargs) -> list[list[float | None]]:
    """Several rewards on the same completions; the ``async def`` ones run concurrently on one event loop."""
    n = _num_completions(kwargs)
    results = [func(**kwargs) for func in funcs]
    pending = [i for i, result in enumerate(results) if inspect.isawaitable(result)]
    if pending:
        done = _run_coroutine(_gather([results[i] for i in pending]))
        for i, value in zip(pending, done):
            results[i] = value
    return [validate_reward_output(reward_name(f), r, n) for f, r in zip(funcs, results)]


async def _await(awaitable):
    return await awaitable


async def _gather(awaitables):
    return await asyncio.gather(*awaitables)


def _run_coroutine(coroutine):
    """``asyncio.run``, or — when called from inside a running loop (a notebook) — on a private loop in a thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
