"""``exact_answer``: 1.0 when the completion, stripped of surrounding whitespace, is exactly the gold ``answer``.

For tasks whose answer is a long string with no mathematical form, such as the built-in ``copy`` task's 64–200
digits: ``math_correctness`` parses numbers and would compare a 200-digit string as a float (docs/design.md §6).
"""

from __future__ import annotations

from .inputs import is_pil_image
from .registry import completion_text, register_reward

EXACT_REWARD = 1.0


@register_reward("exact_answer")
def exact_answer(prompts=None, completions=(), answer=(), **kwargs) -> list[float]:
    """1.0 if ``completion.strip() == answer`` (character for character), else 0 (None for an image)."""
    return [None if is_pil_image(c) else EXACT_REWARD if completion_text(c).strip() == str(gold).strip() else 0.0
            for c, gold in zip(completions, answer, strict=True)]


exact_answer.required_columns = ("answer",)  # checked by `unigrpo check` before any model loads
exact_answer.correct_threshold = EXACT_REWARD
