"""Wrapping a diffusion LM with PEFT adapters."""

from __future__ import annotations

import copy


def default_lora_targets(model):
    """The LoRA targets the model's class documents (``lora_target_modules``: every layer's attention and MLP
    projections for LLaDA / MMaDA / Dream; attention, shared expert and dense MLPs for LLaDA-MoE), never the head."""
    targets = getattr(model, "lora_target_modules", None)
    if targets is None:
        raise ValueError(f"{type(model).__name__} declares no lora_target_modules: give the LoRA config's "
                         "target_modules (recipe key lora_target_modules)")
    return targets


def apply_peft(model, peft_config):
    """``get_peft_model`` with the plain ``PeftModel`` wrapper and this model's LoRA targets by default.

    PEFT's ``CAUSAL_LM`` wrapper (TRL's ``ModelConfig`` default task type) hooks into autoregressive ``generate``
    plumbing that a masked-diffusion LM does not have; the adapters themselves are the same. A LoRA config without
    ``target_modules`` gets the model class's ``lora_target_modules`` (``default_lora_targets``), as the CLI's
    recipes do: PEFT knows no default targets for these architectures and would raise. Explicit targets are kept.
    """
    from peft import get_peft_model

    peft_config = copy.copy(peft_config)  # the caller's config is left as it was
    if getattr(peft_config, "task_type", None) in ("CAUSAL_LM", "SEQ_2_SEQ_LM"):
        peft_config.task_type = None
    targets_unset = getattr(peft_config, "target_modules", False) is None
    if targets_unset and not getattr(peft_config, "target_parameters", None):
        peft_config.target_modules = default_lora_targets(model)
    return get_peft_model(model, peft_config)
