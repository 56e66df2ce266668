"""The Countdown and Sudoku rewards: values on hand-checked answers, safety of the expression evaluation."""

from fractions import Fraction

import pytest

from rewards import get_reward
from rewards.countdown import countdown_expression, evaluate_expression
from rewards.sudoku import sudoku_grid

NUMS, TARGET = [2, 3, 4], 5


@pytest.mark.parametrize("completion, expected", [
    ("<answer>2*4-3</answer>", 1.0),
    ("<think>try 4*2 = 8, 8-3 = 5</think><answer>\n(4 × 2) − 3\n</answer>".replace("−", "-"), 1.0),
    ("I think \\boxed{4*2-3 = 5}", 1.0),  # boxed, with the target written after '='
    ("<answer>3+4/2</answer>", 1.0),  # 3 + 2 = 5: division is exact
    ("<answer>2+3</answer>", 0.1),  # right value, 4 unused
    ("<answer>2*4-3+0</answer>", 0.1),  # an extra number
    ("<answer>2+3+4</answer>", 0.1),  # all numbers, wrong value
    ("<answer>4/(3-3)</answer>", 0.1),  # division by zero: not an answer, no crash
    ("<answer>__import__('os')</answer>", 0.1),
    ("<answer>2**3**4**5**6</answer>", 0.1),  # powers are not allowed (no huge numbers)
    ("just prose", 0.0),
    ("", 0.0),
])
def test_countdown_values(completion, expected):
    assert get_reward("countdown")(completions=[completion], numbers=[NUMS], target=[TARGET]) == [expected]


def test_countdown_evaluates_exactly_and_never_as_python():
    assert evaluate_expression("1/3+1/3+1/3") == (Fraction(1), [1, 3, 1, 3, 1, 3])
    assert evaluate_expression("(2+3)*-4") == (Fraction(-20), [2, 3, 4])
    assert evaluate_expression("x+1") is None and evaluate_expression("1" * 500) is None
    assert evaluate_expression("((((((((((1))))))))))") == (Fraction(1), [1])
    assert countdown_expression("<answer> 7*8 = 56 </answer>") == "7*8"
    assert countdown_expression("no answer") is None
    chat = [[{"role": "assistant", "content": "<answer>2*4-3</answer>"}]]
    assert get_reward("countdown")(completions=chat, numbers=[NUMS], target=[TARGET]) == [1.0]
    with pytest.raises(ValueError, match="'numbers' and 'target'"):
        get_reward("countdown")(completions=["<answer>1</answer>"], answer=["1"])


PUZZLE, SOLUTION = "4300003020033102", "4321123424133142"  # 8 empty cells: 2 3 4 5 7 9 10 14


@pytest.mark.parametrize("completion, expected", [
    (f"<answer>{SOLUTION}</answer>", 1.0),
    ("<answer>\n4321\n1234\n2413\n3142\n</answer>", 1.0),  # rows on lines: digits read in order
    (f"<answer>{SOLUTION[:8]}</answer>", 5 / 8),  # 5 of the 8 empty cells lie in the first 8
    (f"<answer>{PUZZLE}</answer>", 0.0),  # the puzzle unchanged
    ("<answer>1111111111111111</answer>", 3 / 8),  # empty cells 4, 10, 14 hold a 1 in the solution
    (f"no tags at all {SOLUTION}", 0.0),
])
def test_sudoku_values(completion, expected):
    value = get_reward("sudoku")(completions=[completion], puzzle=[PUZZLE], solution=[SOLUTION])[0]
    empty = [i for i, ch in enumerate(PUZZLE) if ch == "0"]
    grid = sudoku_grid(completion) or ""
    assert value == pytest.approx(sum(i < len(grid) and grid[i] == SOLUTION[i] for i in empty) / len(empty))
    assert value == pytest.approx(expected)


def test_task_rewards_declare_columns_and_what_counts_as_solved():
    assert get_reward("countdown").required_columns == ("numbers", "target")
    assert get_reward("sudoku").required_columns == ("puzzle", "solution")
    assert get_reward("countdown").correct_threshold == 1.0 and get_reward("sudoku").correct_threshold == 1.0
    with pytest.raises(ValueError, match="16-digit"):
        get_reward("sudoku")(completions=["<answer>1</answer>"], puzzle=["123"], solution=["123"])


def test_exact_answer_is_character_exact_on_long_digit_strings():
    digits = "1234567890" * 20  # 200 digits: a float would round them all to one number
    reward = get_reward("exact_answer")
    assert reward(completions=[digits, digits + " \n", digits[:-1] + "1", digits + "0", "", [{"role": "assistant",
                  "content": digits}]], answer=[digits] * 6) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert reward.required_columns == ("answer",) and reward.correct_threshold == 1.0
