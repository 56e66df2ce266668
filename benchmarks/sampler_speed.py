"""Text sampler speed on the tiny model: generated tokens per second (plain LLaDA sampler, DESIGN §4).

    python benchmarks/sampler_speed.py                       # gen 64 and 128, block 32, steps = gen/2, batch 8

A fresh random ``tiny`` model (seed 0; speed does not depend on the weights), 2 threads, one warm-up run, then
the median of ``--repeats`` timed runs per setting. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from rollouts import SamplerConfig, generate_text  # noqa: E402
from unigrpo.models import init_tiny, load_model, load_tokenizer  # noqa: E402


def time_setting(model, tokenizer, prompts, mask, gen_length, block_length, repeats) -> float:
    config = SamplerConfig(gen_length=gen_length, block_length=block_length, steps=gen_length // 2)
    kwargs = dict(mask_token_id=tokenizer.mask_token_id, eos_token_id=tokenizer.eos_token_id, config=config)
    generate_text(model, prompts, mask, **kwargs)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate_text(model, prompts, mask, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gen_lengths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--block_length", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = init_tiny(os.path.join(folder, "tiny"), preset="tiny", seed=0)
        model, tokenizer = load_model(path).eval(), load_tokenizer(path)
    prompt_texts = [f"{a:02d}+{b:02d}=" for a, b in zip(range(11, 99, 7), range(3, 99, 11))][: args.batch_size]
    enc = tokenizer(prompt_texts, padding=True, add_special_tokens=False, return_tensors="pt")
    results = {}
    print(f"{'gen':>5} {'block':>5} {'steps':>5} {'batch':>5} {'seconds':>8} {'tokens/s':>9}")
    for gen_length in args.gen_lengths:
        seconds = time_setting(model, tokenizer, enc["input_ids"], enc["attention_mask"], gen_length,
                               args.block_length, args.repeats)
        tokens_per_s = args.batch_size * gen_length / seconds
        results[str(gen_length)] = round(tokens_per_s, 1)
        print(f"{gen_length:>5} {args.block_length:>5} {gen_length // 2:>5} {args.batch_size:>5} {seconds:8.3f} "
              f"{tokens_per_s:9.1f}")
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"benchmark": "sampler_speed", "model": "tiny", "parameters": params,
                      "batch_size": args.batch_size, "block_length": args.block_length, "steps": "gen/2",
                      "threads": args.threads, "tokens_per_s": results}))


if __name__ == "__main__":
    main()
