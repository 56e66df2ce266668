"""Adapters for public RL data sets: each maps a source row to ``prompt`` (+ ``image``, ``task``) and the columns
its rewards read, from the Hugging Face hub by name or from a local file in the same schema.

    adapter     hub source (split: hub id / config / split)              rows get            rewards
    gsm8k       openai/gsm8k (main): train, test                          answer              math_correctness
    math        train: DigitalLearningGmbH/MATH-lighteval; test: MATH-500 answer              math_correctness
    math500     HuggingFaceH4/MATH-500: test                              answer              math_correctness
    countdown   Jiayi-Pan/Countdown-Tasks-3to4: train[:-500], test = last 500   numbers, target   countdown
    sudoku      generated (4×4, unique solutions; ``unigrpo.data.sudoku``)     puzzle, solution  sudoku
    geoqa       leonardPKU/GEOQA_R1V_Train_8K (mmu)                       image, answer       math_correctness
    clevr       leonardPKU/clevr_cogen_a_train (mmu)                      image, answer       math_correctness
    captions    no default (t2i): any file / hub id with a caption column  -                  clip_score, image_reward

Prompts are chats (one user message, for the tokenizer's chat template) or plain text (``prompt_format``); with
``thinking=True`` the user message starts with MMaDA's thinking instruction (docs/design.md §3.7, §6), so the
``think_format`` reward applies. A local file may use the hub's column names or already have the adapted ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rewards.extract import answer_tag, last_boxed

from .sudoku import make_sudoku_rows

# MMaDA's thinking prompt (its demo app prepends it to the question)
THINKING_PROMPT = (
    "You should first think about the reasoning process in the mind and then provide the user with the answer. "
    "The reasoning process is enclosed within <think> </think> tags, i.e. <think> reasoning process here </think> "
    "answer here\n"
)
BOXED_INSTRUCTION = "\nPut the final answer in \\boxed{}."
COUNTDOWN_INSTRUCTION = (
    "Using only the numbers {numbers}, create an arithmetic expression that evaluates to exactly {target}. Use every "
    "number exactly once, with +, -, * and / as needed. Give only the expression inside <answer></answer> tags, "
    "without an equals sign or the target; e.g. for [2, 3, 4] and target 5: <answer>2*4-3</answer>."
)
SUDOKU_INSTRUCTION = (
    "Solve this 4x4 Sudoku. The puzzle is a 16-character string read left to right, top to bottom; 0 marks an empty "
    "cell. Fill the empty cells with 1-4 so that every row, column and 2x2 box holds 1-4 exactly once. Give the "
    "complete 16-digit grid inside <answer></answer> tags.\nPuzzle: {puzzle}"
)
PROMPT_FORMATS = ("chat", "plain")


@dataclass(frozen=True)
class Source:
    """Where a split comes from on the hub: ``load_dataset(hub_id, config, split=split)``."""

    hub_id: str
    split: str
    config: str | None = None


@dataclass(frozen=True)
class Adapter:
    name: str
    question: Callable[[dict], str]  # source row → question text (before the thinking prompt)
    columns: Callable[[dict], dict]  # source row → the columns its rewards read (and task); an image column is kept
    needs: tuple[str, ...]  # source columns a row must have (one of each tuple entry, "a|b" = a or b)
    produces: tuple[str, ...]  # columns the adapted rows have besides "prompt"
    sources: dict[str, Source] = field(default_factory=dict)  # split → hub source
    generate: Callable[[str], list[dict]] | None = None  # split → source rows, when there is no hub copy


def first(row: dict, *names):
    """The first of ``names`` that the row has (a local file may use either schema)."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    raise KeyError(names[0])


def gsm8k_answer(solution: str) -> str:
    """The number after GSM8K's ``####``, without thousands separators."""
    return str(solution).rsplit("####", 1)[-1].strip().replace(",", "")


