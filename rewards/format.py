"""Format rewards (MMaDA §2.3: 0.5 for ``<think>…</think>`` followed by the answer): pure string checks, linear in
the length of the completion (``str.find``/``count`` and the one-pass brace scan of ``rewards.extract``)."""

from __future__ import annotations

from .extract import boxed_spans
from .inputs import is_pil_image
from .registry import completion_text, register_reward

FORMAT_REWARD = 0.5


def has_think_format(text: str) -> bool:
    """One ``<think>…</think>`` block at the start (after whitespace), then a non-blank answer.

    As in TRL's ``think_format_reward``, the thinking itself may be empty; a second ``<think>`` or ``</think>`` fails.
    """
    text = text.lstrip()
    if not text.startswith("<think>") or text.count("<think>") != 1 or text.count("</think>") != 1:
        return False
    end = text.find("</think>")
    return bool(text[end + len("</think>") :].strip())


def has_boxed_answer(text: str) -> bool:
    """A balanced ``\\boxed{…}`` with non-blank content somewhere in the text."""
    return any(text[start:end].strip() for start, end in boxed_spans(text))


@register_reward("think_format")
def think_format(prompts=None, completions=(), **kwargs) -> list[float]:
    """0.5 if the completion is ``<think>…</think>`` followed by an answer, else 0 (None for an image)."""
    return [None if is_pil_image(c) else FORMAT_REWARD if has_think_format(completion_text(c)) else 0.0
            for c in completions]


@register_reward("boxed_format")
def boxed_format(prompts=None, completions=(), **kwargs) -> list[float]:
    """0.5 if the completion contains a balanced, non-empty ``\\boxed{…}``, else 0 (None for an image)."""
    return [None if is_pil_image(c) else FORMAT_REWARD if has_boxed_answer(completion_text(c)) else 0.0
            for c in completions]
