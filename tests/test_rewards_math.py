"""rewards.math_correctness / extract / math_worker: golden verdicts, extraction, time limits, no Python eval."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

from rewards import get_reward  # noqa: E402
from rewards.extract import (  # noqa: E402
    answer_in_text,
    braces_balanced,
    extract_answer,
    last_boxed,
    last_inline_math,
    last_number,
    reference_answer,
)
from rewards.math_correctness import answers_match, make_math_correctness  # noqa: E402
from rewards.math_worker import MathWorker, equivalent, shared_worker  # noqa: E402


def score(completions, answers, reward=None):
    reward = reward or get_reward("math_correctness")
    return reward(prompts=["q"] * len(completions), completions=completions, answer=answers)


@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("so \\boxed{\\frac{1}{2}}", "0.5", 2.0),
        ("\\boxed{3}", "4", 0.0),
        ("\\boxed{-12}", "-12", 2.0),
        ("\\boxed{12}", "-12", 0.0),
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", 2.0),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt3}{2}", 2.0),  # nested braces
        ("\\boxed{\\sqrt{4}}", "2", 2.0),
        ("\\boxed{2\\pi}", "\\pi \\cdot 2", 2.0),
        ("\\boxed{3.50}", "3.5", 2.0),
        ("\\boxed{0.3333333}", "\\frac13", 2.0),  # math-verify rounds decimals
        ("\\boxed{50\\%}", "0.5", 2.0),  # percentages
        ("\\boxed{0.5}", "50\\%", 2.0),
        ("\\boxed{50\\%}", "50\\%", 2.0),
        ("\\boxed{1,000}", "1000", 2.0),
        ("\\boxed{10\\text{ cm}}", "10", 2.0),  # simple units
        ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", 2.0),  # sets
        ("\\boxed{(1,2)}", "(1, 2)", 2.0),
        ("\\boxed{(1,2)}", "(2, 1)", 0.0),
        ("\\boxed{3} then \\boxed{4}", "4", 2.0),  # the last box counts
        ("\\boxed{3} then \\boxed{4}", "3", 0.0),
        ("<answer>12</answer>", "12", 2.0),  # answer tag
        ("<answer>The total is 12 apples.</answer>", "12", 2.0),
        ("<think>7 + 5</think> The answer is 12.", "12", 2.0),  # after </think>
        ("<think>a</think> so $\\frac{1}{2}$.", "0.5", 2.0),
        ("<think>a</think> x = \\frac{1}{2}", "x=0.5", 2.0),
        ("no answer here: 12", "12", 0.0),  # nothing extractable by default
        ("\\boxed{4", "4", 0.0),  # unbalanced
        ("\\boxed{}", "4", 0.0),
        ("The answer is \\boxed{13}", "#### 13", 2.0),  # GSM8K-style reference
        ("\\boxed{x}", "Let $x$ be it, so \\boxed{5}", 0.0),  # MATH-style reference solution
        ("\\boxed{5}", "Let $x$ be it, so \\boxed{5}", 2.0),
        ("<answer>\\text{Monday}</answer>", "\\text{Monday}", 2.0),
    ],
)
def test_golden_verdicts(completion, answer, expected):
    assert score([completion], [answer]) == [expected]


def test_conversational_completions_and_missing_references():
    completions = [[{"role": "assistant", "content": "\\boxed{5}"}], "\\boxed{5}", "\\boxed{5}", "\\boxed{5}"]
    assert score(completions, ["5", None, "  ", 5]) == [2.0, None, None, 2.0]


def test_factory_options():
    reward = make_math_correctness(answer_column="solution", correct_reward=1.0)
    assert reward(prompts=["q"], completions=["\\boxed{2}"], solution=["2"]) == [1.0]
    with pytest.raises(ValueError, match="'solution'"):
        reward(prompts=["q"], completions=["\\boxed{2}"], answer=["2"])
    tagged_first = make_math_correctness(extract=("answer_tag", "boxed"))
    completion = "<answer>5</answer> \\boxed{6}"
    assert score([completion], ["5"]) == [0.0] and score([completion], ["5"], tagged_first) == [2.0]
    assert score(["the answer: 12"], ["12"], make_math_correctness(extract="last_number")) == [2.0]
    with pytest.raises(ValueError, match="extractor"):
        make_math_correctness(extract=("regex",))
    with pytest.raises(ValueError, match="timeout_s"):
        make_math_correctness(timeout_s=0)
    with pytest.raises(ValueError):  # one reference per completion
        score(["\\boxed{1}", "\\boxed{1}"], ["1"])


def test_extraction():
    assert last_boxed("a \\boxed{1} b \\boxed{\\frac{1}{\\sqrt{2}}} c") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\boxed{\\boxed{3}}") == "\\boxed{3}"  # the outer box closes last
    assert last_boxed("\\boxed{2} \\boxed{3") == "2"  # an unclosed box is skipped
    assert last_boxed("\\boxed{\\{1,2\\}}") == "\\{1,2\\}"  # escaped braces are not group braces
    assert last_boxed("\\boxed {7}") == "7" and last_boxed("\\boxed{ } \\boxed{8} \\boxed{}") == "8"
    assert last_boxed("no box {here}") is None
    assert braces_balanced("\\frac{1}{2}") and not braces_balanced("}{") and braces_balanced("\\{")
    assert extract_answer("<answer> 3 </answer> \\boxed{4}") == "4"
    assert extract_answer("<answer> 3 </answer> \\boxed{4}", ("answer_tag", "boxed")) == "3"
    assert extract_answer("<think>\\boxed{1}</think> 2", ("after_think",)) == "2"
    assert extract_answer("<answer></answer>") is None and extract_answer("") is None
    assert last_number("-3, then 1,000.5 and 7%.") == "7%" and last_number("none") is None
    assert last_inline_math("$a$ and $$b$$ and \\(c\\) end") == "c"
    assert last_inline_math("costs \\$5 and $x+1$") == "x+1" and last_inline_math("$unclosed") is None
    assert answer_in_text("x = \\frac{1}{2}") == "x = \\frac{1}{2}"
    assert answer_in_text("The answer is 42 apples") == "42"
    assert answer_in_text("It is \\text{Monday}.") == "It is \\text{Monday}."  # no number: math-verify decides
    assert reference_answer("steps...\n#### 1,234") == "1,234" and reference_answer(7) == "7"
    assert reference_answer(None) is None and reference_answer("Monday") == "Monday"


def test_fast_path_agrees_with_math_verify():
    """Strings and plain numbers are judged in-process; the verdict must be math-verify's."""
    pairs = [("12", "12"), ("12", "13"), ("-12", "12"), ("0.50", "0.5"), ("1,000", "1000"), ("3.0", "3"),
             ("0.333333", "0.3333333"), ("007", "7"), ("2.5", "2.50001"), ("\\pi", "\\pi")]
    for prediction, reference in pairs:
        assert answers_match(prediction, reference) == equivalent(reference, prediction), (prediction, reference)


