"""Held-out exact match and confidence of the confident benchmark model (issue #18) under the plain sampler.

    OMP_NUM_THREADS=1 python benchmarks/confident_model.py --model unigrpo/assets/tiny-copy-sft --rows 32

The plain sampler is the reference of every rollout speed-up: no KV cache, no threshold, greedy, one token committed
per step (gen 256, one block, 256 steps). Prints one JSON line: ``accuracy`` (exact match of the answer),
``committed_confidence`` (mean probability of the committed tokens, the model's per-token confidence),
``answer_tokens`` (mean digits of the gold answers) and the wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from rollouts import SamplerConfig, generate_text, tokenize_prompts
from unigrpo.data.long_answers import make_copy_dataset
from unigrpo.models import load_model, load_tokenizer


def plain_config(gen_length: int) -> SamplerConfig:
    """The plain sampler: one block, one token a step, greedy, no cache, no threshold (every row to the end)."""
    extra = {"early_finish": False} if "early_finish" in {f.name for f in dataclasses.fields(SamplerConfig)} else {}
    return SamplerConfig(gen_length=gen_length, block_length=gen_length, steps=gen_length, temperature=0.0,
                         cache="none", threshold=None, **extra)


def evaluate(model_path: str, rows: int, batch_size: int, gen_length: int) -> dict:
    model, tokenizer = load_model(model_path).eval(), load_tokenizer(model_path)
    data = make_copy_dataset("test", limit=rows)
    correct, confidence, committed, start = 0, 0.0, 0.0, time.time()
    for first in range(0, len(data), batch_size):
        batch = data[first : first + batch_size]
        prompt_ids, prompt_mask = tokenize_prompts(tokenizer, batch["prompt"])
        with torch.no_grad():
            out = generate_text(model, prompt_ids, prompt_mask, mask_token_id=tokenizer.mask_token_id,
                                eos_token_id=tokenizer.eos_token_id, config=plain_config(gen_length))
        texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
        correct += sum(text.strip() == gold for text, gold in zip(texts, batch["answer"]))
        confidence += out.stats.confidence_sum
        committed += out.stats.committed
        print(f"rows {first + len(texts)}/{len(data)}: {correct} exact, {time.time() - start:.0f} s", flush=True)
    return {"model": model_path, "rows": len(data), "accuracy": correct / len(data),
            "committed_confidence": confidence / max(committed, 1.0),
            "answer_tokens": sum(len(a) for a in data["answer"]) / len(data), "gen_length": gen_length,
            "threads": torch.get_num_threads(), "seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-copy-sft", help="folder or shipped checkpoint name")
    parser.add_argument("--rows", type=int, default=32, help="held-out rows of the copy task's test split")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(evaluate(args.model, args.rows, args.batch_size, args.gen_length)))


if __name__ == "__main__":
    main()