def math_answer(row: dict) -> str | None:
    """MATH-500 has an ``answer`` column; MATH (lighteval) has only the solution, whose last ``\\boxed{}`` it is."""
    if row.get("answer") is not None:
        return str(row["answer"])
    return last_boxed(str(row["solution"]))


def tagged_answer(solution: str) -> str:
    """R1-V's ``<answer> 3 </answer>`` solutions → ``3`` (plain answers pass through)."""
    found = answer_tag(str(solution))
    return (found if found is not None else str(solution)).strip()


def countdown_numbers(row: dict) -> list[int]:
    """``nums`` (hub) / ``numbers`` (adapted) as a list, or d1's test file ``{"input": "30,100,93"}``."""
    if "input" in row and "nums" not in row and "numbers" not in row:
        return [int(n) for n in str(row["input"]).split(",")]
    return [int(n) for n in first(row, "numbers", "nums")]


def countdown_target(row: dict) -> int:
    return int(first(row, "target", "output"))


def sudoku_cells(grid) -> str:
    """A 16-digit grid string; a CSV reader that typed ``0020…`` as the integer ``20…`` lost its leading zeros."""
    return str(grid).zfill(16) if isinstance(grid, int) else str(grid)


def visual_qa_adapter(name: str, hub_id: str) -> Adapter:
    """GeoQA / CLEVR style (R1-V's hub copies): an image, a question and an ``<answer>``-tagged solution → mmu rows."""
    return Adapter(
        name,
        question=lambda r: first(r, "problem", "question", "prompt"),
        columns=lambda r: {"answer": tagged_answer(first(r, "solution", "answer")), "task": "mmu"},
        needs=("problem|question|prompt", "image", "solution|answer"),
        produces=("image", "answer", "task"),
        sources={"train": Source(hub_id, "train")},
    )


ADAPTERS: dict[str, Adapter] = {
    "gsm8k": Adapter(
        "gsm8k",
        question=lambda r: first(r, "question", "prompt") + BOXED_INSTRUCTION,
        columns=lambda r: {"answer": gsm8k_answer(r["answer"])},
        needs=("question|prompt", "answer"),
        produces=("answer",),
        sources={"train": Source("openai/gsm8k", "train", "main"), "test": Source("openai/gsm8k", "test", "main")},
    ),
    "math": Adapter(
        "math",
        question=lambda r: first(r, "problem", "prompt") + BOXED_INSTRUCTION,
        columns=lambda r: {"answer": math_answer(r)},
        needs=("problem|prompt", "answer|solution"),
        produces=("answer",),
        sources={"train": Source("DigitalLearningGmbH/MATH-lighteval", "train"),
                 "test": Source("HuggingFaceH4/MATH-500", "test")},
    ),
    "countdown": Adapter(
        "countdown",
        question=lambda r: COUNTDOWN_INSTRUCTION.format(numbers=countdown_numbers(r), target=countdown_target(r)),
        columns=lambda r: {"numbers": countdown_numbers(r), "target": countdown_target(r)},
        needs=("nums|numbers|input", "target|output"),
        produces=("numbers", "target"),
        sources={"train": Source("Jiayi-Pan/Countdown-Tasks-3to4", "train[:-500]"),
                 "test": Source("Jiayi-Pan/Countdown-Tasks-3to4", "train[-500:]")},
    ),
    "sudoku": Adapter(
        "sudoku",
        question=lambda r: SUDOKU_INSTRUCTION.format(puzzle=sudoku_cells(first(r, "puzzle", "Puzzle"))),
        columns=lambda r: {"puzzle": sudoku_cells(first(r, "puzzle", "Puzzle")),
                           "solution": sudoku_cells(first(r, "solution", "Solution"))},
        needs=("puzzle|Puzzle", "solution|Solution"),
        produces=("puzzle", "solution"),
        generate=make_sudoku_rows,
    ),
    "geoqa": visual_qa_adapter("geoqa", "leonardPKU/GEOQA_R1V_Train_8K"),
    "clevr": visual_qa_adapter("clevr", "leonardPKU/clevr_cogen_a_train"),
    "captions": Adapter(
        "captions",
        question=lambda r: str(first(r, "caption", "text", "prompt")),
        columns=lambda r: {"task": "t2i"},
        needs=("caption|text|prompt",),
        produces=("task",),
    ),
}
ADAPTERS["math500"] = replace(ADAPTERS["math"], name="math500",
                              sources={"test": Source("HuggingFaceH4/MATH-500", "test")})  # MATH's held-out half
