"""The built-in arithmetic task of the CPU demo: ``ab+cd=`` / ``ab-cd=`` with two-digit, zero-padded operands.

Generated deterministically; 10% of the operand pairs are held out (``test`` split) so held-out accuracy measures
generalisation, not memorisation. Rows are in TRL's prompt-completion format: ``prompt`` (plain text), ``completion``
(the gold answer ``\\boxed{n}``, used only by SFT) and ``answer`` (the integer, used by the correctness reward).
Addition alone is too easy for RL to show anything (docs/design.md §9), so both operators are mixed.
"""

from __future__ import annotations

import random

from datasets import Dataset

OPERATORS = ("+", "-")


def _all_problems() -> list[tuple[int, str, int]]:
    return [(a, op, b) for a in range(100) for b in range(100) for op in OPERATORS]


def arith_row(a: int, op: str, b: int) -> dict:
    value = a + b if op == "+" else a - b
    return {"prompt": f"{a:02d}{op}{b:02d}=", "completion": f"\\boxed{{{value}}}", "answer": str(value)}


def make_arith_dataset(split: str = "train", test_fraction: float = 0.1, seed: int = 0, limit: int | None = None):
    """Deterministic split of the 20,000 problems into ``train`` and ``test`` (held-out operand pairs)."""
    if split not in ("train", "test"):
        raise ValueError(f"arith split {split!r}; valid: ['train', 'test']")
    pairs = [(a, b) for a in range(100) for b in range(100)]
    random.Random(seed).shuffle(pairs)
    held_out = set(pairs[: int(len(pairs) * test_fraction)])
    rows = [arith_row(a, op, b) for a, op, b in _all_problems() if ((a, b) in held_out) == (split == "test")]
    random.Random(seed + 1).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]
    return Dataset.from_list(rows)
