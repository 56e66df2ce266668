"""Rollout throughput: RayEngine (2 workers × 1 thread) vs LocalEngine (1 process × 2 threads), same total threads;
weight-sync seconds and bytes, LoRA vs full; Ray start-up (docs/design.md §7, issue #6).

    .venv/bin/python benchmarks/ray_rollouts.py [--prompts 64 --generations 8 --repeats 3]

Tiny shipped checkpoint ``tiny-arith-sft``, the tiny-arith recipe's sampler (L = block = steps = 6, temperature 1).
Last line: one JSON object with ``speedup`` and ``lora_sync_bytes_ratio``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from rollouts import LocalEngine, SamplerConfig
from rollouts.ray_engine import RayEngine
from unigrpo.data.arith import make_arith_dataset
from unigrpo.models import (
    LORA_TARGET_MODULES,
    load_model,
    load_tokenizer,
    resolve_mask_token_id,
    resolve_model_path,
)
from unigrpo.models.lora import apply_peft
from unigrpo.prompts import prompt_texts

CONFIG = SamplerConfig(gen_length=6, block_length=6, steps=6, temperature=1.0)


def answers_per_second(engine, prompts, G, repeats) -> float:
    engine.generate(prompts, CONFIG, G, seed=0)  # warm-up
    start = time.perf_counter()
    for r in range(repeats):
        engine.generate(prompts, CONFIG, G, seed=r + 1)
    return len(prompts) * G * repeats / (time.perf_counter() - start)


def sync_cost(engine, model, repeats=3) -> tuple[float, int]:
    """Median seconds and bytes of one update_weights (object-store put + every worker's in-place load)."""
    stats = [engine.update_weights(model) for _ in range(repeats)]
    return sorted(s.seconds for s in stats)[repeats // 2], stats[-1].bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(2)
    path = resolve_model_path("tiny-arith-sft")
    model, tokenizer = load_model(path).eval(), load_tokenizer(path)
    mask_id = resolve_mask_token_id(model, tokenizer)
    rows = make_arith_dataset("train", limit=args.prompts)
    prompts = prompt_texts([row["prompt"] for row in rows], tokenizer)

    local = answers_per_second(LocalEngine(model, tokenizer, mask_id), prompts, args.generations, args.repeats)
    print(f"local engine, 2 threads: {local:.1f} answers/s")

    engine = RayEngine(model, tokenizer, mask_id, num_workers=args.workers, num_cpus_per_worker=1,
                       num_threads_per_worker=1)
    startup = engine.startup_seconds
    print(f"ray start-up + {args.workers} workers built: {startup:.2f} s")
    ray_rate = answers_per_second(engine, prompts, args.generations, args.repeats)
    print(f"ray engine, {args.workers} workers × 1 thread: {ray_rate:.1f} answers/s")
    full_s, full_bytes = sync_cost(engine, model)
    engine.bf16_sync = True
    bf16_s, bf16_bytes = sync_cost(engine, model)
    engine.close()  # shuts Ray down too: the LoRA engine below starts its own

    lora_model = apply_peft(copy.deepcopy(model), _lora_config())
    engine = RayEngine(lora_model, tokenizer, mask_id, num_workers=args.workers, num_cpus_per_worker=1)
    lora_s, lora_bytes = sync_cost(engine, lora_model)
    engine.close()
    print(f"weight sync to {args.workers} workers: full fp32 {full_bytes} B {full_s * 1e3:.1f} ms, "
          f"bf16 {bf16_bytes} B {bf16_s * 1e3:.1f} ms, LoRA r=8 {lora_bytes} B {lora_s * 1e3:.1f} ms")
    print(json.dumps({
        "answers_per_batch": args.prompts * args.generations, "local_answers_per_s": round(local, 1),
        "ray_answers_per_s": round(ray_rate, 1), "speedup": round(ray_rate / local, 2),
        "ray_startup_s": round(startup, 2), "full_sync_bytes": full_bytes, "full_sync_s": round(full_s, 4),
        "bf16_sync_bytes": bf16_bytes, "bf16_sync_s": round(bf16_s, 4), "lora_sync_bytes": lora_bytes,
        "lora_sync_s": round(lora_s, 4), "lora_sync_bytes_ratio": round(full_bytes / lora_bytes, 1),
    }))


def _lora_config():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGET_MODULES)


if __name__ == "__main__":
    main()
