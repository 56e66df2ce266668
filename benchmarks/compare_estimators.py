"""The likelihood estimators side by side on the tiny arithmetic task (docs/design.md §3, issue #9).

    .venv/bin/python benchmarks/compare_estimators.py [--seeds 0 1 2 --max_steps 300]

For each estimator (``unigrpo``, ``d1``, ``coupled``) and seed: the default recipe (``recipes/tiny-arith.yaml``) from
``tiny-arith-sft`` with the same budget of optimizer steps, held-out greedy accuracy every 50 steps on the recipe's
500 selection problems, wall time. Then the spread of each estimator's per-answer log-likelihood on fixed answers:
64 greedy answers of the start model, 32 independent noisings each (Algorithm 1's first-step ratios), the std of
the estimate across noisings, averaged over answers. Writes ``benchmarks/estimators.png``; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ESTIMATOR_NAMES = ("unigrpo", "d1", "coupled")
RECIPE = "recipes/tiny-arith.yaml"


def train_once(estimator: str, seed: int, max_steps: int) -> dict:
    from transformers import PrinterCallback

    from unigrpo.cli import load_splits, parse_recipe
    from unigrpo.config import UniGRPOConfig
    from unigrpo.trainer import UniGRPOTrainer

    run_args, config, model_args = parse_recipe(UniGRPOConfig, [
        "--config", RECIPE, "--output_dir", f"outputs/estimators/{estimator}-{seed}", "--seed", str(seed),
        "--max_steps", str(max_steps), "--likelihood_estimator", estimator, "--save_strategy", "no",
        "--load_best_model_at_end", "false", "--disable_tqdm", "true", "--report_to", "none"])
    train, test = load_splits(run_args)
    trainer = UniGRPOTrainer(model_args.model_name_or_path, run_args.reward_funcs, config, train, test)
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    history = trainer.state.log_history
    curve = [(e["step"], e["eval_accuracy"]) for e in history if "eval_accuracy" in e]
    return {"curve": curve, "wall_s": round(history[-1]["train_runtime"], 1)}


def estimate_spread(num_answers: int = 64, draws: int = 32) -> dict[str, float]:
    """Mean over fixed answers of the std (across noisings) of each estimator's log-likelihood estimate."""
    from rollouts import LocalEngine, SamplerConfig
    from unigrpo.data import make_arith_dataset
    from unigrpo.likelihood import answer_token_logps, get_estimator
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
    for name in ESTIMATOR_NAMES:
        estimator, estimates = get_estimator(name), []
        for d in range(draws):
            generator = torch.Generator().manual_seed(1000 + d)
            ratio = draw_spaced_ratios(num_answers, 2, 1000, generator)[0]
            view = estimator.noise(batch.prompt_ids, batch.prompt_mask, batch.completion_ids, eligible, ratio,
                                   mask_id, generator)
            with torch.no_grad():
                logps = answer_token_logps(model, view, batch.completion_ids)  # (R, L)
            scored = view.score_mask.float()
            sums = torch.zeros(num_answers).index_add(0, view.answer_index, (logps * scored).sum(-1))
            counts = torch.zeros(num_answers).index_add(0, view.answer_index, scored.sum(-1))
            estimates.append(sums / counts.clamp(min=1))  # mean token log-prob over the scored tokens (Eq. 4)
        spreads[name] = round(torch.stack(estimates).std(dim=0).mean().item(), 4)
    return spreads


def plot(runs: dict, path: str) -> None:
    """Held-out accuracy vs step: one colour per estimator, one thin line per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for colour, (name, by_seed) in zip(("C0", "C1", "C2"), runs.items()):
        for k, r in enumerate(by_seed.values()):
            steps, values = zip(*r["curve"])
            ax.plot(steps, values, color=colour, alpha=0.8, linewidth=1, label=name if k == 0 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out greedy accuracy")
    ax.set_title("likelihood estimators on the tiny arithmetic task")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    runs = {name: {seed: train_once(name, seed, args.max_steps) for seed in args.seeds} for name in ESTIMATOR_NAMES}
    spreads = estimate_spread()

    print(f"\n| estimator | accuracy before | after {args.max_steps} steps (per seed) | mean gain | best | wall s "
          f"(mean) | log-lik. std on fixed answers |\n|---|---|---|---|---|---|---|")
    summary = {}
    for name, by_seed in runs.items():
        before = [r["curve"][0][1] for r in by_seed.values()]
        after = [r["curve"][-1][1] for r in by_seed.values()]
        best = [max(a for _, a in r["curve"]) for r in by_seed.values()]
        wall = sum(r["wall_s"] for r in by_seed.values()) / len(by_seed)
        gain = sum(a - b for a, b in zip(after, before)) / len(after)
        summary[name] = {"before": before, "after": after, "best": best, "mean_gain": round(gain, 4),
                         "wall_s": round(wall, 1), "logp_std": spreads[name]}
        print(f"| {name} | {before[0]:.3f} | {' / '.join(f'{a:.3f}' for a in after)} | {100 * gain:+.1f} | "
              f"{max(best):.3f} | {wall:.0f} | {spreads[name]} |")

    plot(runs, "benchmarks/estimators.png")
    print(json.dumps({"benchmark": "compare_estimators", "max_steps": args.max_steps, "seeds": args.seeds,
                      "estimators": summary}))


if __name__ == "__main__":
    main()
