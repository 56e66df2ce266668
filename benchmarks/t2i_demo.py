"""Does text-to-image UniGRPO learn on the CPU? The t2i demo recipe, several seeds, held-out CLIP before → after,
and the image sampler's time per image on the tiny model.

    python benchmarks/t2i_demo.py                   # seeds 0 1 2, recipes/tiny-t2i.yaml
    python benchmarks/t2i_demo.py --seeds 0 --max_steps 50

The held-out set is the ``test`` split of the shapes domain: 15 captions never seen by SFT or RL, 4 sampled
pictures each, the same seed before and after. Nothing is selected on it (the run keeps its last model). Copies
seed 0's ``image_grid.png`` to ``benchmarks/t2i_grid.png``, plots the held-out curves to ``benchmarks/t2i_learning.png``
and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from unigrpo.cli import load_splits, model_path_for, parse_recipe  # noqa: E402
from unigrpo.config import UniGRPOConfig  # noqa: E402
from unigrpo.plotting import plot_seed_curves  # noqa: E402
from unigrpo.trainer import UniGRPOTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run_seed(recipe: str, seed: int, overrides: list[str], out_root: Path) -> dict:
    argv = ["--config", recipe, "--seed", str(seed), "--output_dir", str(out_root / f"seed{seed}"),
            "--disable_tqdm", "true", *overrides]
    run_args, config, model_args = parse_recipe(UniGRPOConfig, argv)
    train, test = load_splits(run_args)
    torch.manual_seed(seed)
    trainer = UniGRPOTrainer(model_path_for(model_args, run_args), run_args.reward_funcs, config, train, test,
                             image_tokenizer=run_args.image_tokenizer)
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    final = trainer.evaluate()["eval_reward"]
    curve = [(e["step"], e["eval_reward"]) for e in trainer.state.log_history if "eval_reward" in e]
    return {"seed": seed, "before": curve[0][1], "after": final, "best": max(v for _, v in curve),
            "seconds": round(seconds), "steps": trainer.state.global_step, "curve": curve,
            "grid": str(out_root / f"seed{seed}" / "image_grid.png"), "trainer": trainer}


def sampler_seconds_per_image(trainer, rows: list[dict], repeats: int = 3) -> float:
    """Wall time of the image sampler (with VQ decoding) per image, batches of len(rows), after one warm-up."""
    trainer.generate_eval_images(rows)
    start = time.perf_counter()
    for _ in range(repeats):
        trainer.generate_eval_images(rows)
    return (time.perf_counter() - start) / (repeats * len(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-t2i.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "bench-t2i"))
    args, overrides = parser.parse_known_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results = [run_seed(args.recipe, seed, overrides, Path(args.out)) for seed in args.seeds]
    trainer = results[0]["trainer"]
    rows = [{"prompt": "a red circle on blue", "task": "t2i"}] * 64
    per_image = sampler_seconds_per_image(trainer, rows)
    shutil.copy(results[0]["grid"], ROOT / "benchmarks" / "t2i_grid.png")
    plot_seed_curves(results, ROOT / "benchmarks" / "t2i_learning.png", "held-out CLIP score (100·cos)",
                     "tiny t2i UniGRPO: 15 unseen captions × 4 pictures")
    for r in results:
        print(f"seed {r['seed']}: held-out CLIP {r['before']:.2f} → {r['after']:.2f} (best {r['best']:.2f}), "
              f"{r['steps']} steps in {r['seconds']} s")
    summary = {
        "before": [round(r["before"], 2) for r in results],
        "after": [round(r["after"], 2) for r in results],
        "gain": [round(r["after"] - r["before"], 2) for r in results],
        "all_improve": all(r["after"] > r["before"] for r in results),
        "seconds": [r["seconds"] for r in results],
        "sampler_ms_per_image": round(1000 * per_image, 2),
        "image_steps": trainer.args.image_steps,
        "grid": "benchmarks/t2i_grid.png",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
