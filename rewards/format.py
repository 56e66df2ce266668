"""Format rewards (MMaDA: 0.5): pure, linear-time string checks of the completion's shape."""

from __future__ import annotations

from .extract import last_boxed
from .registry import completion_text, register_reward

FORMAT_REWARD = 0.5


def has_think_format(text: str) -> bool:
    """``<think>…</think>`` at the start (after whitespace), then a non-empty answer."""
    text = text.lstrip()
    if not text.startswith("<think>"):
        return False
    end = text.find("</think>", len("<think>"))
    return end != -1 and bool(text[end + len("</think>") :].strip())


@register_reward("think_format")
def think_format(prompts, completions, **kwargs) -> list[float]:
    """0.5 if the completion is ``<think>…</think>`` followed by an answer, else 0."""
    return [FORMAT_REWARD if has_think_format(completion_text(c)) else 0.0 for c in completions]


@register_reward("boxed_format")
def boxed_format(prompts, completions, **kwargs) -> list[float]:
    """0.5 if the completion contains a balanced, non-empty ``\\boxed{…}``, else 0."""
    scores = []
    for c in completions:
        content = last_boxed(completion_text(c))
        scores.append(FORMAT_REWARD if content is not None and content.strip() else 0.0)
    return scores
