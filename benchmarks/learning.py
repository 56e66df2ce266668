"""Does the default recipe learn? UniGRPO on the tiny arithmetic model, several seeds, before/after accuracy.

    python benchmarks/learning.py                  # seeds 0 1 2, the default recipe
    python benchmarks/learning.py --seeds 0 --max_steps 100

Honest accuracy: the recipe keeps the checkpoint with the best accuracy on the first ``eval_limit`` held-out
prompts, so before/after are measured on the *other* held-out prompts (disjoint from the selection set), greedy.
Writes ``benchmarks/learning.png`` (held-out accuracy over steps, one line per seed) and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from unigrpo.cli import RunArguments, parse_recipe  # noqa: E402
from unigrpo.config import UniGRPOConfig  # noqa: E402
from unigrpo.plotting import plot_seed_curves  # noqa: E402
from unigrpo.data import load_prompt_dataset  # noqa: E402
from unigrpo.evaluation import evaluate_accuracy  # noqa: E402
from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path  # noqa: E402
from unigrpo.rewarding import resolve_reward_funcs  # noqa: E402
from unigrpo.trainer import UniGRPOTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def report_accuracy(model, tokenizer, dataset, run_args: RunArguments, config: UniGRPOConfig) -> float:
    funcs, names = resolve_reward_funcs(run_args.reward_funcs)
    result = evaluate_accuracy(
        model, tokenizer, dataset, funcs, names, config.sampler_config(temperature=config.eval_temperature),
        resolve_mask_token_id(model, tokenizer), accuracy_reward=config.accuracy_reward, batch_size=500,
    )
    return result["accuracy"]


def run_seed(recipe: str, seed: int, overrides: list[str], out_root: Path) -> dict:
    argv = ["--config", recipe, "--seed", str(seed), "--output_dir", str(out_root / f"seed{seed}"),
            "--disable_tqdm", "true", *overrides]
    run_args, config, model_args = parse_recipe(UniGRPOConfig, argv)
    model_path = resolve_model_path(model_args.model_name_or_path)
    train = load_prompt_dataset(run_args.dataset_name, run_args.dataset_train_split, run_args.train_limit)
    full_test = load_prompt_dataset(run_args.dataset_name, run_args.dataset_test_split)
    selection = full_test.select(range(run_args.eval_limit))
    report = full_test.select(range(run_args.eval_limit, len(full_test)))

    tokenizer = load_tokenizer(model_path)
    before = report_accuracy(load_model(model_path), tokenizer, report, run_args, config)
    torch.manual_seed(seed)
    trainer = UniGRPOTrainer(model_path, run_args.reward_funcs, config, train, selection)
    start = time.time()
    trainer.train()
    wall = time.time() - start
    after = report_accuracy(trainer.model, tokenizer, report, run_args, config)
    curve = [(e["step"], e["eval_accuracy"]) for e in trainer.state.log_history if "eval_accuracy" in e]
    steps_done = trainer.state.global_step
    print(f"seed {seed}: held-out accuracy {before:.3f} → {after:.3f} ({steps_done} steps, {wall:.0f} s)", flush=True)
    return {"seed": seed, "accuracy_before": before, "accuracy_after": after, "wall_s": round(wall, 1),
            "steps": steps_done, "n_report": len(report), "curve": curve, "log_history": trainer.state.log_history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-arith.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "learning"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "learning.png"))
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(2)
    results = [run_seed(args.recipe, seed, overrides, Path(args.out)) for seed in args.seeds]
    plot_seed_curves(results, Path(args.plot), "held-out greedy accuracy (selection set)",
                     "UniGRPO on tiny-arith (2 CPU cores)")
    print(f"{'seed':>4} {'before':>7} {'after':>7} {'gain':>6} {'steps':>5} {'wall s':>7}")
    for r in results:
        gain = r["accuracy_after"] - r["accuracy_before"]
        print(f"{r['seed']:>4} {r['accuracy_before']:7.3f} {r['accuracy_after']:7.3f} {gain:+6.3f} {r['steps']:>5} "
              f"{r['wall_s']:7.0f}")
    summary = {
        "benchmark": "learning",
        "recipe": os.path.relpath(args.recipe, ROOT),
        "overrides": overrides,
        "accuracy_before": {r["seed"]: round(r["accuracy_before"], 4) for r in results},
        "accuracy_after": {r["seed"]: round(r["accuracy_after"], 4) for r in results},
        "min_gain": round(min(r["accuracy_after"] - r["accuracy_before"] for r in results), 4),
        "wall_s": {r["seed"]: r["wall_s"] for r in results},
        "n_report": results[0]["n_report"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
