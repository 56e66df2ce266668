"""The memory plan (unigrpo/memory_plan.py) against measured bytes on CPU, and the plans of the 8B recipes.

    HF_HUB_OFFLINE=1 python benchmarks/memory_plan.py

Measured (CPU, fp32, seed 0): parameter / gradient / AdamW-state bytes after one step, and the distinct storages
saved for backward by one micro-batch of the policy's loss forward (``saved_tensors_hooks``, parameters excluded),
with and without activation checkpointing, full fine-tuning and LoRA (r 8, no dropout), for the tiny and micro
presets. Then the plans printed for recipes/llada-8b-gsm8k.yaml on 8 × 80 GB (DDP, ZeRO-2, FSDP2) and the LoRA
recipe on 1 × 80 GB. Ends with one JSON line.
"""

from __future__ import annotations

import json

import torch
from peft import LoraConfig

from unigrpo.memory_measure import saved_activation_bytes
from unigrpo.memory_plan import GIB, plan_memory
from unigrpo.memory_plan_recipe import plan_recipe
from unigrpo.models import LORA_TARGET_MODULES, LLaDAModelLM, tiny_config
from unigrpo.models.lora import apply_peft

RECIPE = dict(bf16=False, fp16=False, activation_checkpointing=False, gradient_checkpointing=False,
              likelihood_estimator="unigrpo", eval_strategy="no", per_device_train_batch_size=8,
              per_device_eval_batch_size=8, gradient_accumulation_steps=1, num_generations=4,
              max_completion_length=64, block_length=32, kv_cache="dual", cfg_scale=0.0, num_iterations=2,
              beta=0.0, kl_reference="initial")
PROMPT = 48


def state_bytes(model) -> dict[str, int]:
    """Parameter, gradient and AdamW-state bytes after one optimizer step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    size = lambda ts: sum(t.numel() * t.element_size() for t in ts)  # noqa: E731
    states = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]
    return {"weights": size(model.parameters()), "gradients": size(p.grad for p in trainable),
            "optimizer": size(states)}


def saved_bytes(model, checkpointing: bool) -> int:
    """Bytes saved for backward by the loss forward of one micro-batch of the recipe (parameters excluded)."""
    return saved_activation_bytes(model, RECIPE["per_device_train_batch_size"], PROMPT,
                                  RECIPE["max_completion_length"], checkpointing)


def compare(preset: str, lora: bool) -> dict:
    """Plan vs measured for one model; relative error of each figure."""
    torch.manual_seed(0)
    config = tiny_config(preset)
    build = lambda: (apply_peft(LLaDAModelLM(config), LoraConfig(r=8, lora_alpha=16,  # noqa: E731
                                                                  target_modules=LORA_TARGET_MODULES))
                     if lora else LLaDAModelLM(config))
    measured = {**state_bytes(build()), "saved_full": saved_bytes(build(), False),
                "saved_checkpointed": saved_bytes(build(), True)}
    plan = plan_memory(config, RECIPE, use_peft=lora, lora_r=8, prompt_length=PROMPT)
    planned = {**{k: plan.bytes[k] for k in ("weights", "gradients", "optimizer")},
               "saved_full": plan.details["saved_full"], "saved_checkpointed": plan.details["saved_checkpointed"]}
    name = f"{preset}{'-lora' if lora else ''}"
    for key in planned:
        print(f"{name:<11} {key:<19} plan {planned[key]:>11,}  measured {measured[key]:>11,}  "
              f"{planned[key] / measured[key] - 1:+.1%}")
    return {f"{name}/{k}": round(planned[k] / measured[k] - 1, 4) for k in planned}


def main() -> None:
    errors = {}
    for preset in ("tiny", "micro"):
        for lora in (False, True):
            errors.update(compare(preset, lora))
    launches = {"full-ddp-8x80": ("recipes/llada-8b-gsm8k.yaml", None, 8),
                "full-zero2-8x80": ("recipes/llada-8b-gsm8k.yaml", "recipes/accelerate/deepspeed_zero2.yaml", 8),
                "full-fsdp2-8x80": ("recipes/llada-8b-gsm8k.yaml", "recipes/accelerate/fsdp.yaml", 8),
                "lora-1x80": ("recipes/llada-8b-gsm8k-lora.yaml", None, 1)}
    peaks = {}
    for name, (recipe, accelerate_config, ranks) in launches.items():
        plan = plan_recipe(recipe, accelerate_config, ranks, "80GB")
        print(f"\n{name}: {recipe}\n{plan.format()}")
        peaks[name] = {"peak_gib": round(plan.total / GIB, 2), "fits": plan.fits}
    print(json.dumps({"max_abs_rel_error": max(abs(e) for e in errors.values()), "rel_errors": errors,
                      "plans_8b": peaks}))


if __name__ == "__main__":
    main()
