"""Sharded full fine-tuning (issue #17): whole weights for the passes that run outside the training wrapper.

Under FSDP2 (``fully_shard`` per decoder layer, the model class's ``_no_split_modules``; accelerate's ``fsdp_version:
2``) and DeepSpeed ZeRO-3 every process holds only a shard of each parameter. The training forward/backward goes
through the wrapper, which gathers each block just in time. The rollouts, the no-grad θ_old / reference log-probs,
evaluation and the weights sent to Ray workers call the policy's own module instead, a different number of times on
each process (threshold decoding stops a block when its tokens are confident; a process's micro-batch may hold no
``t2i`` row). So those passes run inside ``whole_model``, which gathers every parameter once, keeps it whole for every
forward inside, and frees it on exit (as TRL's ``unwrap_model_for_generation`` does for ZeRO-3):

- FSDP2: ``unshard()`` every ``FSDPModule`` (one all-gather each), with ``reshard_after_forward`` off inside so
  the forward hooks leave the weights whole, then ``reshard()`` and the old setting back;
- ZeRO-3: TRL's ``unwrap_model_for_generation`` (``deepspeed.zero.GatheredParameters`` with the engine's hooks
  removed);
- DDP, ZeRO-1/2, one process: parameters are already whole; the unwrapped module.

Peak memory inside is one whole copy of the weights (in FSDP2's ``param_dtype``, bf16 with ``mixed_precision:
bf16``), as with ZeRO-2's whole weights, but only during generation and the no-grad passes; gradients and
optimizer states stay sharded throughout (``per_rank_state_bytes`` measures them).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def is_zero3(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


def fsdp_version(accelerator) -> int | None:
    """1 or 2 under accelerate's FSDP (its plugin, as the Trainer's ``is_fsdp_enabled`` reads it), None otherwise."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    return None if plugin is None else plugin.fsdp_version


def check_sharding(accelerator) -> None:
    """One clear error for a sharding set-up the trainer cannot run: FSDP1 (its flat-parameter wrapper has no
    per-module ``unshard``), ZeRO-3 without DeepSpeed or without a GPU."""
    if fsdp_version(accelerator) == 1:
        raise ValueError(
            "FSDP version 1 is not supported: set fsdp_version: 2 in the accelerate config (recipes/accelerate/"
            "fsdp.yaml is FSDP2; docs/scaling-out.md)")
    if is_zero3(accelerator):
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise ValueError("DeepSpeed ZeRO-3 (recipes/accelerate/deepspeed_zero3.yaml) needs DeepSpeed: pip install "
                             "deepspeed on a GPU machine, or shard with FSDP2 instead (recipes/accelerate/fsdp.yaml, "
                             "which also runs on CPU)") from None
        if accelerator.device.type != "cuda":
            raise ValueError(f"DeepSpeed ZeRO-3 needs GPUs (this process runs on {accelerator.device.type}): on CPU "
                             f"shard with FSDP2 instead (recipes/accelerate/fsdp.yaml; docs/scaling-out.md)")


def fsdp_modules(model: nn.Module) -> list:
    """Every ``fully_shard``-ed module of ``model`` (blocks, embedding / head groups, the root)."""
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def reshards_after_forward(module) -> bool:
    """Whether this FSDP2 module frees its whole weights after a forward. (torch has no public getter: a param group
    reshards after forward exactly when it has a post-forward mesh.)"""
    return any(group.post_forward_mesh_info is not None for group in module._get_fsdp_state()._fsdp_param_groups)


@contextmanager
def unsharded(modules: list):
    """FSDP2 modules with whole weights inside: one all-gather per module on entry, every forward inside leaves them
    whole, ``reshard()`` on exit. Every process must enter together (the all-gathers are collective)."""
    settings = [reshards_after_forward(m) for m in modules]
    for m in modules:
        m.set_reshard_after_forward(False, recurse=False)
        m.unshard()
    try:
        yield
    finally:
        for m, setting in zip(modules, settings):
            m.reshard()
            m.set_reshard_after_forward(setting, recurse=False)


_WHOLE: set[int] = set()  # ids of the modules inside a ``whole_model`` now (a nested call gathers nothing)


@contextmanager
def whole_model(accelerator, model: nn.Module):
    """The module to call outside the training wrapper, with whole weights while inside (module docstring).

    ``model``: the trainer's model as the Trainer holds it (``model_wrapped``: the DeepSpeed engine under ZeRO-3,
    whose hooks are removed inside), or a frozen copy such as the reference. Under FSDP2 / ZeRO-3 every process must
    enter and leave together; how many forwards each makes inside is free. Nested calls on the same model gather
    once, at the outermost."""
    unwrapped = accelerator.unwrap_model(model)
    key = id(unwrapped)
    if key in _WHOLE:
        yield unwrapped
        return
    _WHOLE.add(key)
    try:
        if is_zero3(accelerator):
            from trl.models import unwrap_model_for_generation

            with unwrap_model_for_generation(model, accelerator) as gathered:
                yield gathered
        elif modules := fsdp_modules(unwrapped):  # FSDP2: accelerate's fully_shard, or a model sharded by hand
            with unsharded(modules):
                yield unwrapped
        else:
            yield unwrapped
    finally:
        _WHOLE.discard(key)


def local_bytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds of ``tensor`` (its local shard when it is a ``DTensor``)."""
    from torch.distributed.tensor import DTensor

    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    return local.numel() * local.element_size()


def per_rank_state_bytes(model: nn.Module, optimizer) -> dict[str, int]:
    """{parameters, gradients, optimizer}: bytes this process holds (local shards under FSDP2). Trainable parameters
    only for gradients; every tensor of the optimizer's state (Adam: exp_avg, exp_avg_sq, step)."""
    parameters = sum(local_bytes(p) for p in model.parameters())
    gradients = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    states = sum(local_bytes(v) for state in optimizer.state.values() for v in state.values()
                 if isinstance(v, torch.Tensor))
    return {"parameters": parameters, "gradients": gradients, "optimizer": states}
