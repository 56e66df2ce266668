"""Datasets: the built-in arithmetic task and loaders for local files."""

from .arith import make_arith_dataset
from .loading import load_prompt_dataset

__all__ = ["make_arith_dataset", "load_prompt_dataset"]
