"""math_correctness agrees with math-verify's own verdicts (issue #4, "Targets"): a table of 70 equivalence cases —
fractions, decimals, LaTeX, percentages, thousands separators — each asserted three ways: the verdict written in the
table, math-verify used directly as its README shows (``verify(parse(gold), parse(completion))`` with its default
extraction configs, in this process), and the ``math_correctness`` reward (extraction, in-process fast path for
plain numbers, the sandboxed math-verify worker).

Where math-verify's verdict is not the mathematical one, the table follows math-verify and says so (``e^{i\\pi}``,
``1\\,000``): the target is agreement with it. The table's strings are trusted test data, so calling math-verify's
default ``parse`` (which evaluates plain expressions with sympy's ``parse_expr``) on them here is safe; the reward
itself never does that with model output.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import logging  # noqa: E402

import pytest  # noqa: E402

from rewards import get_reward  # noqa: E402
from rewards.math_correctness import answers_match  # noqa: E402

T, F = True, False

CASES = [  # (the model's final answer, the reference answer, equal?)
    # fractions
    ("\\frac{1}{2}", "0.5", T),
    ("\\frac{2}{4}", "\\frac{1}{2}", T),
    ("1/2", "\\frac{1}{2}", T),
    ("\\dfrac{3}{4}", "0.75", T),
    ("\\tfrac{3}{4}", "\\frac34", T),
    ("\\frac{1}{3}", "0.33", F),
    ("0.3333333", "\\frac{1}{3}", T),  # math-verify rounds decimals to 6 places
    ("-\\frac{1}{2}", "\\frac{-1}{2}", T),
    ("\\frac{1}{2}", "\\frac{1}{3}", F),
    ("2\\frac{1}{3}", "\\frac{7}{3}", T),  # mixed number
    ("\\frac{10}{4}", "2.5", T),
    ("\\frac{6}{8}", "75\\%", T),
    ("3/4", "0.75", T),
    ("\\frac{1}{2}", "2", F),
    ("\\frac{3}{2}", "1.5", T),
    # decimals
    ("0.5", "0.50", T),
    ("3.14", "\\pi", F),
    ("3.0", "3", T),
    (".5", "0.5", T),
    ("1.25", "\\frac{5}{4}", T),
    ("0.1", "0.01", F),
    ("1,000.5", "1000.5", T),
    ("2.50", "2.5", T),
    ("-0.75", "-\\frac{3}{4}", T),
    ("0.333", "\\frac{1}{3}", F),
    ("1000.0", "1000", T),
    ("0.125", "\\frac18", T),
    ("2.5", "2.6", F),
    ("0.1", "\\frac{1}{10}", T),
    # LaTeX
    ("\\sqrt{4}", "2", T),
    ("\\sqrt{8}", "2\\sqrt{2}", T),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", T),
    ("\\frac{1}{\\sqrt{2}}", "\\frac{\\sqrt{2}}{2}", T),
    ("2\\pi", "\\pi \\cdot 2", T),
    ("\\pi", "3.14159", F),
    ("\\sqrt{3}", "1.732", F),
    ("x^2+2x+1", "(x+1)^2", T),
    ("e^{i\\pi}", "-1", F),  # math-verify does not simplify Euler's identity
    ("\\log_2 8", "3", T),
    ("\\binom{5}{2}", "10", T),
    ("5!", "120", T),
    ("2^{10}", "1024", T),
    ("\\sqrt[3]{27}", "3", T),
    ("\\left(1, 2\\right)", "(1,2)", T),
    ("\\{1,2,3\\}", "\\{3,2,1\\}", T),
    ("[0, 1)", "[0,1]", F),
    ("x = 5", "5", T),
    ("10\\text{ cm}", "10", T),
    ("\\sin\\frac{\\pi}{6}", "\\frac12", T),
    ("\\cos(0)", "1", T),
    ("\\sqrt{2}", "\\sqrt{3}", F),
    ("\\frac{\\pi}{2}", "\\frac{\\pi}{3}", F),
    ("(1,2)", "(2,1)", F),
    # percentages
    ("50\\%", "0.5", T),
    ("50\\%", "\\frac{1}{2}", T),
    ("25\\%", "0.25", T),
    ("12.5\\%", "\\frac{1}{8}", T),
    ("50", "50\\%", T),  # math-verify accepts the number without its percent sign
    ("5\\%", "0.5", F),
    ("100\\%", "1", T),
    ("0.5\\%", "0.005", T),
    ("75 \\%", "\\frac{3}{4}", T),
    ("20\\%", "0.3", F),
    # integers and thousands separators (the reward's in-process fast path)
    ("1,000", "1000", T),
    ("1{,}000", "1000", T),
    ("1\\,000", "1000", F),  # math-verify does not read a thin space as a thousands separator
    ("007", "7", T),
    ("-12", "12", F),
    ("10^{3}", "1000", T),
    ("12", "13", F),
]


def completion_for(answer: str) -> str:
    return f"The answer is $\\boxed{{{answer}}}$."


def math_verify_verdict(prediction: str, reference: str) -> bool:
    """math-verify as its README uses it: gold and completion text, default extraction configs."""
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return bool(verify(parse(f"${reference}$"), parse(completion_for(prediction))))


def test_the_table_is_big_enough_and_covers_each_kind():
    assert len(CASES) >= 50 and len(set((p, r) for p, r, _ in CASES)) == len(CASES)
    assert sum(e for *_, e in CASES) >= 25 and sum(not e for *_, e in CASES) >= 15  # both verdicts well represented
    assert sum("\\%" in p + r for p, r, _ in CASES) >= 10 and sum("frac" in p + r for p, r, _ in CASES) >= 10


@pytest.mark.parametrize("prediction,reference,expected", CASES)
def test_math_correctness_agrees_with_math_verify(prediction, reference, expected):
    assert math_verify_verdict(prediction, reference) is expected, "the table disagrees with math-verify"
    assert answers_match(prediction, reference) is expected
    reward = get_reward("math_correctness")
    assert reward(prompts=["q"], completions=[completion_for(prediction)], answer=[reference]) == [
        2.0 if expected else 0.0
    ]