def test_exponent_towers_and_factorials_time_out_and_score_zero():
    worker = shared_worker()
    worker.equivalent("1", "1", 5.0)  # start-up is not what is timed here
    restarts = worker.restarts
    hostile = ["\\boxed{2^{2^{2^{2^{99}}}}}", "\\boxed{99999!}", "\\boxed{10^{10^{10}}}", "\\boxed{(10^{10^{10}})!}"]
    start = time.perf_counter()
    assert score(hostile, ["3"] * len(hostile)) == [0.0] * len(hostile)
    assert time.perf_counter() - start < 4 * (1.0 + 0.5) + 1  # at most timeout_s (+ kill grace) each
    assert worker.restarts == restarts  # the child's own timer stopped them: no kill needed
    fast = make_math_correctness(timeout_s=0.2)
    start = time.perf_counter()
    assert score(["\\boxed{2^{2^{2^{2^{99}}}}}"], ["3"], fast) == [0.0]
    assert time.perf_counter() - start < 1.0
    assert score(["\\boxed{\\frac{3}{6}}"], ["0.5"]) == [2.0]  # the worker is still good


def test_huge_and_hostile_completions_score_zero_quickly():
    hostile = [
        "\\boxed{" + "1" * 1_000_000 + "}",  # 1 MB answer: too long to be one, not parsed
        "<think>x</think>" + "9" * 200_000,
        "\\boxed{" * 100_000,
        "\\boxed{" + "\\frac{" * 10_000 + "1" + "}" * 10_001,
        "\\boxed{1\x002}",
        "\\boxed{\ud800}",
        "\\boxed{\uff11\uff12}",  # full-width look-alike digits
        "",
    ]
    start = time.perf_counter()
    assert score(hostile, ["12"] * len(hostile)) == [0.0] * len(hostile)
    assert time.perf_counter() - start < 3.0


