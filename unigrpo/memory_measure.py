"""What the memory plan (``unigrpo.memory_plan``) is checked against: bytes a real model holds on this machine.

``saved_activation_bytes`` counts the distinct storages autograd saves for backward during the policy's loss
forward (``answer_token_logps`` of one micro-batch, every answer position scored), parameters excluded — the
``activations`` category of the plan, measured without a GPU (``torch.autograd.graph.saved_tensors_hooks``).
Used by ``tests/test_memory_plan.py`` and ``benchmarks/memory_plan.py``.
"""

from __future__ import annotations

import torch

from .likelihood import answer_token_logps, assemble_view


def saved_activation_bytes(model, rows: int, prompt_length: int, answer_length: int, checkpointing: bool,
                           seed: int = 0) -> int:
    """Bytes saved for backward by one loss forward of ``rows`` random (prompt, answer) pairs, then backward."""
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    V = model.config.vocab_size
    generator = torch.Generator().manual_seed(seed)
    prompts, answers = (torch.randint(0, V, (rows, n), generator=generator) for n in (prompt_length, answer_length))
    view = assemble_view(prompts, None, answers, torch.ones(rows, answer_length, dtype=torch.bool), torch.ones(rows))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = answer_token_logps(model, view, answers).mean()
    loss.backward()
    return sum(saved.values())
