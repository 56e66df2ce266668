"""Countdown learned from reward alone on CPU (issue #20 §4): ``recipes/tiny-countdown.yaml`` for several seeds.

    .venv/bin/python benchmarks/tiny_countdown.py                      # seeds 0 1 2, alone on 2 cores
    .venv/bin/python benchmarks/tiny_countdown.py --seeds 0 --max_steps 100

Each seed runs the recipe as a user does, ``unigrpo train --config recipes/tiny-countdown.yaml --seed S
--output_dir …`` (timed whole: loading, held-out evaluations and saving included). The recipe keeps the checkpoint
with the best greedy success on its selection problems (the first ``eval_limit`` held-out ones), so before → after
is also measured on the OTHER held-out problems (``report``: number sets never trained on, disjoint from the
selection set), with ``unigrpo eval --json`` on the shipped start model and on each run's result. Writes ``--plot``
(selection-set success over steps, one line per seed) and ends with one JSON line.
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
UNIGRPO = [sys.executable, "-m", "unigrpo.cli"]


def recipe_value(recipe: Path, key: str) -> str:
    """A top-level key of the recipe YAML (the start model, eval_limit)."""
    import yaml

    return str(yaml.safe_load(recipe.read_text())[key])


def write_report_rows(recipe: Path, selection: int, path: Path) -> int:
    """The held-out problems after the first ``selection`` (the checkpoint choice's), as JSON lines for ``eval``."""
    from unigrpo.data import load_prompt_dataset

    test = load_prompt_dataset(recipe_value(recipe, "dataset_name"), "test")
    if not 0 < selection < len(test):
        raise SystemExit(f"--eval_limit {selection}: the selection set must leave held-out problems "
                         f"(the test split has {len(test)})")
    rows = test.select(range(selection, len(test)))
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return len(rows)


def report_accuracy(recipe: Path, model: str, rows: Path) -> float:
    done = subprocess.run([*UNIGRPO, "eval", "--config", str(recipe), "--model", model, "--eval-file", str(rows),
                           "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["accuracy"]


def train(recipe: Path, seed: int, out: Path, overrides: list[str]) -> dict:
    """One ``unigrpo train`` run → {wall_s, steps, curve: selection-set success per eval step}."""
    start = time.perf_counter()
    subprocess.run([*UNIGRPO, "train", "--config", str(recipe), "--seed", str(seed), "--output_dir", str(out),
                    "--disable_tqdm", "true", *overrides], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    state = json.loads((out / "trainer_state.json").read_text())
    curve = [(e["step"], e["eval_accuracy"]) for e in state["log_history"] if "eval_accuracy" in e]
    return {"wall_s": round(wall, 1), "steps": state["global_step"], "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny-countdown.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "outputs" / "tiny_countdown"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks" / "tiny_countdown.png"))
    parser.add_argument("--eval_limit", type=int, help="selection problems (default: the recipe's); the rest report")
    args, overrides = parser.parse_known_args()  # anything else: recipe overrides (--max_steps 100)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    recipe, out = Path(args.recipe), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = out / "report.jsonl"
    selection = int(recipe_value(recipe, "eval_limit")) if args.eval_limit is None else args.eval_limit
    n_report = write_report_rows(recipe, selection, rows)
    before = report_accuracy(recipe, recipe_value(recipe, "model_name_or_path"), rows)
    runs = []
    for seed in args.seeds:
        run = {"seed": seed, **train(recipe, seed, out / f"seed{seed}", ["--eval_limit", str(selection), *overrides])}
        run["after"] = report_accuracy(recipe, str(out / f"seed{seed}"), rows)
        print(f"seed {seed}: report success {before:.3f} → {run['after']:.3f}; "
              f"selection {run['curve'][0][1]:.3f} → best {max(a for _, a in run['curve']):.3f} "
              f"({run['steps']} steps, {run['wall_s']:.0f} s)", flush=True)
        runs.append(run)

    from unigrpo.plotting import plot_seed_curves

    plot_seed_curves(runs, Path(args.plot), "held-out greedy success (selection set)",
                     "UniGRPO on tiny-countdown from the format-SFT model")
    gains = [r["after"] - before for r in runs]
    summary = {"benchmark": "tiny_countdown", "recipe": os.path.relpath(recipe, ROOT), "overrides": overrides,
               "seeds": args.seeds, "n_selection": selection, "n_report": n_report, "before": round(before, 4),
               "after": [round(r["after"], 4) for r in runs], "gain_mean": round(statistics.fmean(gains), 4),
               "gain_min": round(min(gains), 4), "gain_max": round(max(gains), 4),
               "selection_best": [round(max(a for _, a in r["curve"]), 4) for r in runs],
               "steps": [r["steps"] for r in runs], "wall_s": [r["wall_s"] for r in runs]}
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
