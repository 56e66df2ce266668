"""Rewards: registry, output validation, safe and time-limited math correctness, format checks."""

import os
import subprocess
import sys
import time

import pytest

from rewards import call_reward, call_rewards_concurrently, completion_text, get_reward, list_rewards, register_reward
from rewards.extract import extract_answer, last_boxed
from rewards.math_correctness import answers_match, make_math_correctness


def correctness(completions, answers):
    return get_reward("math_correctness")(prompts=[""] * len(completions), completions=completions, answer=answers)


@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("\\boxed{-13}", "-13", 2.0),
        ("\\boxed{13}", "-13", 0.0),
        ("so \\boxed{\\frac{1}{2}}", "0.5", 2.0),
        ("\\boxed{\\frac{2}{4}}", "\\frac{1}{2}", 2.0),
        ("\\boxed{50\\%}", "0.5", 2.0),
        ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}", 2.0),
        ("\\boxed{\\sqrt{4}}", "2", 2.0),
        ("<think>x</think> 7", "7", 2.0),
        ("<answer>1,000</answer>", "1000", 2.0),
        ("\\boxed{3} then \\boxed{4}", "4", 2.0),  # the last box counts
        ("no answer here", "4", 0.0),
        ("\\boxed{4", "4", 0.0),  # unbalanced
    ],
)
def test_math_correctness_golden(completion, answer, expected):
    assert correctness([completion], [answer]) == [expected]


def test_conversational_completions_and_none_reference():
    msgs = [[{"role": "assistant", "content": "\\boxed{5}"}], "\\boxed{5}"]
    assert correctness(msgs, ["5", None]) == [2.0, None]


def test_nested_braces_and_extraction_order():
    assert last_boxed("\\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert extract_answer("<answer>3</answer> \\boxed{4}", ("answer_tag", "boxed")) == "3"
    with pytest.raises(ValueError, match="extractor"):
        extract_answer("x", ("regex",))


def test_exponent_tower_times_out_and_scores_zero():
    start = time.time()
    assert correctness(["\\boxed{2^{2^{2^{2^{99}}}}}"], ["5"]) == [0.0]
    assert time.time() - start < 10
    assert correctness(["\\boxed{\\frac{3}{6}}"], ["0.5"]) == [2.0]  # the worker is back after a kill


def test_model_output_is_never_evaluated_as_python(tmp_path):
    target = tmp_path / "pwned"
    payloads = [f"\\boxed{{__import__('os').system('touch {target}')}}", f"<answer>open('{target}','w')</answer>"]
    assert correctness(payloads, ["1", "1"]) == [0.0, 0.0]
    assert not target.exists()


def test_custom_column_and_value():
    reward = make_math_correctness(answer_column="solution", correct_reward=1.0)
    assert reward(prompts=[""], completions=["\\boxed{2}"], solution=["2"]) == [1.0]
    with pytest.raises(ValueError, match="solution"):
        reward(prompts=[""], completions=["\\boxed{2}"], answer=["2"])


def test_plain_numbers_compare_exactly():
    assert answers_match("0.50", "0.5") and not answers_match("12", "21")


def test_format_rewards():
    think, boxed = get_reward("think_format"), get_reward("boxed_format")
    completions = ["<think>a</think>\\boxed{1}", "<think>a</think>", "\\boxed{}", "plain"]
    assert think(prompts=None, completions=completions) == [0.5, 0.0, 0.0, 0.0]
    assert boxed(prompts=None, completions=completions) == [0.5, 0.0, 0.0, 0.0]


def test_format_checks_are_linear_time_on_adversarial_input():
    nasty = "<think>" + "{" * 50_000 + "\\boxed{" * 20_000
    start = time.time()
    get_reward("think_format")(prompts=None, completions=[nasty])
    get_reward("boxed_format")(prompts=None, completions=[nasty])
    assert time.time() - start < 5


def test_registry_names_paths_and_errors():
    assert {"math_correctness", "think_format", "boxed_format"} <= set(list_rewards())
    assert get_reward("rewards.format:boxed_format") is get_reward("boxed_format")
    with pytest.raises(ValueError, match="math_correctness"):
        get_reward("nope")
    with pytest.raises(ValueError, match="cannot be imported"):
        get_reward("no_such_pkg.mod:fn")

    @register_reward("test_len_reward")
    def length(completions, **kwargs):
        return [float(len(completion_text(c))) for c in completions]

    assert get_reward("test_len_reward") is length
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_len_reward")(lambda **k: [])


def test_call_reward_validates_output():
    completions = ["a", "b"]
    cases = [
        (lambda **k: [1.0], "returned 1 values for 2"),
        (lambda **k: [1.0, float("nan")], "nan at index 1"),
        (lambda **k: ["x", 1.0], "'x' \\(str\\) at index 0"),
        (lambda **k: 3.0, "returned float"),
    ]
    for func, message in cases:
        with pytest.raises(ValueError, match=message):
            call_reward(func, prompts=["p", "p"], completions=completions)
    assert call_reward(lambda **k: [1, None], prompts=["p", "p"], completions=completions) == [1.0, None]


def test_async_rewards_run_concurrently():
    import asyncio

    async def slow(completions, **kwargs):
        await asyncio.sleep(0.5)
        return [1.0] * len(completions)

    start = time.time()
    results = call_rewards_concurrently([slow, slow, slow], prompts=["p"], completions=["c"])
    assert results == [[1.0], [1.0], [1.0]] and time.time() - start < 1.2
    assert call_reward(slow, prompts=["p"], completions=["c"]) == [1.0]


def test_rewards_import_without_torch():
    code = "import sys, rewards; rewards.get_reward('math_correctness'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
