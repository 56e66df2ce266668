"""Data parallel vs one process on the tiny demo (issue #10): same global batch, same seeds.

    .venv/bin/python benchmarks/data_parallel.py [--max-steps 300 --compare-steps 20 --seed 0]

Three runs of ``recipes/tiny-arith.yaml`` (16 prompts × 8 answers = 128 completions per optimizer step, μ 2,
held-out greedy accuracy on 500 problems every 50 steps), logging every step:

    one   1 process,  per_device_train_batch_size 64 × gradient_accumulation_steps 2   (2 threads)
    two   2 processes (accelerate launch, recipes/accelerate/ddp.yaml, CPU gloo over loopback), 64 × 1 each
    recipe 1 process, 128 × 1 as the recipe is written (another split of the same global batch: other rollout
          seeds, so it measures how far a run with other random draws lands — the noise)

``one`` and ``two`` train on the same micro-batches with the same seeds (``unigrpo.data_parallel``), so their logs
agree until float reduction order (all-reduce vs accumulation) flips a sampled token. Reported: ``max_loss_diff``
and ``max_reward_diff`` over the first ``--compare-steps`` steps, ``max_grad_norm_rel_diff`` there, the first step
whose loss differs by more than 1e-6 (``first_divergent_step``), final (last evaluation) and best held-out accuracy
of each run, ``accuracy_delta`` = two − one, and wall times. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "tiny-arith.yaml"
DDP_CONFIG = ROOT / "recipes" / "accelerate" / "ddp.yaml"
LOSS_TOLERANCE = 1e-6  # absolute, on losses of order 1e-3: beyond float32 reduction-order noise


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(output_dir: Path, steps: int, seed: int, per_device: int, accumulation: int) -> list[str]:
    return ["-m", "unigrpo.cli", "train", "--config", str(RECIPE), "--output_dir", str(output_dir),
            "--max_steps", str(steps), "--seed", str(seed), "--per_device_train_batch_size", str(per_device),
            "--gradient_accumulation_steps", str(accumulation), "--logging_steps", "1", "--disable_tqdm", "true",
            "--report_to", "none"]


def run(name: str, output_dir: Path, processes: int, threads: int, args: list[str]) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads))
    if processes == 1:
        command = [sys.executable, *args]
    else:
        env.update(ACCELERATE_USE_CPU="1", MASTER_ADDR="127.0.0.1")
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG),
                   "--num_processes", str(processes), "--main_process_ip", "127.0.0.1",
                   "--main_process_port", str(free_port()), *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-4000:]}")
    print(f"{name}: {wall:.0f} s", flush=True)
    return wall


def history(output_dir: Path) -> tuple[dict[int, dict], list[tuple[int, float]]]:
    """(step → training log entry, [(step, eval_accuracy)])."""
    entries = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    train = {e["step"]: e for e in entries if "loss" in e}
    accuracy = [(e["step"], e["eval_accuracy"]) for e in entries if "eval_accuracy" in e]
    return train, accuracy


def compare(a: dict[int, dict], b: dict[int, dict], steps: int) -> dict:
    shared = sorted(set(a) & set(b))
    first = [s for s in shared[:steps]]
    loss = [abs(a[s]["loss"] - b[s]["loss"]) for s in first]
    reward = [abs(a[s]["reward"] - b[s]["reward"]) for s in first if "reward" in a[s]]
    grad = [abs(a[s]["grad_norm"] - b[s]["grad_norm"]) / abs(b[s]["grad_norm"]) for s in first]
    divergent = next((s for s in shared if abs(a[s]["loss"] - b[s]["loss"]) > LOSS_TOLERANCE
                      or abs(a[s].get("reward", 0) - b[s].get("reward", 0)) > 0), None)
    return {"compared_steps": len(first), "max_loss_diff": max(loss), "max_reward_diff": max(reward),
            "max_grad_norm_rel_diff": max(grad), "first_divergent_step": divergent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--compare-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-root", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    root = Path(args.output_root or tempfile.mkdtemp(prefix="unigrpo-dp-"))
    runs = {"one": (1, 2, 64, 2), "two": (2, 1, 64, 1), "recipe": (1, 2, 128, 1)}  # processes, threads, batch, GA
    results, walls = {}, {}
    for name, (processes, threads, per_device, accumulation) in runs.items():
        folder = root / name
        walls[name] = run(name, folder, processes, threads,
                          train_command(folder, args.max_steps, args.seed, per_device, accumulation))
        results[name] = history(folder)

    figures = compare(results["two"][0], results["one"][0], args.compare_steps)
    accuracy = {name: {"start": acc[0][1], "final": acc[-1][1], "best": max(v for _, v in acc)}
                for name, (_, acc) in results.items()}
    for name, a in accuracy.items():
        print(f"{name:>6}: held-out accuracy {a['start']:.3f} → {a['final']:.3f} (best {a['best']:.3f}), "
              f"{walls[name]:.0f} s")
    print(f"first {figures['compared_steps']} steps, two vs one: max |Δloss| {figures['max_loss_diff']:.2e}, "
          f"max |Δreward| {figures['max_reward_diff']:.2e}, max rel. Δgrad_norm {figures['max_grad_norm_rel_diff']:.2e};"
          f" first step with |Δloss| > {LOSS_TOLERANCE:g} or Δreward ≠ 0: {figures['first_divergent_step']}")
    print(json.dumps({
        "benchmark": "data_parallel", "max_steps": args.max_steps, "seed": args.seed, **figures,
        "accuracy": accuracy,
        "accuracy_delta": round(accuracy["two"]["final"] - accuracy["one"]["final"], 4),
        "accuracy_delta_recipe_vs_one": round(accuracy["recipe"]["final"] - accuracy["one"]["final"], 4),
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
    }))


if __name__ == "__main__":
    main()
