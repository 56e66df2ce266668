"""Every registered algorithm side by side on the tiny arithmetic task (docs/design.md §3, §3.9; issues #9, #20).

    .venv/bin/python benchmarks/compare_estimators.py [--seeds 0 1 2 --max_steps 600]

For each name in ``unigrpo.likelihood.ESTIMATORS`` and seed: the default recipe (``recipes/tiny-arith.yaml``) from
``tiny-arith-sft`` with the same budget (the optimizer steps; 16 prompts × G 8 answers sampled every μ = 2 of them),
the algorithm's own published settings where it has them (``PUBLISHED_SETTINGS``), held-out greedy accuracy every
``--eval_steps`` on the recipe's selection problems, wall time per optimizer step (rollout + update, no evaluation).

Then the spread of each algorithm's sequence score on fixed answers: 64 greedy answers of the start model, 32
independent noisings each (Algorithm 1's first-step ratios), the std of the score across noisings, averaged over
answers. The score is the one the algorithm's loss reads (``SEQUENCE_SCORES``): the mean token log-prob over the
scored tokens (Eq. 4) for the clipped-surrogate ones, wd1's sum of token log-probs, SPG's ELBO (its score for A > 0)
and its negative-side bound (A ≤ 0). The trajectory estimator draws nothing at random, so its spread is 0.

Ends with a Markdown table, the ranking by mean gain with whether neighbours' seed ranges overlap (overlap: the
budget does not separate them), ``--plot`` and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

RECIPE = "recipes/tiny-arith.yaml"
PUBLISHED_SETTINGS = {
    # the published codes take A = r − mean(r) (wd1: rev_grpo_trainer.py; SPG: its scripts), no KL, mean over answers
    "wd1": ["--beta", "0", "--scale_rewards", "none", "--loss_type", "grpo"],
    "spg": ["--beta", "0", "--scale_rewards", "none", "--loss_type", "grpo"],
}
"""name → recipe overrides; every other algorithm runs the recipe's own settings."""


def algorithm_names() -> list[str]:
    from unigrpo.likelihood import ESTIMATORS

    return list(ESTIMATORS)


def recipe_args(name: str, seed: int, max_steps: int, eval_steps: int, eval_limit: int, output_dir: str):
    """(run_args, config, model_args) of the recipe for algorithm ``name``: the same budget for every name."""
    from unigrpo.cli import parse_recipe
    from unigrpo.config import UniGRPOConfig

    return parse_recipe(UniGRPOConfig, [
        "--config", RECIPE, "--output_dir", f"{output_dir}/{name}-{seed}", "--seed", str(seed),
        "--max_steps", str(max_steps), "--eval_steps", str(eval_steps), "--eval_limit", str(eval_limit),
        "--likelihood_estimator", name, "--save_strategy", "no", "--load_best_model_at_end", "false",
        "--disable_tqdm", "true", "--report_to", "none", *PUBLISHED_SETTINGS.get(name, [])])


class StepTimer(TrainerCallback):
    """Seconds inside optimizer steps (rollout, log-probs, update), without the evaluations between them."""

    def __init__(self):
        self.total, self.steps, self.start = 0.0, 0, None

    def on_step_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.total += time.perf_counter() - self.start
        self.steps += 1


