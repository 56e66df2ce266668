"""Wrapping a diffusion LM with PEFT adapters."""

from __future__ import annotations

import copy


def apply_peft(model, peft_config):
    """``get_peft_model`` with the plain ``PeftModel`` wrapper.

    PEFT's ``CAUSAL_LM`` wrapper (TRL's ``ModelConfig`` default task type) hooks into autoregressive ``generate``
    plumbing that a masked-diffusion LM does not have; the adapters themselves are the same.
    """
    from peft import get_peft_model

    if getattr(peft_config, "task_type", None) in ("CAUSAL_LM", "SEQ_2_SEQ_LM"):
        peft_config = copy.copy(peft_config)
        peft_config.task_type = None
    return get_peft_model(model, peft_config)
