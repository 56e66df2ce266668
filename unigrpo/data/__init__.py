"""Datasets: the built-in arithmetic, long-answer copy and synthetic-shapes tasks, adapters for public data sets,
local files."""

from .adapters import ADAPTERS, THINKING_PROMPT, adapt, get_adapter
from .arith import make_arith_dataset
from .loading import load_prompt_dataset
from .long_answers import make_copy_dataset
from .shapes import make_shapes_dataset

__all__ = ["ADAPTERS", "THINKING_PROMPT", "adapt", "get_adapter", "make_arith_dataset", "make_copy_dataset",
           "make_shapes_dataset", "load_prompt_dataset"]
