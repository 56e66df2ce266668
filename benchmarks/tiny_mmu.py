"""Does the image-understanding (mmu) demo learn? ``recipes/tiny-mmu.yaml`` for several seeds, held-out accuracy
before → after (issue #20 §4).

    .venv/bin/python benchmarks/tiny_mmu.py                      # seeds 0 1 2, the recipe as shipped
    .venv/bin/python benchmarks/tiny_mmu.py --seeds 0 --max_steps 100

Each seed is one ``unigrpo train --config recipes/tiny-mmu.yaml --seed S --output_dir …`` in a subprocess (the
command a user runs; extra arguments are passed on to it), timed from start to end. The figures come from its
``trainer_state.json``: held-out greedy accuracy (270 questions on pictures RL never saw, of its 45 combinations) at
step 0 (``eval_on_start``) and at the last step. ``best`` is the best evaluation, the checkpoint the recipe keeps; it
is selected on the same held-out questions, so the headline gain is before → last, not → best. The start model and
each kept model are also scored with ``unigrpo eval --split unseen`` (180 questions on the 15 combinations neither
SFT nor RL saw; never used for selection). Writes ``--plot`` (held-out accuracy over steps, one line per seed) and
ends with one JSON line: per seed before / after / best / unseen and wall time, the gain's mean [min, max].
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "tiny-mmu.yaml"
UNIGRPO = Path(sys.executable).parent / "unigrpo"


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def unseen_accuracy(recipe: Path, model: str, limit: int | None = None) -> float:
    """Greedy accuracy of ``model`` on the ``unseen`` split (combinations never trained on; the first ``limit``)."""
    command = [str(UNIGRPO), "eval", "--config", str(recipe), "--model", model, "--split", "unseen", "--json"]
    done = subprocess.run([*command, *(["--limit", str(limit)] if limit else [])], check=True, cwd=ROOT, env=ENV,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["accuracy"]


def run_seed(recipe: Path, seed: int, output_dir: Path, extra: list[str], unseen_limit: int | None = None) -> dict:
    """One training run in a subprocess → {seed, before, after, best, steps, wall_s, curve}."""
    command = [str(UNIGRPO), "train", "--config", str(recipe), "--seed", str(seed), "--output_dir", str(output_dir),
               "--disable_tqdm", "true", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    curve = [(e["step"], e["eval_accuracy"]) for e in history if "eval_accuracy" in e]
    if not curve:
        raise RuntimeError(f"{output_dir}: no eval_accuracy in trainer_state.json (the recipe evaluates on start)")
    run = {"seed": seed, "before": curve[0][1], "after": curve[-1][1], "best": max(a for _, a in curve),
           "steps": curve[-1][0], "wall_s": round(wall, 1), "curve": curve,
           "unseen": unseen_accuracy(recipe, str(output_dir), unseen_limit)}
    print(f"seed {seed}: held-out accuracy {run['before']:.3f} → {run['after']:.3f} (best {run['best']:.3f}; "
          f"unseen combinations {run['unseen']:.3f}), {run['steps']} steps, {wall:.0f} s", flush=True)
    return run


def summary(runs: list[dict], recipe: Path, extra: list[str]) -> dict:
    gains = [r["after"] - r["before"] for r in runs]
    return {
        "benchmark": "tiny_mmu", "recipe": os.path.relpath(recipe, ROOT), "overrides": extra,
        "seeds": {r["seed"]: {k: round(r[k], 4) if isinstance(r[k], float) else r[k]
                              for k in ("before", "after", "best", "unseen", "steps", "wall_s")} for r in runs},
        "gain_mean": round(statistics.fmean(gains), 4), "gain_min": round(min(gains), 4),
        "gain_max": round(max(gains), 4), "wall_s_mean": round(statistics.fmean(r["wall_s"] for r in runs), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(RECIPE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "tiny_mmu"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "tiny_mmu.png"))
    parser.add_argument("--unseen_limit", type=int, help="score only the first N unseen questions (default: all 180)")
    args, extra = parser.parse_known_args()
    recipe = Path(args.recipe)
    import yaml

    start_model = str(yaml.safe_load(recipe.read_text())["model_name_or_path"])
    unseen_before = unseen_accuracy(recipe, start_model, args.unseen_limit)
    print(f"start model {start_model}: unseen combinations {unseen_before:.3f}", flush=True)
    runs = [run_seed(recipe, seed, Path(args.out) / f"seed{seed}", extra, args.unseen_limit) for seed in args.seeds]
    from unigrpo.plotting import plot_seed_curves

    plot_seed_curves(runs, Path(args.plot), "held-out greedy accuracy",
                     "UniGRPO on tiny mmu (shapes questions, held-out pictures)")
    result = {**summary(runs, recipe, extra), "unseen_before": round(unseen_before, 4)}
    print(f"gain {result['gain_mean']:+.3f} [{result['gain_min']:+.3f}, {result['gain_max']:+.3f}], "
          f"{result['wall_s_mean']:.0f} s per run")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
