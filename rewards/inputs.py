"""What the image-aware rewards share: telling a PIL image apart without importing PIL, the caption of a prompt,
and reading a reward factory's arguments from ``UNIGRPO_<REWARD>_<ARGUMENT>`` environment variables.

No torch, no PIL imported here.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Mapping

from .registry import completion_text


def is_pil_image(obj) -> bool:
    """A PIL image — checked without importing PIL (if PIL was never imported, nothing can be one)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def caption_text(prompt) -> str:
    """The caption a prompt asks for: the text itself, or the last user message of a conversational prompt."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, dict):
        prompt = [prompt]
    if isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role", "user") == "user"]
        if users:
            return completion_text([{"role": "assistant", "content": users[-1].get("content", "")}])
        return ""
    raise TypeError(f"a prompt must be text or a list of messages, got {type(prompt).__name__}")


def parse_flag(value: str) -> bool:
    """1/true/yes (any case) → True; anything else → False."""
    return value.strip().lower() in ("1", "true", "yes")


def parse_json_or_file(value: str):
    """Inline JSON (``{...}``) or the path of a JSON file."""
    if value.lstrip().startswith("{"):
        return json.loads(value)
    with open(value, encoding="utf-8") as f:
        return json.load(f)


def settings_from_env(prefix: str, factory: Callable, parsers: Mapping[str, Callable[[str], object]],
                      environ: Mapping[str, str]) -> dict:
    """Keyword arguments of ``factory`` from ``<prefix><ARGUMENT>`` variables; unset or empty ones are left out.

    ``parsers`` maps an argument name to the function turning its string into a value; others stay strings.
    """
    settings = {}
    for name in inspect.signature(factory).parameters:
        value = environ.get(prefix + name.upper())
        if value is None or value == "":
            continue
        settings[name] = parsers[name](value) if name in parsers else value
    return settings
