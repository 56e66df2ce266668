"""Loading the prompt data set a recipe names: a built-in task (``arith``, ``shapes``), a public data set through
its adapter (``gsm8k``, ``math``, ``countdown``, ``sudoku``, … by name or hub id; see ``unigrpo.data.adapters``), or
a local JSON/JSONL/CSV/Parquet file — or a folder of them named by split (``train.jsonl``, ``test.jsonl``) —
optionally in an adapter's source schema (``adapter=``)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from ..models.loading import is_hub_id
from .adapters import ADAPTERS, HUB_IDS, adapt, adapter_for, load_hub_split
from .arith import make_arith_dataset
from .long_answers import make_copy_dataset
from .files import FORMATS as _FORMATS
from .files import check_prompts, read_data_file
from .shapes import make_shapes_dataset

BUILTIN = {
    "arith": make_arith_dataset,
    "copy": make_copy_dataset,  # 64–200-digit strings to copy: the confident benchmark model's task (issue #18)
    # captions only (t2i prompts for RL; the held-out split repeats each caption 4 times for sampled evaluation)
    "shapes": lambda split: make_shapes_dataset(split, per_caption=4 if split == "test" else 1),
    # captions with 80 pictures each (train) or one (others): the SFT data of the t2i demo
    "shapes-images": lambda split: make_shapes_dataset(split, per_caption=80 if split == "train" else 1,
                                                       with_images=True),
    "tiny-countdown": lambda split: _builtin("countdown_tiny", "make_tiny_countdown_dataset", split),
    "shapes-qa": lambda split: _builtin("shapes_qa", "make_shapes_qa_dataset", split),
}


def _builtin(module: str, function: str, split: str) -> Dataset:
    """A built-in task whose module is imported only when a recipe names it."""
    import importlib

    return getattr(importlib.import_module(f".{module}", __package__), function)(split=split)


def local_data_file(path: Path, split: str) -> Path:
    """A data file, or the ``<split>.<format>`` file inside a folder."""
    if path.is_dir():
        found = [path / f"{split}{suffix}" for suffix in _FORMATS if (path / f"{split}{suffix}").is_file()]
        if not found:
            raise FileNotFoundError(f"dataset folder {str(path)!r} has no {split}.jsonl / .json / .csv / .parquet")
        return found[0]
    if path.suffix not in _FORMATS:
        raise ValueError(f"dataset file {str(path)!r}: unsupported suffix {path.suffix!r}; use {sorted(_FORMATS)}")
    return path


def load_prompt_dataset(name: str, split: str = "train", limit: int | None = None, required=("prompt",),
                        adapter: str | None = None, thinking: bool = False, prompt_format: str = "chat") -> Dataset:
    """The rows of one split, adapted when an adapter applies; checks that the ``required`` columns are present
    and that every prompt is text or a chat (one line naming the file, line or row, and key, when not).

    ``adapter`` names the schema of a local file or hub id; without it, ``name`` picks one when it is an adapter's
    name or hub id. ``thinking`` / ``prompt_format`` shape adapted prompts (MMaDA's thinking instruction; chat or
    plain)."""
    path, file = Path(name), None
    found = adapter_for(name, adapter) if name not in BUILTIN or adapter else None
    if name in BUILTIN and not adapter:
        dataset = BUILTIN[name](split=split)
    elif path.exists():
        file = local_data_file(path, split)
        dataset = read_data_file(file)
    elif found is not None and (name in HUB_IDS or name == found.name or is_hub_id(name)):
        hub_id = None if name in HUB_IDS or name == found.name else name
        dataset = load_hub_split(found, split, hub_id)
    else:
        raise FileNotFoundError(f"dataset {name!r} is neither a built-in task ({sorted(BUILTIN)}), an adapter "
                                f"({sorted(ADAPTERS)}, or their hub ids) nor a file")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    if found is not None:
        dataset = adapt(dataset, found, thinking, prompt_format, name=name)
    if "image" in dataset.column_names and dataset.features["image"].dtype == "string":
        from datasets import Image

        dataset = dataset.cast_column("image", Image())  # file paths → PIL images when rows are read
    missing = [c for c in required if c not in dataset.column_names]
    if missing:
        raise ValueError(f"dataset {name!r} has no column(s) {missing}; it has {dataset.column_names}")
    if "prompt" in dataset.column_names:
        check_prompts(dataset, name, file)
    return dataset
