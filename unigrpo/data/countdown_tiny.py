"""The built-in Countdown task of the CPU demo (``tiny-countdown``): reach a target with three small numbers.

A problem is three numbers from 1–9, shown in some order, and a positive target that ``a ∘ b ∘ c`` reaches with
the numbers in that order, ``∘`` ∈ {+, ×} and the usual precedence (no parentheses). The prompt is short plain text
like arith's, ``3,5,7:22=``; the answer is ``\\boxed{3*5+7}``: 7 tokens of the character tokenizer (``\\boxed{`` is
one), so rollouts stay as short as the arithmetic demo's. Rows carry ``numbers`` and ``target``, the columns the
``countdown`` reward scores with (1.0 correct, 0.1 well-formed but wrong, 0 no answer); it accepts any order,
operator and parentheses, but every problem is solvable in the order shown with + and ×.

Why in the order shown: the 1.1 M-parameter model learns to copy the numbers in order almost at once, while
answers that use them in a random order still repeated a number in a fifth of its answers after 2,000 SFT steps;
with the order given, the answer is the choice of two operators, and a reward on that choice is what RL learns from.

Why + and × only: with − as well (nine operator pairs), two random operators succeed 12% of the time, and UniGRPO
from the format-only start gained only +2.6 to +11.5 held-out points over three seeds in 1,000 steps (a higher
learning rate collapsed). With two operators, random operators succeed 27% of the time, so nearly every group of 8
sampled answers holds a correct one, and there is still room to learn: choosing the operators from the target
alone would reach 58%, from the target and the last number 70%.

Every (ordered numbers, reachable target) pair is one problem, each target once, so none is favoured. Held-out
problems (``test``) use number sets (in any order) that never appear in training — a fifth of the 165 — so held-out
success measures a strategy, not memorised answers.

``sft`` is the cold start's data, the answer FORMAT only: each training problem twice, answered with its numbers in
the order shown joined by random operators — well-formed, every number used once, and no more likely to reach the
target than chance. A model fine-tuned on it writes valid expressions, and whatever it gains above chance afterwards
comes from the reward alone.
"""

from __future__ import annotations

import itertools
import random

from datasets import Dataset

from rewards.countdown import evaluate_expression

NUMBERS = range(1, 10)  # single digits: one token each
OPERATORS = ("+", "*")
SPLITS = ("train", "test", "sft")
TEST_FRACTION = 0.2  # of the number sets
SFT_ANSWERS = 2  # random format answers per training problem


def expressions(numbers) -> list[str]:
    """Every ``a∘b∘c`` of ``numbers`` in their order, one per choice of the two operators."""
    a, b, c = numbers
    return [f"{a}{o1}{b}{o2}{c}" for o1, o2 in itertools.product(OPERATORS, repeat=2)]


def value(expression: str) -> int:
    """The value of a digit/operator expression with the usual precedence, computed as the reward computes it."""
    return int(evaluate_expression(expression)[0])


def targets(numbers) -> list[int]:
    """The positive targets some expression of ``numbers`` (in their order) reaches, ascending."""
    return sorted({v for v in map(value, expressions(numbers)) if v > 0})


def number_sets(split: str, seed: int = 0) -> list[tuple[int, ...]]:
    """The number sets (sorted) of ``train`` (also ``sft``) or ``test``: a fixed random fifth is held out."""
    sets = list(itertools.combinations_with_replacement(NUMBERS, 3))
    random.Random(seed).shuffle(sets)
    held_out = int(len(sets) * TEST_FRACTION)
    return sorted(sets[:held_out] if split == "test" else sets[held_out:])


def orderings(split: str, seed: int = 0) -> list[tuple[int, ...]]:
    """Every distinct order of the split's number sets: how the numbers are shown."""
    return sorted({order for numbers in number_sets(split, seed) for order in itertools.permutations(numbers)})


def countdown_row(numbers, target: int) -> dict:
    return {"prompt": f"{','.join(map(str, numbers))}:{target}=", "numbers": list(numbers), "target": target}


def format_completion(numbers, rng: random.Random) -> str:
    """A well-formed answer that ignores the target: the numbers in order with random operators."""
    a, b, c = numbers
    return f"\\boxed{{{a}{rng.choice(OPERATORS)}{b}{rng.choice(OPERATORS)}{c}}}"


def make_tiny_countdown_dataset(split: str = "train", seed: int = 0) -> Dataset:
    """The rows of one split (deterministic for a seed), shuffled: ``prompt``, ``numbers``, ``target`` (and
    ``completion`` for ``sft``)."""
    if split not in SPLITS:
        raise ValueError(f"tiny-countdown split {split!r}; valid: {list(SPLITS)}")
    rng = random.Random(seed + 1)
    rows = [countdown_row(numbers, target) for numbers in orderings(split, seed) for target in targets(numbers)]
    if split == "sft":
        rows = [{**row, "completion": format_completion(row["numbers"], rng)}
                for row in rows for _ in range(SFT_ANSWERS)]
    rng.shuffle(rows)
    return Dataset.from_list(rows)
