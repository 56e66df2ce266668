"""Loading prompt datasets named in a recipe: the built-in ``arith`` and ``shapes`` tasks or a local JSON/JSONL/CSV/Parquet file."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset

from .arith import make_arith_dataset
from .shapes import make_shapes_dataset

BUILTIN = {
    "arith": make_arith_dataset,
    # captions only (t2i prompts for RL; the held-out split repeats each caption 4 times for sampled evaluation)
    "shapes": lambda split: make_shapes_dataset(split, per_caption=4 if split == "test" else 1),
    # captions with 80 pictures each (train) or one (others): the SFT data of the t2i demo
    "shapes-images": lambda split: make_shapes_dataset(split, per_caption=80 if split == "train" else 1,
                                                       with_images=True),
}
_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


def load_prompt_dataset(name: str, split: str = "train", limit: int | None = None, required=("prompt",)) -> Dataset:
    """A built-in task by name, or a local file; checks that the ``required`` columns are present."""
    if name in BUILTIN:
        dataset = BUILTIN[name](split=split)
    else:
        path = Path(name)
        if not path.exists():
            raise FileNotFoundError(f"dataset {name!r} is neither a built-in task ({sorted(BUILTIN)}) nor a file")
        if path.suffix not in _FORMATS:
            raise ValueError(f"dataset file {name!r}: unsupported suffix {path.suffix!r}; use {sorted(_FORMATS)}")
        dataset = load_dataset(_FORMATS[path.suffix], data_files=str(path), split="train")
    missing = [c for c in required if c not in dataset.column_names]
    if "image" in dataset.column_names and dataset.features["image"].dtype == "string":
        from datasets import Image

        dataset = dataset.cast_column("image", Image())  # file paths → PIL images when rows are read
    if missing:
        raise ValueError(f"dataset {name!r} has no column(s) {missing}; it has {dataset.column_names}")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset
