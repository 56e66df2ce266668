"""unigrpo: UniGRPO reinforcement learning for masked-diffusion language models (LLaDA, MMaDA)."""

__version__ = "0.1.0"

# Registers `llada` / `mmada` with transformers' AutoConfig, AutoModel and AutoModelForMaskedLM, so that after
# `import unigrpo` a folder this library saved loads with `AutoModelForMaskedLM.from_pretrained`. This imports torch
# and transformers' model classes (not the trainers, TRL or the datasets library).
from . import models as _models  # noqa: E402, F401

_LAZY = {
    "UniGRPOConfig": "unigrpo.config",
    "UniGRPOTrainer": "unigrpo.trainer",
    "MaskedSFTConfig": "unigrpo.sft",
    "MaskedSFTTrainer": "unigrpo.sft",
}


def __getattr__(name):  # lazy: the trainers (TRL, datasets, accelerate) load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unigrpo' has no attribute {name!r}")


__all__ = list(_LAZY)
