"""Text sampler speed on the tiny model: generated tokens per second of the plain LLaDA sampler (docs/design.md §4).

    python benchmarks/sampler_speed.py          # gen 64 and 128, block 32, steps = gen/2, temperature 0, batch 8

A fresh random ``tiny`` model (seed 0; speed does not depend on the weights), 2 CPU threads, one warm-up run per
setting, then the median of ``--repeats`` timed runs. Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from rollouts import SamplerConfig, generate_text  # noqa: E402
from unigrpo.models import init_tiny, load_model, load_tokenizer  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_generation(model, prompts, mask, ids: dict, config: SamplerConfig, repeats: int, seed: int) -> float:
    """Median seconds of one ``generate_text`` call, after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        generator = torch.Generator(device=prompts.device).manual_seed(seed)
        synchronize(prompts.device)
        start = time.perf_counter()
        generate_text(model, prompts, mask, config=config, generator=generator, **ids)
        synchronize(prompts.device)
        if i:  # the first call is the warm-up
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen_lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--block_length", type=int, default=32)
    parser.add_argument("--tokens_per_step", type=int, default=2, help="steps = gen_length / tokens_per_step")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as folder:
        path = init_tiny(os.path.join(folder, "tiny"), preset="tiny", seed=0)
        model, tokenizer = load_model(path).to(device).eval(), load_tokenizer(path)
    # arithmetic prompts of different lengths, so the batch is left-padded as in training
    texts = [f"{a}+{b}=" for a, b in zip(range(7, 10**6, 977), range(3, 10**6, 7919))][: args.batch_size]
    enc = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt").to(device)
    ids = dict(mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id)

    rows = []
    print(f"{'gen':>5} {'block':>5} {'steps':>5} {'batch':>5} {'seconds':>8} {'tokens/s':>9} {'steps/s':>8}")
    for gen_length in args.gen_lengths:
        config = SamplerConfig(gen_length=gen_length, block_length=args.block_length,
                               steps=gen_length // args.tokens_per_step, temperature=args.temperature)
        seconds = time_generation(model, enc["input_ids"], enc["attention_mask"], ids, config, args.repeats,
                                  args.seed)
        rows.append((gen_length, config.steps, seconds))
        print(f"{gen_length:>5} {args.block_length:>5} {config.steps:>5} {args.batch_size:>5} {seconds:8.3f} "
              f"{args.batch_size * gen_length / seconds:9.1f} {config.steps / seconds:8.1f}")

    print(json.dumps({
        "benchmark": "sampler_speed",
        "model": "tiny",
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "threads": args.threads,
        "batch_size": args.batch_size,
        "prompt_length": enc["input_ids"].shape[1],
        "block_length": args.block_length,
        "steps": f"gen/{args.tokens_per_step}",
        "temperature": args.temperature,
        "seconds": {str(g): round(s, 4) for g, _, s in rows},
        "tokens_per_s": {str(g): round(args.batch_size * g / s, 1) for g, _, s in rows},
    }))


if __name__ == "__main__":
    main()
