"""unigrpo: UniGRPO reinforcement learning for masked-diffusion language models (LLaDA, MMaDA)."""

__version__ = "0.1.0"

_LAZY = {
    "UniGRPOConfig": "unigrpo.config",
    "UniGRPOTrainer": "unigrpo.trainer",
    "MaskedSFTConfig": "unigrpo.sft",
    "MaskedSFTTrainer": "unigrpo.sft",
}


def __getattr__(name):  # lazy, so `import unigrpo` stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'unigrpo' has no attribute {name!r}")


__all__ = list(_LAZY)
