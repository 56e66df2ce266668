"""``sudoku``: the share of a 4×4 puzzle's empty cells that the completion fills correctly (d1's Sudoku reward).

The grid is read from the last ``<answer>…</answer>`` (else ``\\boxed{…}``, else the text after ``</think>``): its
digits in reading order, the first 16 used, missing cells counted wrong. A fully solved puzzle scores 1.0.
"""

from __future__ import annotations

from .extract import answer_region
from .inputs import is_pil_image
from .registry import completion_text, register_reward

CELLS = 16


def sudoku_grid(text: str) -> str | None:
    """The digits of the answer region (at most 16, in order), or None when there is no answer region."""
    found = answer_region(text)
    return None if found is None else "".join(ch for ch in found[: 64 * CELLS] if ch.isdigit())[:CELLS]


def sudoku_score(text: str, puzzle: str, solution: str) -> float:
    if len(puzzle) != CELLS or len(solution) != CELLS:
        raise ValueError(f"sudoku rows need 16-digit 'puzzle' and 'solution' strings, got {puzzle!r}, {solution!r}")
    grid = sudoku_grid(text)
    empty = [i for i, ch in enumerate(puzzle) if ch == "0"]
    if grid is None or not empty:
        return 0.0
    return sum(i < len(grid) and grid[i] == solution[i] for i in empty) / len(empty)


@register_reward("sudoku")
def sudoku(prompts=None, completions=(), puzzle=None, solution=None, **kwargs) -> list[float | None]:
    """Fraction of the ``puzzle``'s empty cells (``0``) that match ``solution`` (None for an image)."""
    if puzzle is None or solution is None:
        raise ValueError("sudoku needs the dataset columns 'puzzle' and 'solution' (the Sudoku adapter adds them)")
    return [None if is_pil_image(c) else sudoku_score(completion_text(c), str(p), str(s))
            for c, p, s in zip(completions, puzzle, solution, strict=True)]


sudoku.required_columns = ("puzzle", "solution")
sudoku.correct_threshold = 1.0  # `unigrpo eval`: solved = every empty cell right
