"""The three architectures side by side on their tiny presets (issue #19): sampler speed and a short RL run.

    .venv/bin/python benchmarks/architectures.py             # ≈ 3 minutes on 2 cores

For each of ``llada``, ``dream`` and ``llada-moe``, a random ``tiny`` model from ``init_tiny(architecture=...)``:
  sampler  8 prompts, gen 64, block 32, 64 steps, greedy: tokens/s (median of 3) and forwards of the plain sampler,
           the dual cache and dual cache + threshold 0.9. Random weights are never confident, so the threshold
           cannot fire: the speed-up is the cache's.
  rl       UniGRPO (plain rollouts, 16 answers a step: 4 prompts × G 4, 4-token answers) for ``--rl-steps`` steps on a
           dense, trivially learnable reward (the share of answer characters that are "7"): mean reward of the first
           vs the last 8 steps.
Logit equivalence with the published forward (max |Δlogit|, fp32) is checked by tests/test_models.py,
tests/test_dream.py and tests/test_llada_moe.py. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402

from rollouts import SamplerConfig, generate_text, tokenize_prompts  # noqa: E402
from unigrpo import UniGRPOConfig, UniGRPOTrainer  # noqa: E402
from unigrpo.models import init_tiny, load_model, load_tokenizer  # noqa: E402

ARCHITECTURES = ("llada", "dream", "llada-moe")
SETTINGS = {"plain": dict(), "dual cache": dict(cache="dual"), "dual + threshold 0.9": dict(cache="dual", threshold=0.9)}


def sevens(prompts, completions, **kwargs):
    """The share of answer characters that are "7" (4-token answers): dense and learnable from random weights."""
    return [sum(ch == "7" for ch in c) / 4 for c in completions]


def sampler_speed(folder: Path) -> dict:
    model, tokenizer = load_model(folder).eval(), load_tokenizer(folder)
    ids, mask = tokenize_prompts(tokenizer, [f"{i}+{2 * i}=" for i in range(10, 18)])
    rows = {}
    for name, options in SETTINGS.items():
        config = SamplerConfig(gen_length=64, block_length=32, steps=64, temperature=0.0, early_finish=False,
                               **options)
        times = []
        for _ in range(4):  # the first is a warm-up
            start = time.perf_counter()
            with torch.no_grad():
                out = generate_text(model, ids, mask, mask_token_id=tokenizer.mask_token_id,
                                    eos_token_id=tokenizer.eos_token_id, config=config)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times[1:])
        rows[name] = {"tokens_per_s": round(ids.shape[0] * 64 / seconds, 1), "forwards": out.forwards}
    return rows


def rl_run(folder: Path, steps: int, out: Path) -> dict:
    config = UniGRPOConfig(output_dir=str(out), num_generations=4, per_device_train_batch_size=16, num_iterations=1,
                           max_completion_length=4, block_length=4, diffusion_steps=4, temperature=1.0,
                           learning_rate=1e-2, max_steps=steps, logging_steps=1, seed=0, save_strategy="no",
                           report_to="none", disable_tqdm=True, kv_cache="none", confidence_threshold=None)
    data = Dataset.from_list([{"prompt": f"q{i:02d}="} for i in range(64)])
    trainer = UniGRPOTrainer(model=load_model(folder), reward_funcs=[sevens], args=config, train_dataset=data,
                             processing_class=load_tokenizer(folder))
    start = time.time()
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    return {"reward_before": round(statistics.fmean(rewards[:8]), 3),
            "reward_after": round(statistics.fmean(rewards[-8:]), 3), "steps": len(rewards),
            "seconds": round(time.time() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()
    torch.set_num_threads(2)
    summary = {"preset": args.preset}
    with tempfile.TemporaryDirectory() as tmp:
        for architecture in ARCHITECTURES:
            folder = init_tiny(Path(tmp) / architecture, preset=args.preset, architecture=architecture)
            params = sum(p.numel() for p in load_model(folder).parameters())
            speed = sampler_speed(folder)
            rl = rl_run(folder, args.rl_steps, Path(tmp) / f"{architecture}-rl")
            summary[architecture] = {"params": params, "sampler": speed, "rl": rl}
            print(f"{architecture}: {params / 1e6:.2f} M parameters; " + ", ".join(
                f"{name} {row['tokens_per_s']} tok/s ({row['forwards']} forwards)" for name, row in speed.items())
                + f"; RL reward {rl['reward_before']} → {rl['reward_after']} in {rl['steps']} steps "
                  f"({rl['seconds']} s)", flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
