"""Does RL with threshold rollouts learn as well as RL with the plain sampler? (issue #18 §3)

    python benchmarks/threshold_rl.py --max_steps 400    # 2 samplers × seeds 0 1 2: 14 min alone on 2 cores (RESULTS)
    python benchmarks/threshold_rl.py                    # the recipe's full 1200 steps (≈ 40 min)

The default recipe (``recipes/tiny-arith.yaml``: 1200 optimizer steps of B 16 × G 8) runs twice per seed with the
same budget: once with the plain sampler (no KV cache, one token a step), once with the fast rollouts (dual cache,
confidence threshold 0.9). d1's authors report that Fast-dLLM-style parallel decoding in online RL can feed on itself
(the policy grows over-confident and commits too many tokens at once), so besides held-out accuracy (as in
``learning.py``: before/after on prompts disjoint from the selection set) it records the rollout metrics
``rollout/tokens_per_forward`` and ``rollout/committed_confidence`` over training. Writes
``benchmarks/threshold_rl.png`` and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

from learning import ROOT, run_seed

SAMPLERS = {
    "plain": ["--kv_cache", "none", "--confidence_threshold", "null"],
    "dual + threshold 0.9": ["--kv_cache", "dual", "--confidence_threshold", "0.9"],
}
ROLLOUT_KEYS = ("rollout/tokens_per_forward", "rollout/committed_confidence")


def rollout_curve(log_history: list[dict], key: str) -> list[tuple[int, float]]:
    return [(entry["step"], entry[key]) for entry in log_history if key in entry]


def window_mean(curve: list[tuple[int, float]], first: bool, fraction: float = 0.1) -> float:
    """Mean of the first (or last) ``fraction`` of a logged curve: where a drift would show."""
    values = [v for _, v in curve]
    n = max(1, int(len(values) * fraction))
    return statistics.fmean(values[:n] if first else values[-n:])


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    colours = {"plain": "tab:blue", "dual + threshold 0.9": "tab:orange"}
    for sampler, runs in results.items():
        for i, run in enumerate(runs):
            label = sampler if i == 0 else None
            steps, values = zip(*run["curve"])
            axes[0].plot(steps, values, color=colours[sampler], alpha=0.8, label=label)
            for ax, key in zip(axes[1:], ROLLOUT_KEYS):
                steps, values = zip(*run["rollout"][key])
                ax.plot(steps, values, color=colours[sampler], alpha=0.6, linewidth=0.8, label=label)
    titles = ("held-out greedy accuracy (selection set)", "tokens committed per forward", "mean committed confidence")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend()
    seeds = len(next(iter(results.values())))
    fig.suptitle(f"UniGRPO on tiny-arith: plain vs threshold rollouts ({seeds} seeds each, same budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-arith.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "threshold_rl"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "threshold_rl.png"))
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(2)
    results: dict[str, list[dict]] = {}
    for sampler, settings in SAMPLERS.items():
        out = Path(args.out) / sampler.replace(" ", "").replace("+", "_")
        results[sampler] = []
        for seed in args.seeds:
            run = run_seed(args.recipe, seed, [*settings, "--logging_steps", "10", *overrides], out)
            history = run.pop("log_history")
            run["rollout"] = {key: rollout_curve(history, key) for key in ROLLOUT_KEYS}
            results[sampler].append(run)
    plot(results, Path(args.plot))
    summary = {"benchmark": "threshold_rl", "recipe": os.path.relpath(args.recipe, ROOT), "overrides": overrides,
               "seeds": args.seeds}
    print(f"{'sampler':>22} {'seed':>4} {'before':>7} {'after':>7} {'gain':>6} {'tok/fwd start→end':>18} "
          f"{'confidence start→end':>21} {'wall s':>7}")
    for sampler, runs in results.items():
        gains = [r["accuracy_after"] - r["accuracy_before"] for r in runs]
        for r, gain in zip(runs, gains):
            tpf, conf = (r["rollout"][key] for key in ROLLOUT_KEYS)
            print(f"{sampler:>22} {r['seed']:>4} {r['accuracy_before']:7.3f} {r['accuracy_after']:7.3f} {gain:+6.3f} "
                  f"{window_mean(tpf, True):8.2f} → {window_mean(tpf, False):5.2f} "
                  f"{window_mean(conf, True):10.3f} → {window_mean(conf, False):6.3f} {r['wall_s']:7.0f}")
        summary[sampler] = {
            "gain": [round(g, 4) for g in gains], "mean_gain": round(statistics.fmean(gains), 4),
            "accuracy_after": [round(r["accuracy_after"], 4) for r in runs],
            "tokens_per_forward_start_end": [[round(window_mean(r["rollout"][ROLLOUT_KEYS[0]], first), 3)
                                              for first in (True, False)] for r in runs],
            "committed_confidence_start_end": [[round(window_mean(r["rollout"][ROLLOUT_KEYS[1]], first), 4)
                                                for first in (True, False)] for r in runs],
            "wall_s": [r["wall_s"] for r in runs],
        }
    plain, fast = (summary[s]["mean_gain"] for s in SAMPLERS)
    summary["mean_gain_delta_points"] = round(100 * (fast - plain), 2)
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
