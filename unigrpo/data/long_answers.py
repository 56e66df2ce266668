"""The built-in long-answer task: copy a digit string of 64–200 digits (``copy``).

It exists to give the rollout benchmarks a model that is *confident* (issue #18): random weights give flat logits
and the arithmetic demo answers in 6 tokens, so neither shows what threshold decoding or early finishing save on a
trained LLM's 128–256-token answers. The prompt is the digit string right-padded with ``.`` to a fixed width
(``WIDTH``) and closed by ``=``; the answer is the digit string itself, so answers vary in length and the rest of the
256-token canvas is EOS padding. Fixed-width prompts put every answer digit at one relative offset from its source,
which a small bidirectional model learns on one CPU thread in minutes (a reversal or an addition would need far
more steps). Rows are in TRL's prompt-completion format with ``answer`` (the digits) for the exact-match reward.
Deterministic: row ``i`` of a split comes from its own seeded generator, and the two splits use different seeds.
"""

from __future__ import annotations

import random

from datasets import Dataset

WIDTH = 200            # digits of the longest answer = width of every prompt before "="
MIN_DIGITS = 64
PAD = "."
SPLIT_SEEDS = {"train": 0, "test": 1}
SPLIT_SIZES = {"train": 200_000, "test": 512}


def copy_row(digits: str) -> dict:
    """One row: the padded prompt, the gold completion and the answer the reward compares against."""
    if not digits.isdigit() or len(digits) > WIDTH:
        raise ValueError(f"copy rows take 1..{WIDTH} digits, got {digits[:20]!r}… ({len(digits)} chars)")
    return {"prompt": digits.ljust(WIDTH, PAD) + "=", "completion": digits, "answer": digits}


def random_digits(rng: random.Random, min_digits: int = MIN_DIGITS, max_digits: int = WIDTH) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(min_digits, max_digits)))


def make_copy_dataset(split: str = "train", limit: int | None = None, seed: int | None = None) -> Dataset:
    """``split`` rows of the copy task (train: 200 k, test: 512 held-out strings; ``limit`` keeps the first rows)."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"copy split {split!r}; valid: {sorted(SPLIT_SEEDS)}")
    size = SPLIT_SIZES[split] if limit is None else min(limit, SPLIT_SIZES[split])
    rng = random.Random(SPLIT_SEEDS[split] if seed is None else seed)
    return Dataset.from_list([copy_row(random_digits(rng)) for _ in range(size)])