def train_once(name: str, seed: int, args) -> dict:
    from transformers import PrinterCallback

    from unigrpo.cli import load_splits
    from unigrpo.trainer import UniGRPOTrainer

    run_args, config, model_args = recipe_args(name, seed, args.max_steps, args.eval_steps, args.eval_limit,
                                               args.output_dir)
    train, test = load_splits(run_args)
    timer = StepTimer()
    trainer = UniGRPOTrainer(model_args.model_name_or_path, run_args.reward_funcs, config, train, test,
                             callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    history = trainer.state.log_history
    curve = [(e["step"], e["eval_accuracy"]) for e in history if "eval_accuracy" in e]
    return {"curve": curve, "wall_s": round(history[-1]["train_runtime"], 1),
            "s_per_step": round(timer.total / max(timer.steps, 1), 4)}


def _mean_token_logp(estimator, logps, view, num_answers):
    """Eq. 4 per answer: the mean token log-prob over every scored token of its rows."""
    scored = view.score_mask.float()
    sums = torch.zeros(num_answers).index_add(0, view.answer_index, (logps * scored).sum(-1))
    counts = torch.zeros(num_answers).index_add(0, view.answer_index, scored.sum(-1))
    return {"mean token log-prob": sums / counts.clamp(min=1)}


def _summed_logp(estimator, logps, view, num_answers):
    """wd1's log π: the sum of the answer's token log-probs on d1's view (one row per answer)."""
    return {"sum of token log-probs": torch.zeros(num_answers).index_add(
        0, view.answer_index, (logps * view.score_mask.float()).sum(-1))}


def _spg_bounds(estimator, logps, view, num_answers):
    """SPG's two scores: the ELBO (A > 0) and its negative-side bound (A ≤ 0, ``spg_negative_bound``)."""
    from unigrpo.estimator_spg import sandwiched_logp

    lower, upper = estimator.bounds(logps, view)
    negative = sandwiched_logp(lower, upper, -torch.ones_like(lower), estimator.negative_bound, estimator.mix_weight)
    return {"ELBO (A > 0)": lower, f"{estimator.negative_bound} bound (A ≤ 0)": negative}


SEQUENCE_SCORES = {"wd1": _summed_logp, "spg": _spg_bounds}
"""name → the sequence score its loss reads; others: Eq. 4's mean token log-prob (the clipped surrogate's inputs)."""


def estimate_spread(names: list[str], num_answers: int = 64, draws: int = 32) -> dict[str, dict[str, float]]:
    """{name: {score: mean over fixed answers of its std across noisings}}, each algorithm built with the
    recipe's options for it."""
    from rollouts import LocalEngine, SamplerConfig
    from unigrpo.data import make_arith_dataset
    from unigrpo.likelihood import answer_token_logps, estimator_options, get_estimator, rollout_inputs
    from unigrpo.masking import draw_spaced_ratios, loss_eligible_positions
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
    from unigrpo.prompts import prompt_texts

    path = resolve_model_path("tiny-arith-sft")
    model, tok = load_model(path).eval(), load_tokenizer(path)
    mask_id = resolve_mask_token_id(model, tok)
    rows = make_arith_dataset("test", limit=num_answers)
    batch = LocalEngine(model, tok, mask_id).generate(prompt_texts([r["prompt"] for r in rows], tok),
                                                      SamplerConfig(gen_length=6, block_length=6, steps=6), 1, seed=0)
    eligible = loss_eligible_positions(batch.completion_ids, tok.eos_token_id)
    spreads = {}
    for name in names:
        config = recipe_args(name, 0, 1, 1, 1, "outputs/estimators")[1]
        estimator = get_estimator(name, **estimator_options(name, config))
        score = SEQUENCE_SCORES.get(name, _mean_token_logp)
        estimates: dict[str, list[torch.Tensor]] = {}
        for d in range(draws):
            generator = torch.Generator().manual_seed(1000 + d)
            ratio = draw_spaced_ratios(num_answers, 2, 1000, generator)[0]
            view = estimator.noise(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, eligible, ratio,
                                   mask_id, generator, **rollout_inputs(estimator, batch))
            with torch.no_grad():
                logps = answer_token_logps(model, view, batch.completion_ids)  # (R, L)
            for label, values in score(estimator, logps, view, num_answers).items():
                estimates.setdefault(label, []).append(values)
        spreads[name] = {label: round(torch.stack(v).std(dim=0).mean().item(), 4) for label, v in estimates.items()}
    return spreads


def gain_summary(by_seed: dict) -> dict:
    """Per seed: accuracy before / after / best and the gain; over seeds: mean gain, its std (n ≥ 2), min and max."""
    before = [r["curve"][0][1] for r in by_seed.values()]
    after = [r["curve"][-1][1] for r in by_seed.values()]
    gains = [a - b for a, b in zip(after, before)]
    return {"before": before, "after": after, "best": [max(a for _, a in r["curve"]) for r in by_seed.values()],
            "gain_mean": round(statistics.fmean(gains), 4),
            "gain_std": round(statistics.stdev(gains), 4) if len(gains) > 1 else None,
            "gain_min": round(min(gains), 4), "gain_max": round(max(gains), 4),
            "wall_s": round(statistics.fmean(r["wall_s"] for r in by_seed.values()), 1),
            "s_per_step": round(statistics.fmean(r["s_per_step"] for r in by_seed.values()), 4)}


def ranking(summary: dict) -> list[dict]:
    """Names by mean gain, each with whether its seeds' [min, max] gain range overlaps the next one's."""
    order = sorted(summary, key=lambda n: summary[n]["gain_mean"], reverse=True)
    rows = []
    for upper, lower in zip(order, order[1:] + [None]):
        overlaps = lower is not None and summary[upper]["gain_min"] <= summary[lower]["gain_max"]
        rows.append({"name": upper, "gain_mean": summary[upper]["gain_mean"],
                     "overlaps_next": overlaps if lower is not None else None})
    return rows


def plot(runs: dict, path: str) -> None:
    """Held-out accuracy vs step: one colour per algorithm, one thin line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for k_name, (name, by_seed) in enumerate(runs.items()):
        for k, r in enumerate(by_seed.values()):
            steps, values = zip(*r["curve"])
            ax.plot(steps, values, color=f"C{k_name}", alpha=0.8, linewidth=1, label=name if k == 0 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title("algorithms on the tiny arithmetic task (same budget)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(summary: dict, spreads: dict, max_steps: int) -> None:
    print(f"\n| algorithm | accuracy before | after {max_steps} steps (per seed) | gain mean ± std [min, max] | "
          f"s / step | sequence-score std on fixed answers |\n|---|---|---|---|---|---|")
    for name, s in summary.items():
        std = "n/a" if s["gain_std"] is None else f"{100 * s['gain_std']:.1f}"
        scores = "; ".join(f"{label} {value}" for label, value in spreads[name].items())
        print(f"| {name} | {s['before'][0]:.3f} | {' / '.join(f'{a:.3f}' for a in s['after'])} | "
              f"{100 * s['gain_mean']:+.1f} ± {std} [{100 * s['gain_min']:+.1f}, {100 * s['gain_max']:+.1f}] | "
              f"{s['s_per_step']:.3f} | {scores} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=600)
    parser.add_argument("--eval_steps", type=int, default=50, help="capped at max_steps, so the last step is scored")
    parser.add_argument("--eval_limit", type=int, default=500, help="held-out problems (the recipe's 500)")
    parser.add_argument("--spread_answers", type=int, default=64)
    parser.add_argument("--spread_draws", type=int, default=32)
    parser.add_argument("--output_dir", default="outputs/estimators")
    parser.add_argument("--plot", default="benchmarks/estimators.png")
    args = parser.parse_args()
    args.eval_steps = min(args.eval_steps, args.max_steps)
    torch.set_num_threads(2)
    names = algorithm_names()
    config = recipe_args(names[0], 0, 1, 1, 1, args.output_dir)[1]
    completions = config.per_device_train_batch_size * config.gradient_accumulation_steps  # per rollout
    runs = {name: {seed: train_once(name, seed, args) for seed in args.seeds} for name in names}
    spreads = estimate_spread(names, args.spread_answers, args.spread_draws)
    summary = {name: {**gain_summary(by_seed), "score_std": spreads[name]} for name, by_seed in runs.items()}
    print_table(summary, spreads, args.max_steps)
    order = ranking(summary)
    print("ranking by mean gain: " + " > ".join(
        f"{r['name']}{' (overlaps next)' if r['overlaps_next'] else ''}" for r in order))
    plot(runs, args.plot)
    print(json.dumps({"benchmark": "compare_estimators", "max_steps": args.max_steps, "seeds": args.seeds,
                      "completions_per_sample": completions,
                      "updates_per_sample": config.num_iterations, "eval_limit": args.eval_limit,
                      "settings": {n: PUBLISHED_SETTINGS.get(n, []) for n in names}, "ranking": order,
                      "estimators": summary}))


if __name__ == "__main__":
    main()
