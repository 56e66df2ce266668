"""Kill-and-resume equivalence and memory over a long run (docs/design.md §8, issue #8).

    .venv/bin/python benchmarks/resume.py [--steps 60 --save-steps 10 --rss-steps 200 --seed 0]

1. The default recipe (``recipes/tiny-arith.yaml``, evaluation off) runs ``--steps`` optimizer steps uninterrupted.
2. The same command is SIGKILLed at a random step between two checkpoints, then re-run with
   ``--resume_from_checkpoint auto``. The logged loss and reward of every step are compared with run 1
   (``max_abs_diff``; 0.0 = bitwise).
3. Resident memory (RSS) of one in-process run of ``--rss-steps`` steps, sampled every 10 steps: ``rss_growth`` =
   (last − first sample after warm-up at step 20) / first.
Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith.yaml"


def command(output_dir: Path, steps: int, save_steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "unigrpo.cli", "train", "--config", str(RECIPE), "--output_dir", str(output_dir),
            "--max_steps", str(steps), "--eval_strategy", "no", "--load_best_model_at_end", "false",
            "--save_strategy", "steps", "--save_steps", str(save_steps), "--save_total_limit", "2",
            "--logging_steps", "1", "--disable_tqdm", "true", "--report_to", "none", *extra]


def logged(output_dir: Path) -> dict[int, tuple[float, float | None]]:
    """step → (loss, reward) from the run's final trainer_state.json."""
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return {e["step"]: (e["loss"], e.get("reward")) for e in history if "loss" in e}


def run_killed_at(output_dir: Path, steps: int, save_steps: int, kill_step: int) -> None:
    """Start the run, SIGKILL it once it has logged ``kill_step``."""
    process = subprocess.Popen(command(output_dir, steps, save_steps), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    logged_steps = 0
    for line in process.stdout:
        if line.startswith("{") and "'loss'" in line:
            logged_steps += 1
            if logged_steps >= kill_step:
                process.send_signal(signal.SIGKILL)
                break
    process.wait()
    print(f"killed with SIGKILL after step {logged_steps} (exit {process.returncode})", flush=True)


def max_abs_diff(a: dict, b: dict) -> float:
    if sorted(a) != sorted(b):
        raise RuntimeError(f"logged steps differ: {sorted(set(a) ^ set(b))}")
    diffs = [abs(x - y) for step in a for x, y in zip(a[step], b[step]) if x is not None and y is not None]
    return max(diffs)


def rss_over_steps(steps: int) -> list[tuple[int, float]]:
    """(step, RSS MiB) every 10 steps of one in-process run of the default recipe."""
    from transformers import TrainerCallback

    from unigrpo.cli import load_splits, parse_recipe
    from unigrpo.config import UniGRPOConfig
    from unigrpo.trainer import UniGRPOTrainer

    page = os.sysconf("SC_PAGE_SIZE")
    samples = []

    class Rss(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % 10 == 0:
                rss = int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20
                samples.append((state.global_step, round(rss, 1)))

    with tempfile.TemporaryDirectory() as folder:
        run_args, config, model_args = parse_recipe(UniGRPOConfig, [
            "--config", str(RECIPE), "--output_dir", folder, "--max_steps", str(steps), "--eval_strategy", "no",
            "--load_best_model_at_end", "false", "--eval_on_start", "false", "--save_strategy", "no",
            "--disable_tqdm", "true",
            "--report_to", "none", "--logging_steps", "10"])
        train, _ = load_splits(run_args)
        trainer = UniGRPOTrainer(model_args.model_name_or_path, run_args.reward_funcs, config, train,
                                 callbacks=[Rss()])
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        trainer.train()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--rss-steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kill_step = random.Random(args.seed).randint(2 * args.save_steps + 1, args.steps - args.save_steps - 1)

    with tempfile.TemporaryDirectory() as root:
        whole, killed = Path(root) / "whole", Path(root) / "killed"
        subprocess.run(command(whole, args.steps, args.save_steps), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        print(f"uninterrupted: {args.steps} steps", flush=True)
        run_killed_at(killed, args.steps, args.save_steps, kill_step)
        from unigrpo.resume import latest_complete_checkpoint

        resumed_from = Path(latest_complete_checkpoint(killed) or "none").name
        subprocess.run(command(killed, args.steps, args.save_steps, "--resume_from_checkpoint", "auto"),
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"resumed from {resumed_from} to step {args.steps}", flush=True)
        diff = max_abs_diff(logged(whole), logged(killed))
        print(f"max |loss or reward difference| over {args.steps} steps: {diff}")

    samples = rss_over_steps(args.rss_steps)
    print("RSS (step, MiB): " + ", ".join(f"({s}, {m})" for s, m in samples))
    after_warmup = [m for s, m in samples if s >= 20]
    growth = (after_warmup[-1] - after_warmup[0]) / after_warmup[0]
    print(json.dumps({"steps": args.steps, "kill_step": kill_step, "resumed_from": resumed_from, "max_abs_diff": diff, "rss_steps": args.rss_steps,
                      "rss_first_mib": after_warmup[0], "rss_last_mib": after_warmup[-1],
                      "rss_growth": round(growth, 4)}))


if __name__ == "__main__":
    main()