HUB_IDS = {source.hub_id: name for name, a in ADAPTERS.items() for source in a.sources.values()}


def get_adapter(name: str) -> Adapter:
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset adapter {name!r}; valid: {sorted(ADAPTERS)}")
    return ADAPTERS[name]


def adapter_for(dataset_name: str, adapter: str | None = None) -> Adapter | None:
    """The adapter named explicitly, or the one whose name or hub id ``dataset_name`` is; else None."""
    if adapter:
        return get_adapter(adapter)
    name = HUB_IDS.get(dataset_name, dataset_name)
    return ADAPTERS.get(name)


def make_prompt(question: str, thinking: bool, prompt_format: str):
    text = (THINKING_PROMPT if thinking else "") + question
    return [{"role": "user", "content": text}] if prompt_format == "chat" else text


def check_source_columns(adapter: Adapter, columns, name: str) -> None:
    missing = [need for need in adapter.needs if not any(c in columns for c in need.split("|"))]
    if missing:
        raise ValueError(f"dataset {name!r} does not have the columns the {adapter.name!r} adapter reads: missing "
                         f"{' and '.join(repr(m.replace('|', ' or ')) for m in missing)}; it has {list(columns)}")


def adapt(dataset, adapter: Adapter, thinking: bool = False, prompt_format: str = "chat", name: str = "dataset"):
    """Map every row of a ``datasets.Dataset`` in the source schema to the adapted one (other columns dropped)."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format {prompt_format!r}; valid: {list(PROMPT_FORMATS)}")
    check_source_columns(adapter, dataset.column_names, name)

    def row(source: dict, index: int) -> dict:
        try:
            return {"prompt": make_prompt(adapter.question(source), thinking, prompt_format),
                    **adapter.columns(source)}
        except (KeyError, TypeError, ValueError) as error:  # a blank cell, a non-number target, …
            shown = {k: v for k, v in source.items() if k != "image"}
            raise ValueError(f"dataset {name!r} row {index} cannot be read by the {adapter.name!r} adapter "
                             f"({type(error).__name__}: {error}): {str(shown)[:200]}") from None

    keep = {"image"} & set(adapter.produces)  # images stay as the dataset stores them (decoded on access)
    return dataset.map(row, with_indices=True, remove_columns=[c for c in dataset.column_names if c not in keep])


def load_hub_split(adapter: Adapter, split: str, hub_id: str | None = None):
    """The adapter's rows for ``split`` before adapting: generated, or from the hub (by the adapter's source or an
    explicit ``hub_id``). One clear error when the hub cannot be reached."""
    from datasets import Dataset, load_dataset

    if adapter.generate is not None and hub_id is None:
        return Dataset.from_list(adapter.generate(split))
    source = Source(hub_id, split) if hub_id else adapter.sources.get(split)
    if source is None:
        raise ValueError(f"the {adapter.name!r} adapter has no hub source for split {split!r} (it has "
                         f"{sorted(adapter.sources) or 'none'}); give a local file: dataset_name: PATH")
    try:
        return load_dataset(source.hub_id, source.config, split=source.split)
    except Exception as error:  # offline, unknown id, no such split: the hub's many error types
        raise FileNotFoundError(
            f"dataset {source.hub_id!r} (split {source.split!r}) could not be loaded from the hub: "
            f"{type(error).__name__}: {str(error)[:200]}. Without network, download it elsewhere and give the file: "
            f"dataset_name: PATH, dataset_adapter: {adapter.name}") from error
