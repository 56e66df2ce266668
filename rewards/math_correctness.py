"""``math_correctness``: is the final answer mathematically equal to the reference? (MMaDA: correct = 2.0)

The answer is extracted (last ``\\boxed{}``, ``<answer>`` tag, or text after ``</think>``) and compared with the
reference symbolically by math-verify with LaTeX parsing only (latex2sympy): integers, decimals, fractions,
``\\frac``/``\\sqrt``/``\\pi``, percentages, simple units, sets and tuples. Model output is never evaluated as Python:
math-verify's plain-expression mode calls sympy's ``parse_expr`` (which ``eval``s), so it is not used. Plain numbers
are compared exactly in-process (the common case, no sympy); everything else runs in a time-limited child process.
"""

from __future__ import annotations

import re
from fractions import Fraction

from .extract import extract_answer
from .registry import completion_text, register_reward
from .sandbox import TimeLimitedWorker

_PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")  # anchored by fullmatch; linear


def _plain_number(text: str) -> Fraction | None:
    text = text.strip().replace(",", "") if len(text) < 64 else text
    return Fraction(text) if _PLAIN_NUMBER.fullmatch(text) else None


def symbolic_equal(prediction: str, reference: str) -> bool:
    """math-verify on LaTeX-only parses (runs in the child process)."""
    import logging

    from math_verify import LatexExtractionConfig, parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # the time limit is ours: silence its warning
    config = [LatexExtractionConfig(try_extract_without_anchor=True)]
    gold = parse(f"${reference}$", extraction_config=config, parsing_timeout=None)
    pred = parse(f"${prediction}$", extraction_config=config, parsing_timeout=None)
    return bool(gold and pred and verify(gold, pred, timeout_seconds=None))


_worker = TimeLimitedWorker(symbolic_equal)


def answers_match(prediction: str, reference: str, timeout_s: float = 2.0) -> bool:
    """Exact for plain numbers; symbolic with a hard ``timeout_s`` otherwise (a timeout counts as wrong)."""
    a, b = _plain_number(prediction), _plain_number(str(reference))
    if a is not None and b is not None:
        return a == b
    try:
        return bool(_worker(prediction, str(reference), timeout=timeout_s))
    except (TimeoutError, ValueError):
        return False


def make_math_correctness(
    answer_column: str = "answer",
    correct_reward: float = 2.0,
    extract=("boxed", "answer_tag", "after_think"),
    timeout_s: float = 2.0,
):
    """A ``math_correctness`` reward with another reference column, reward value, extraction order or time limit."""

    def math_correctness(prompts, completions, **kwargs) -> list[float | None]:
        if answer_column not in kwargs:
            raise ValueError(f"math_correctness needs the dataset column {answer_column!r}; got {sorted(kwargs)}")
        scores: list[float | None] = []
        for completion, reference in zip(completions, kwargs[answer_column]):
            if reference is None:
                scores.append(None)
                continue
            answer = extract_answer(completion_text(completion), extract)
            correct = answer is not None and answers_match(answer, str(reference), timeout_s)
            scores.append(correct_reward if correct else 0.0)
        return scores

    return math_correctness


math_correctness = register_reward("math_correctness")(make_math_correctness())
