"""Wrapping a diffusion LM with PEFT adapters."""

from __future__ import annotations

import copy


def apply_peft(model, peft_config):
    """``get_peft_model`` with the plain ``PeftModel`` wrapper and this model's LoRA targets by default.

    PEFT's ``CAUSAL_LM`` wrapper (TRL's ``ModelConfig`` default task type) hooks into autoregressive ``generate``
    plumbing that a masked-diffusion LM does not have; the adapters themselves are the same. A LoRA config without
    ``target_modules`` gets ``LORA_TARGET_MODULES`` (every block's attention and MLP projections, not the LM head),
    as the CLI's recipes do: PEFT knows no default targets for this architecture and would raise.
    """
    from peft import get_peft_model

    from .modeling_llada import LORA_TARGET_MODULES

    peft_config = copy.copy(peft_config)  # the caller's config is left as it was
    if getattr(peft_config, "task_type", None) in ("CAUSAL_LM", "SEQ_2_SEQ_LM"):
        peft_config.task_type = None
    targets_unset = getattr(peft_config, "target_modules", False) is None
    if targets_unset and not getattr(peft_config, "target_parameters", None):
        peft_config.target_modules = LORA_TARGET_MODULES
    return get_peft_model(model, peft_config)