def test_worker_is_killed_when_it_cannot_be_interrupted():
    """A computation stuck in C ignores the child's own timer: the parent kills it and starts a fresh one."""
    worker = MathWorker(kill_grace_s=0.2)
    try:
        assert worker.equivalent("\\frac12", "0.5", 5.0) is True
        stuck = worker.pid
        os.kill(stuck, signal.SIGSTOP)  # frozen: its timer cannot fire, it cannot answer
        start = time.perf_counter()
        assert worker.equivalent("\\frac12", "0.5", 0.2) is None
        assert time.perf_counter() - start < 1.0 and worker.timeouts == 1 and worker.restarts == 1
        assert worker.equivalent("\\frac12", "0.5", 5.0) is True and worker.pid != stuck
    finally:
        worker.close()


def test_a_worker_that_cannot_start_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="did not start"):
        MathWorker(startup_timeout_s=10).equivalent("1", "2", 1.0)


def test_no_python_evaluation_of_model_output(tmp_path):
    target = tmp_path / "pwned_unigrpo"
    payloads = [
        f"\\boxed{{__import__('os').system('touch {target}')}}",
        f"<answer>__import__('os').system('touch {target}')</answer>",
        f"<think>x</think> __import__('os').system('touch {target}')",
        f"\\boxed{{open('{target}', 'w')}}",
        f"\\boxed{{eval(\"__import__('os').system('touch {target}')\")}}",
        f"<think>x</think> $exec(\"open('{target}','w')\")$",
    ]
    # (a reference no number in the temporary path can equal: prose answers are judged by their last number)
    assert score(payloads, ["\\sqrt{2}"] * len(payloads)) == [0.0] * len(payloads)
    assert score(payloads, ["x"] * len(payloads)) == [0.0] * len(payloads)
    assert not target.exists()


def test_sympy_parse_expr_only_ever_sees_digits(monkeypatch, tmp_path):
    """The in-process check behind the worker: sympy's eval-based parser is reached only through
    ``Number("123")`` (latex2sympy's numerals), never with text from the model."""
    import latex2sympy2_extended.latex2sympy2 as l2s
    import math_verify.parser
    import sympy
    import sympy.parsing.sympy_parser as sympy_parser

    seen = []
    original = sympy_parser.parse_expr

    def spy(text, *args, **kwargs):
        seen.append(text)
        return original(text, *args, **kwargs)

    for module in (sympy_parser, math_verify.parser, l2s):
        monkeypatch.setattr(module, "parse_expr", spy)
    sympy.sympify("1+1")
    assert seen == ["1+1"]  # the spy sees sympify's calls
    seen.clear()

    target = tmp_path / "pwned"
    pairs = [("1", f"__import__('os').system('touch {target}')"), ("2", "open('x','w').write('y')"),
             ("\\frac{1}{2}", "0.5"), ("x^2+1", "1+x^{2}"), ("\\{1,2\\}", "\\{2,1\\}"), ("50\\%", "0.5")]
    for reference, prediction in pairs:
        equivalent(reference, prediction)
    assert seen and all(re.fullmatch(r"[0-9.]+", text) for text in seen), seen
    assert not target.exists()
