"""``math_correctness``: is the completion's final answer mathematically equal to the reference? (MMaDA §2.3 and
Appendix: correct = 2.0, otherwise 0.)

1. Extract the answer (``rewards.extract``): the last balanced ``\\boxed{}``, else an ``<answer>`` tag, else the text
   after ``</think>`` (order configurable). No answer → 0.
2. Compare it with the reference (dataset column ``answer``): identical strings and plain numbers in-process (exact,
   no sympy — the common case); everything else symbolically with math-verify in a child process with a hard time
   limit per comparison (``rewards.math_worker``). A timeout counts as wrong. Model output is never evaluated as
   Python: it is parsed as LaTeX only.

What math-verify accepts: integers, decimals, fractions, ``\\frac``/``\\sqrt``/``\\pi``, percentages (``50\\%`` =
0.5), ``1,000``, simple units (``10\\text{ cm}``), sets, tuples and intervals.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from .extract import DEFAULT_ORDER, braces_balanced, check_extractors, extract_answer, reference_answer
from .math_worker import shared_worker
from .inputs import is_pil_image
from .registry import completion_text, register_reward

CORRECT_REWARD = 2.0  # MMaDA: correctness 2.0 (+ format 0.5)
TIMEOUT_S = 0.5  # per symbolic comparison; typical ones take 1–6 ms, so hostile input stays under 1 s
MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers: wrong without parsing

_PLAIN_NUMBER = re.compile(r"-?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?")  # fullmatch only; linear
_INTEGER = r"-?[0-9]{1,18}"
# Exact rationals written without decimals: \frac{p}{q}, \dfrac{p}{q}, -\frac{p}{q}, p/q (fullmatch; linear).
# Percentages go to math-verify, which also accepts "50" for "50\%".
_LATEX_FRACTION = re.compile(rf"(-?)\\d?frac\{{({_INTEGER})\}}\{{({_INTEGER})\}}")
_SLASH_FRACTION = re.compile(rf"({_INTEGER})/({_INTEGER})")


def _plain_number(text: str) -> Fraction | None:
    if len(text) > 40 or not _PLAIN_NUMBER.fullmatch(text):
        return None
    return Fraction(text.replace(",", ""))


def _exact_rational(text: str) -> Fraction | None:
    """An integer or a fraction written exactly (no decimals) → its value; else None."""
    if len(text) > 60:
        return None
    if re.fullmatch(_INTEGER, text):
        return Fraction(int(text))
    if m := _LATEX_FRACTION.fullmatch(text):
        sign, p, q = m.groups()
        return None if int(q) == 0 else Fraction(int(p), int(q)) * (-1 if sign else 1)
    if m := _SLASH_FRACTION.fullmatch(text):
        return None if int(m.group(2)) == 0 else Fraction(int(m.group(1)), int(m.group(2)))
    return None


def answers_match(
    prediction: str, reference: str, timeout_s: float = TIMEOUT_S, max_chars: int = MAX_ANSWER_CHARS
) -> bool:
    """Is the extracted ``prediction`` equal to the ``reference`` answer?

    Identical strings → True; two plain numbers → exact comparison (an unequal pair goes on to math-verify unless
    both are integers, so that verdicts agree with math-verify's rounding of decimals); otherwise math-verify in the
    worker, with ``timeout_s`` (a timeout → False). Exact rationals on both sides (integers, ``\\frac{p}{q}``, ``p/q``)
    are compared exactly in-process. Unequal answers longer than ``max_chars`` → False.
    """
    prediction, reference = prediction.strip(), reference.strip()
    if not prediction or not reference:
        return False
    if prediction == reference:
        return True
    if len(prediction) > max_chars or len(reference) > max_chars:
        return False
    x, y = _exact_rational(prediction), _exact_rational(reference)
    if x is not None and y is not None:
        return x == y  # both exact rationals: the verdict is exact, no sympy needed
    a, b = _plain_number(prediction), _plain_number(reference)
    if a is not None and b is not None:
        if a == b:
            return True
        if a.denominator == b.denominator == 1 and "." not in prediction + reference:
            return False
    if not (braces_balanced(prediction) and braces_balanced(reference)):
        return False  # would break out of the \boxed{} the worker wraps it in
    return shared_worker().equivalent(reference, prediction, timeout_s) is True


def make_math_correctness(
    answer_column: str = "answer",
    correct_reward: float = CORRECT_REWARD,
    extract=DEFAULT_ORDER,
    timeout_s: float = TIMEOUT_S,
    max_answer_chars: int = MAX_ANSWER_CHARS,
):
    """A ``math_correctness`` reward with another reference column, reward value, extraction order or time limit.

    answer_column: dataset column holding the reference answer (``None``/blank in a row → ``None``, not applicable).
    correct_reward: value for a correct answer (2.0 in MMaDA); wrong, missing or timed-out answers get 0.
    extract: extractors tried in order, from ``rewards.extract.EXTRACTORS``: ``boxed``, ``answer_tag``,
        ``after_think``, ``last_number``.
    timeout_s: hard limit per symbolic comparison, in seconds.
    """
    order = check_extractors(extract)
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    if not math.isfinite(correct_reward):
        raise ValueError(f"correct_reward must be finite, got {correct_reward!r}")

    def math_correctness(prompts=None, completions=(), **kwargs) -> list[float | None]:
        """``correct_reward`` (2.0) if the final answer (``\\boxed{}`` first) equals the ``answer`` column, checked
        symbolically by math-verify; else 0 (None for an image or a row without a reference)."""
        if answer_column not in kwargs:
            raise ValueError(
                f"math_correctness needs the dataset column {answer_column!r} (the reference answer); "
                f"columns given: {sorted(kwargs)}"
            )
        scores: list[float | None] = []
        verdicts: dict[tuple[str, str], bool] = {}  # the G answers of one prompt often repeat: check each pair once
        for completion, reference in zip(completions, kwargs[answer_column], strict=True):
            reference = reference_answer(reference)
            if reference is None or is_pil_image(completion):  # no reference, or a t2i image: not applicable
                scores.append(None)
                continue
            answer = extract_answer(completion_text(completion), order)
            if answer is not None and (answer, reference) not in verdicts:
                verdicts[(answer, reference)] = answers_match(answer, reference, timeout_s, max_answer_chars)
            correct = answer is not None and verdicts[(answer, reference)]
            scores.append(float(correct_reward) if correct else 0.0)
        return scores

    math_correctness.required_columns = (answer_column,)  # checked by `unigrpo check` before any model loads
    return math_correctness


math_correctness = register_reward("math_correctness")(make_math_correctness())
