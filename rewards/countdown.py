"""``countdown``: does the completion's expression use each given number exactly once and equal the target?
(The Countdown task of d1 / TinyZero: 1.0 correct, 0.1 for an answer that is wrong or uses the wrong numbers, 0 for
no answer.)

The expression is the last ``<answer>…</answer>``, else the last ``\\boxed{…}``, else the text after ``</think>``.
It is model output, so it is never evaluated as Python: it is parsed with ``ast`` and only integer literals, ``+ - *
/``, unary minus and parentheses are computed, exactly, with ``fractions.Fraction`` (no powers, so no huge numbers;
at most ``MAX_EXPRESSION_CHARS`` characters).
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

from .extract import answer_region
from .inputs import is_pil_image
from .registry import completion_text, register_reward

CORRECT_REWARD = 1.0
FORMAT_REWARD = 0.1  # an expression was given, but it is wrong or uses other numbers
MAX_EXPRESSION_CHARS = 200
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_ALLOWED = re.compile(r"[0-9+\-*/×÷() .]+")


def countdown_expression(text: str) -> str | None:
    """The candidate expression of a completion, with ``×``/``÷`` read as ``*``/``/`` and a trailing ``= target``
    dropped; None if there is none."""
    found = answer_region(text)
    if found is None:
        return None
    return found.strip().split("=")[0].replace("×", "*").replace("÷", "/").strip() or None


def _value(node) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _value(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"not allowed in a Countdown expression: {type(node).__name__}")


def evaluate_expression(expression: str) -> tuple[Fraction, list[int]] | None:
    """(exact value, integer literals used) of an arithmetic expression, or None if it is not one (or divides by 0)."""
    if len(expression) > MAX_EXPRESSION_CHARS or not _ALLOWED.fullmatch(expression):
        return None
    try:
        tree = ast.parse(expression, mode="eval")
        value = _value(tree.body)
    except (SyntaxError, ValueError, ZeroDivisionError, RecursionError):
        return None
    numbers = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    return value, numbers


def countdown_score(text: str, numbers, target) -> float:
    expression = countdown_expression(text)
    if expression is None:
        return 0.0
    evaluated = evaluate_expression(expression)
    if evaluated is None:
        return FORMAT_REWARD
    value, used = evaluated
    correct = sorted(used) == sorted(int(n) for n in numbers) and value == Fraction(int(target))
    return CORRECT_REWARD if correct else FORMAT_REWARD


@register_reward("countdown")
def countdown(prompts=None, completions=(), numbers=None, target=None, **kwargs) -> list[float | None]:
    """1.0 if the answer uses every number of the ``numbers`` column once and equals ``target``; 0.1 if an
    expression is given but wrong; 0 if none (None for an image or a row without numbers/target)."""
    if numbers is None or target is None:
        raise ValueError("countdown needs the dataset columns 'numbers' and 'target' (the Countdown adapter adds them)")
    return [
        None if is_pil_image(c) or n is None or t is None else countdown_score(completion_text(c), n, t)
        for c, n, t in zip(completions, numbers, target, strict=True)
    ]


countdown.required_columns = ("numbers", "target")
countdown.correct_threshold = CORRECT_REWARD  # `unigrpo eval` counts an answer correct at 1.0, not at 0.1
