"""Datasets: the built-in arithmetic and synthetic-shapes tasks, and loaders for local files."""

from .arith import make_arith_dataset
from .loading import load_prompt_dataset
from .shapes import make_shapes_dataset

__all__ = ["make_arith_dataset", "make_shapes_dataset", "load_prompt_dataset"]
