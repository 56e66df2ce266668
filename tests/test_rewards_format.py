"""rewards.format: golden verdicts and linear time on adversarial completions."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import time  # noqa: E402

import pytest  # noqa: E402

from rewards import get_reward  # noqa: E402
from rewards.extract import EXTRACTORS, answer_in_text, last_inline_math  # noqa: E402


def run(name, completions):
    return get_reward(name)(prompts=["q"] * len(completions), completions=completions)


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("<think>a</think>\\boxed{1}", 0.5),
        ("  <think>\nsteps\n</think>\n42", 0.5),
        ("<think></think> 42", 0.5),  # empty thinking is allowed (as TRL's think_format_reward)
        ("<think>a</think>", 0.0),  # no answer
        ("<think>a</think>   \n", 0.0),
        ("answer <think>a</think> 42", 0.0),  # must start with it
        ("<think>a</think><think>b</think> 42", 0.0),
        ("<think>a</think> 42 </think>", 0.0),
        ("<think>a 42", 0.0),
        ("</think> 42", 0.0),
        ("plain 42", 0.0),
        ("", 0.0),
    ],
)
def test_think_format(completion, expected):
    assert run("think_format", [completion]) == [expected]


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("\\boxed{1}", 0.5),
        ("so \\boxed{\\frac{1}{2}} done", 0.5),
        ("\\boxed {2}", 0.5),
        ("\\boxed{\\{1,2\\}}", 0.5),
        ("\\boxed{} and \\boxed{3}", 0.5),
        ("\\boxed{}", 0.0),
        ("\\boxed{  }", 0.0),
        ("\\boxed{1", 0.0),
        ("\\boxed{1\\}", 0.0),  # \} does not close
        ("\\boxed{\\{1}", 0.5),  # valid LaTeX: a literal brace inside
        ("\\boxed1", 0.0),
        ("\\fbox{1}", 0.0),
        ("{1}", 0.0),
        ("", 0.0),
    ],
)
def test_boxed_format(completion, expected):
    assert run("boxed_format", [completion]) == [expected]


def test_conversational_completions():
    completions = [
        [{"role": "assistant", "content": "<think>a</think> \\boxed{1}"}],
        [{"role": "assistant", "content": ""}],
    ]
    assert run("think_format", completions) == [0.5, 0.0]
    assert run("boxed_format", completions) == [0.5, 0.0]


N = 100_000
PATTERNS = [  # (unit, repetitions at full size, tail): the text is unit * repetitions + tail
    ("<think>", N // 7, ""),
    ("</think>", N // 8, "x"),
    ("\\boxed{", N // 7, ""),
    ("{", N, "}"),
    ("\\{", N // 2, "}"),
    ("\\", N, "{"),
    ("$", N, ""),
    ("$a", N // 2, ""),
    ("\\(", N // 2, "\\)"),
    ("1,", N // 2, ""),
    ("-", N, "1"),
    ("<answer>", N // 8, "</answer>"),
    ("a", N, "\\boxed{"),
]


def all_checks(text: str) -> None:
    run("think_format", [text])
    run("boxed_format", [text])
    for extractor in EXTRACTORS.values():
        extractor(text)
    answer_in_text(text)
    last_inline_math(text)


@pytest.mark.parametrize("unit,reps,tail", PATTERNS)
def test_checks_are_linear_time_on_adversarial_completions(unit, reps, tail):
    for scale, limit_s in ((10, 0.5), (1, 2.0)):  # ~5 ms and ~50 ms here; a quadratic scan fails at a tenth
        text = unit * (reps // scale) + tail
        start = time.perf_counter()
        all_checks(text)
        elapsed = time.perf_counter() - start
        assert elapsed < limit_s, (len(text), elapsed)
