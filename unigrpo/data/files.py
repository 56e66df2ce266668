"""Local data files (JSON, JSONL, CSV, Parquet) read with ``datasets``, and one clear error when they cannot be.

``datasets`` reports a bad file as ``StopIteration`` (0 bytes), ``DatasetGenerationError`` (a malformed line) or
"corresponds to no data" (``[]``), none naming the line. So a file it cannot read is read again here, plainly, to
find the first bad line or row and the key; and every row's ``prompt`` is checked against TRL's conventions
(text, or a list of ``{role, content}`` messages), so a null or numeric prompt fails here, not in the tokenizer."""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

from datasets import Dataset, load_dataset

from ..prompts import prompt_problem

FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def read_data_file(file: Path) -> Dataset:
    """The rows of one local file; ``ValueError`` naming the file, the line (JSON Lines) or row, and the key."""
    if file.stat().st_size == 0:
        raise ValueError(f"dataset file {str(file)!r} is empty (0 bytes); give one JSON object per line (.jsonl), "
                         f"a JSON list of objects (.json), or a CSV / Parquet table with a prompt column")
    try:
        with _quiet_datasets():
            dataset = load_dataset(FORMATS[file.suffix], data_files=str(file), split="train")
    except Exception as error:  # noqa: BLE001 - datasets' many error types; the file itself says what is wrong
        problem = json_problem(file) if FORMATS[file.suffix] == "json" else None
        if problem is None and "corresponds to no data" in str(error):  # datasets' words for a table of no rows
            problem = "has no rows"
        cause = error.__cause__ or error
        raise ValueError(f"dataset file {str(file)!r}: " + (
            problem or f"cannot be read ({type(cause).__name__}: {str(cause)[:200]})")) from None
    if len(dataset) == 0:
        raise ValueError(f"dataset file {str(file)!r} has no rows")
    return dataset


@contextmanager
def _quiet_datasets():
    """``datasets``' own log lines and progress bar off while a local file loads: a bad file is one error line from
    here, not that plus "Failed to load JSON …" and "Generating train split: 0 examples"."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
    from datasets.utils import logging as datasets_logging

    verbosity, bars_were_off = datasets_logging.get_verbosity(), are_progress_bars_disabled()
    datasets_logging.set_verbosity(logging.CRITICAL)
    disable_progress_bars()
    try:
        yield
    finally:
        datasets_logging.set_verbosity(verbosity)
        if not bars_were_off:
            enable_progress_bars()


def is_json_lines(file: Path) -> bool:
    """JSON Lines (one object per line), as ``datasets`` reads a ``.jsonl`` file or a ``.json`` file not a list."""
    if FORMATS.get(file.suffix) != "json":
        return False
    with open(file, encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096).lstrip()
    return file.suffix == ".jsonl" or not head.startswith("[")


def row_place(file: Path | None, index: int) -> str:
    """How a user finds row ``index`` (0-based, blank lines skipped as ``datasets`` does): ``line N`` of a JSON
    Lines file, else ``row index``."""
    if file is None or not is_json_lines(file):
        return f"row {index}"
    with open(file, encoding="utf-8", errors="replace") as handle:
        rows = (number for number, line in enumerate(handle, 1) if line.strip())
        for row, number in enumerate(rows):
            if row == index:
                return f"line {number}"
    return f"row {index}"


def json_rows(file: Path) -> tuple[list[tuple[str, dict]], str | None]:
    """(place, row) of each row of a JSON / JSON Lines file, and the first syntax problem (None if none)."""
    text = file.read_text(encoding="utf-8", errors="replace")
    if not is_json_lines(file):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as error:
            return [], f"not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        if not isinstance(rows, list):
            return [], f"a .json data file is a list of row objects, got {_kind(rows)}"
        if not rows:
            return [], "has no rows (an empty list [])"
        return [(f"row {i}", row) for i, row in enumerate(rows)], None
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as error:
            return found, f"line {number} is not valid JSON (column {error.colno}: {error.msg}): {line.strip()[:80]}"
    return found, None


def json_problem(file: Path) -> str | None:
    """The first thing wrong with a JSON / JSON Lines file that ``datasets`` refused: its syntax, a row that is not
    an object, a bad prompt, or a key whose type changes between rows (Arrow needs one type per column)."""
    rows, problem = json_rows(file)
    if problem:
        return problem
    first_kind: dict[str, tuple[str, str]] = {}  # key → (its kind, where it was first seen)
    for place, row in rows:
        if not isinstance(row, dict):
            return f"{place} is {_kind(row)}, not an object of columns ({{\"prompt\": ...}})"
        if "prompt" in row and prompt_problem(row["prompt"]):
            return f"{place}: prompt {prompt_problem(row['prompt'])}"
        for key, value in row.items():
            kind = _kind(value)
            if value is not None and first_kind.setdefault(key, (kind, place))[0] != kind:
                return f"{place}: {key!r} is {kind} but {first_kind[key][1]} has {first_kind[key][0]}; give every " \
                       f"row's {key!r} the same type"
    return None


def check_prompts(dataset: Dataset, name: str, file: Path | None = None) -> None:
    """``ValueError`` naming the first row whose prompt is not text or a list of ``{role, content}`` messages."""
    for index, prompt in enumerate(dataset["prompt"]):
        problem = prompt_problem(prompt)
        if problem:
            where = f"dataset file {str(file)!r}" if file is not None else f"dataset {name!r}"
            raise ValueError(f"{where}: {row_place(file, index)}: prompt {problem}")


def _kind(value) -> str:
    """A JSON value's kind in words: 'text', 'a number', 'a list', 'an object', …"""
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "text", list: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
