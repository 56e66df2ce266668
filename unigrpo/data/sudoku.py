"""4×4 Sudoku puzzles with a unique solution, generated (no hub copy of d1's puzzle file exists).

A grid is 16 digits read left to right, top to bottom; ``0`` marks an empty cell. Every row, column and 2×2 box holds
1–4 once. ``make_sudoku_rows(split)`` draws puzzles from all 288 solved grids, removing cells while the solution
stays unique; ``test`` puzzles come from solved grids that ``train`` never uses (10 %, fixed by the seed).
"""

from __future__ import annotations

import random

UNITS = (
    [[4 * r + c for c in range(4)] for r in range(4)]
    + [[4 * r + c for r in range(4)] for c in range(4)]
    + [[4 * (2 * br + r) + 2 * bc + c for r in range(2) for c in range(2)] for br in range(2) for bc in range(2)]
)


def is_solved(grid: str) -> bool:
    return len(grid) == 16 and all(sorted(grid[i] for i in unit) == list("1234") for unit in UNITS)


def solutions(puzzle: str, limit: int = 2) -> list[str]:
    """Up to ``limit`` completions of a puzzle (backtracking on the first empty cell)."""
    empty = puzzle.find("0")
    if empty == -1:
        return [puzzle] if is_solved(puzzle) else []
    found: list[str] = []
    for digit in "1234":
        if all(puzzle[i] != digit for unit in UNITS if empty in unit for i in unit):
            found += solutions(puzzle[:empty] + digit + puzzle[empty + 1 :], limit - len(found))
            if len(found) >= limit:
                break
    return found


def all_grids() -> list[str]:
    """The 288 solved 4×4 grids, in a fixed order (every completion of the empty grid)."""
    return solutions("0" * 16, limit=1000)


def make_puzzle(grid: str, rng: random.Random, min_empty: int = 6, max_empty: int = 10) -> str:
    """Blank cells of ``grid`` in random order, keeping each removal only while the solution stays unique."""
    target, puzzle = rng.randint(min_empty, max_empty), grid
    for i in rng.sample(range(16), 16):
        candidate = puzzle[:i] + "0" + puzzle[i + 1 :]
        if len(solutions(candidate)) == 1:
            puzzle = candidate
        if puzzle.count("0") >= target:
            break
    return puzzle


def make_sudoku_rows(split: str = "train", size: int | None = None, seed: int = 0) -> list[dict]:
    """Rows ``{"puzzle", "solution"}`` (d1's column names, lower case): 2000 train or 200 test puzzles by default."""
    if split not in ("train", "test"):
        raise ValueError(f"sudoku split {split!r}; valid: ['train', 'test']")
    grids = all_grids()
    random.Random(seed).shuffle(grids)
    held_out = len(grids) // 10
    grids = grids[:held_out] if split == "test" else grids[held_out:]
    size = size or (200 if split == "test" else 2000)
    rng = random.Random(seed + (1 if split == "test" else 2))
    rows, seen = [], set()
    for attempt in range(20 * size):
        grid = grids[attempt % len(grids)]
        puzzle = make_puzzle(grid, rng)
        if puzzle not in seen:
            seen.add(puzzle)
            rows.append({"puzzle": puzzle, "solution": grid})
        if len(rows) == size:
            break
    return rows
