"""UniGRPO against rejection-sampling fine-tuning with the same compute (issue #20 §3).

    .venv/bin/python benchmarks/rl_vs_rft.py [--seeds 0 1 2 --max_steps 1200]

Both start from ``tiny-arith-sft`` with the demo recipe (``recipes/tiny-arith.yaml``): every μ optimizer steps, B 16
prompts × G 8 answers sampled with the recipe's rollout sampler and temperature. UniGRPO runs the recipe as it is.
RFT (``unigrpo.rft``) keeps the answers ``math_correctness`` calls correct and makes μ masked-diffusion SFT updates on
them (the SFT recipe's ``count`` noise law; AdamW with the recipe's learning rate, betas, weight decay and gradient
clipping, unless ``--rft_learning_rate``). Same completions sampled, same number of optimizer steps; held-out greedy
accuracy every ``--eval_steps`` on the recipe's selection problems for both. Writes ``--plot`` (both curves, one
line per seed); ends with one JSON line: before / after / best per seed, mean gain of each, wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_estimators import gain_summary, recipe_args, train_once  # noqa: E402


def train_rft(seed: int, args) -> dict:
    """RFT with the recipe's budget and settings → {curve, wall_s, s_per_step, kept (fraction per sample)}."""
    from transformers import set_seed

    from rollouts import LocalEngine
    from unigrpo.cli import load_splits
    from unigrpo.evaluation import evaluate_accuracy
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
    from unigrpo.rewarding import resolve_reward_funcs
    from unigrpo.rft import RejectionSampler, rft_loss
    from unigrpo.tasks import TaskRunner

    run_args, config, model_args = recipe_args("unigrpo", seed, args.max_steps, args.eval_steps, args.eval_limit,
                                               args.output_dir)
    set_seed(seed)
    train, test = load_splits(run_args)
    path = resolve_model_path(model_args.model_name_or_path)
    model, tok = load_model(path), load_tokenizer(path)
    mask_id = resolve_mask_token_id(model, tok)
    funcs, names = resolve_reward_funcs(run_args.reward_funcs)
    runner = TaskRunner(LocalEngine(model, tok, mask_id), tok, config.sampler_config(), vocab_rows=None,
                        eos_in_loss=config.eos_in_loss)
    sampler = RejectionSampler(runner, tok, funcs, names, config.num_generations, config.accuracy_reward)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.rft_learning_rate or config.learning_rate,
                                  betas=(config.adam_beta1, config.adam_beta2), weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed + 1)  # the SFT masks' own stream, apart from the sampler's
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    B = config.per_device_train_batch_size // config.num_generations  # prompts per sample

    def held_out() -> float:
        model.eval()
        return evaluate_accuracy(model, tok, test, funcs, names, config.sampler_config(config.eval_temperature),
                                 mask_id, accuracy_reward=config.accuracy_reward,
                                 batch_size=config.per_device_eval_batch_size, seed=seed)["accuracy"]

    curve, kept_fraction, step, busy, start = [(0, held_out())], [], 0, 0.0, time.perf_counter()
    while step < args.max_steps:
        tick = time.perf_counter()
        cycle = step // config.num_iterations
        rows = [train[order[(cycle * B + j) % len(order)]] for j in range(B)]
        model.eval()
        kept, _ = sampler.sample(rows, seed=seed * 100_003 + cycle)
        kept_fraction.append(kept.size / kept.drawn)
        model.train()
        for _ in range(min(config.num_iterations, args.max_steps - step)):  # μ updates on one sample, as UniGRPO
            if kept.size:
                loss = rft_loss(model, kept, mask_id, args.rft_noise, generator)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            step += 1
            if step % args.eval_steps == 0 or step == args.max_steps:
                busy += time.perf_counter() - tick
                curve.append((step, held_out()))
                model.train()
                tick = time.perf_counter()
        busy += time.perf_counter() - tick
    return {"curve": curve, "wall_s": round(time.perf_counter() - start, 1), "s_per_step": round(busy / step, 4),
            "kept_mean": round(statistics.fmean(kept_fraction), 4)}


def plot(runs: dict, path: str) -> None:
    """Held-out accuracy vs optimizer step, UniGRPO and RFT, one line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for colour, (method, by_seed) in zip(("C0", "C3"), runs.items()):
        for k, r in enumerate(by_seed.values()):
            steps, values = zip(*r["curve"])
            ax.plot(steps, values, color=colour, alpha=0.8, linewidth=1, label=method if k == 0 else None)
    ax.set_xlabel("optimizer step (16 prompts × 8 answers sampled every 2 steps)")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title("UniGRPO vs rejection-sampling fine-tuning, same compute")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=1200, help="the demo's budget")
    parser.add_argument("--eval_steps", type=int, default=50, help="capped at max_steps, so the last step is scored")
    parser.add_argument("--eval_limit", type=int, default=500, help="held-out problems (the recipe's 500)")
    parser.add_argument("--rft_learning_rate", type=float, default=None, help="default: the recipe's")
    parser.add_argument("--rft_noise", default="count", help="SFT noise law (tiny-arith-sft.yaml's: count)")
    parser.add_argument("--output_dir", default="outputs/rl_vs_rft")
    parser.add_argument("--plot", default="benchmarks/rl_vs_rft.png")
    args = parser.parse_args()
    args.eval_steps = min(args.eval_steps, args.max_steps)
    torch.set_num_threads(2)
    runs = {"unigrpo": {seed: train_once("unigrpo", seed, args) for seed in args.seeds},
            "rft": {seed: train_rft(seed, args) for seed in args.seeds}}
    summary = {method: gain_summary(by_seed) for method, by_seed in runs.items()}
    summary["rft"]["kept_mean"] = round(statistics.fmean(r["kept_mean"] for r in runs["rft"].values()), 4)
    print(f"\n| method | accuracy before | after {args.max_steps} steps (per seed) | gain mean [min, max] | best | "
          f"s / step |\n|---|---|---|---|---|---|")
    for method, s in summary.items():
        print(f"| {method} | {s['before'][0]:.3f} | {' / '.join(f'{a:.3f}' for a in s['after'])} | "
              f"{100 * s['gain_mean']:+.1f} [{100 * s['gain_min']:+.1f}, {100 * s['gain_max']:+.1f}] | "
              f"{max(s['best']):.3f} | {s['s_per_step']:.3f} |")
    plot(runs, args.plot)
    config = recipe_args("unigrpo", 0, 1, 1, 1, args.output_dir)[1]
    print(json.dumps({"benchmark": "rl_vs_rft", "max_steps": args.max_steps, "seeds": args.seeds,
                      "completions_per_sample": config.per_device_train_batch_size,
                      "updates_per_sample": config.num_iterations,
                      "rft_learning_rate": args.rft_learning_rate or config.learning_rate,
                      "curves": {m: {str(s): r["curve"] for s, r in by_seed.items()} for m, by_seed in runs.items()},
                      **summary}))


if __name__ == "__main__":
    main()
