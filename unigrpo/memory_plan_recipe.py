"""The memory plan of a recipe on a launch: what ``unigrpo check --plan`` reads (the recipe, the accelerate config,
the model's config.json or a published shape) before calling ``unigrpo.memory_plan.plan_memory``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .memory_plan import (DEFAULT_PROMPT_LENGTH, KNOWN_SHAPES, LORA_MODULES, MemoryPlan, ModelShape, plan_memory,
                          recipe_values)


def parse_memory_size(text: str) -> int:
    """``80GB`` (10⁹ bytes, as cards are sold), ``80GiB`` (2³⁰), ``81920MiB``, ``0.5TB``; a bare number is GB."""
    units = {"": 10**9, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
             "gib": 2**30, "tib": 2**40, "g": 10**9}
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not match or match.group(2).lower() not in units:
        raise ValueError(f"--gpu_memory {text!r}: give a size such as 80GB, 80GiB or 81920MiB")
    return int(float(match.group(1)) * units[match.group(2).lower()])


def launch_from_accelerate_config(path) -> tuple[str, int]:
    """(strategy, num_processes) of an ``accelerate`` config file: FSDP → fsdp2 (FSDP1 shards the same state),
    DEEPSPEED with zero_stage 2 / 3 → zero2 / zero3, anything else → ddp."""
    import yaml

    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as error:
        raise FileNotFoundError(f"--accelerate_config {str(path)!r}: {error.strerror or error}") from None
    kind = str(config.get("distributed_type", "NO")).upper()
    strategy = "ddp"
    if kind == "FSDP":
        strategy = "fsdp2"
    elif kind == "DEEPSPEED":
        stage = int((config.get("deepspeed_config") or {}).get("zero_stage", 0))
        if stage not in (2, 3):
            raise ValueError(f"{path}: deepspeed_config.zero_stage={stage}: the memory plan knows stages 2 and 3")
        strategy = f"zero{stage}"
    return strategy, int(config.get("num_processes") or 1)


def model_config_for(name) -> dict:
    """config.json keys of a model, without loading it: a local folder (or a LoRA adapter's base), a shipped
    checkpoint, ``random-<preset>``, a hub id in the local hub cache, or else a published shape (``KNOWN_SHAPES``)."""
    from .models.loading import ASSETS, builtin_checkpoints, is_hub_id

    name = str(name)
    if name.startswith("random-"):
        from .models import tiny_config

        return tiny_config(name.removeprefix("random-")).to_dict()
    folder = Path(name) if Path(name).exists() else ASSETS / name if name in builtin_checkpoints() else None
    if folder is not None:
        if (folder / "config.json").is_file():
            return json.loads((folder / "config.json").read_text())
        if (folder / "adapter_config.json").is_file():
            base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if base:
                return model_config_for(base)
        raise FileNotFoundError(f"model {name!r} has no config.json (is it a model folder?)")
    if is_hub_id(name):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text())
        if name in KNOWN_SHAPES:
            return dict(KNOWN_SHAPES[name])
    raise FileNotFoundError(f"model_name_or_path {name!r}: no config.json here and not a known shape "
                            f"({sorted(KNOWN_SHAPES)}); run the plan where the model folder is")


def lora_targets_of(target_modules, names=LORA_MODULES) -> list[str]:
    """Which of an architecture's block projections ``names`` (``ModelShape.lora_names``) a PEFT
    ``target_modules`` names (a list or the model class's regex); all of them by default."""
    if target_modules is None:
        return list(names)
    text = " ".join(target_modules) if isinstance(target_modules, (list, tuple)) else str(target_modules)
    return [name for name in names if name in text] or list(names)


def plan_recipe(path, accelerate_config=None, num_processes: int | None = None, gpu_memory: str | None = None,
                prompt_length: int = DEFAULT_PROMPT_LENGTH) -> MemoryPlan:
    """The plan of a train recipe (already checked) on a launch: the accelerate config's strategy and process count,
    ``num_processes`` overriding it (default 1 rank of DDP). The recipe's ``bf16`` counts as written, even on a
    machine without a GPU."""
    from .cli import parse_recipe
    from .config import UniGRPOConfig
    from .recipe_check import read_recipe

    raw = read_recipe(path)
    _, config, model_args = parse_recipe(UniGRPOConfig, ["--config", str(path), "--bf16", "false", "--fp16", "false"])
    recipe = {**recipe_values(config), "bf16": bool(raw.get("bf16")), "fp16": bool(raw.get("fp16"))}
    strategy, ranks = launch_from_accelerate_config(accelerate_config) if accelerate_config else ("ddp", 1)
    shape = ModelShape.from_config(model_config_for(model_args.model_name_or_path))
    return plan_memory(
        shape, recipe, num_processes=num_processes or ranks,
        strategy=strategy, use_peft=bool(model_args.use_peft), lora_r=model_args.lora_r,
        lora_targets=lora_targets_of(model_args.lora_target_modules, shape.lora_names),
        lora_dropout=model_args.lora_dropout,
        gpu_memory_bytes=parse_memory_size(gpu_memory) if gpu_memory else None, prompt_length=prompt_length)
