"""FSDP2 vs DDP on the tiny demo, 2 CPU processes each (issue #17): same losses, and what each rank holds.

    .venv/bin/python benchmarks/sharded.py [--max-steps 20 --seed 0]

Two runs of ``recipes/tiny-arith.yaml`` (16 prompts × 8 answers per optimizer step, 64 completions per process,
μ 2), logging every step: ``ddp`` (``recipes/accelerate/ddp.yaml``) and ``fsdp`` (``recipes/accelerate/fsdp.yaml``
through ``tests/fsdp_cpu.py``, which lets accelerate's CPU process group take the FSDP settings). Both train on
the same micro-batches with the same seeds, so their logs agree up to float reduction order.

Reported: ``max_loss_diff`` and ``max_grad_norm_rel_diff`` over the steps, ``per_rank_state_bytes`` of each run
(parameters + gradients + optimizer states this rank holds, read at the last optimizer step from the local shards'
tensor sizes, ``unigrpo.sharding.per_rank_state_bytes``) and ``per_rank_state_ratio`` = fsdp ÷ ddp; with
``--eval-steps`` the held-out accuracy of both. Ends with one JSON line.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(output_dir: str, argv: list[str]) -> None:
    """Run under ``accelerate launch``: ``unigrpo train`` with the recipe arguments ``argv``, recording this rank's
    state bytes before each optimizer step into ``output_dir/state_bytes_rank<r>.json``."""
    from transformers import TrainerCallback

    from unigrpo.cli import fit, load_splits, model_path_for, parse_recipe, peft_config_from
    from unigrpo.config import UniGRPOConfig
    from unigrpo.sharding import per_rank_state_bytes
    from unigrpo.trainer import UniGRPOTrainer

    class StateBytes(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):
            self.sizes = per_rank_state_bytes(model, optimizer)  # gradients present; Adam states after step 1

    run_args, config, model_args = parse_recipe(UniGRPOConfig, argv)
    train, test = load_splits(run_args)
    recorder = StateBytes()
    trainer = UniGRPOTrainer(model_path_for(model_args, run_args), run_args.reward_funcs, config, train, test,
                             peft_config=peft_config_from(model_args), callbacks=[recorder])
    fit(trainer, "UniGRPO")
    rank = int(os.environ.get("RANK", "0"))
    Path(output_dir, f"state_bytes_rank{rank}.json").write_text(json.dumps(recorder.sizes))


def launch(name: str, output_dir: Path, args: argparse.Namespace) -> float:
    recipe = ["--config", "recipes/tiny-arith.yaml", "--output_dir", str(output_dir), "--max_steps",
              str(args.max_steps), "--seed", str(args.seed), "--per_device_train_batch_size", "64",
              "--logging_steps", "1", "--save_strategy", "no", "--load_best_model_at_end", "false",
              "--disable_tqdm", "true", "--report_to", "none"]
    if args.eval_steps:
        recipe += ["--eval_steps", str(args.eval_steps)]
    else:
        recipe += ["--eval_strategy", "no", "--eval_on_start", "false"]
    script = [str(Path(__file__)), "worker", str(output_dir), *recipe]
    if name == "fsdp":
        script = [str(ROOT / "tests" / "fsdp_cpu.py"), *script]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/ddp.yaml"), "--num_processes", "2", "--main_process_ip", "127.0.0.1",
               "--main_process_port", str(free_port()), *script]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               ACCELERATE_USE_CPU="1", MASTER_ADDR="127.0.0.1")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-4000:]}")
    wall = time.perf_counter() - start
    print(f"{name}: {wall:.0f} s", flush=True)
    return wall


def read_run(output_dir: Path) -> dict:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    sizes = [json.loads((output_dir / f"state_bytes_rank{r}.json").read_text()) for r in range(2)]
    return {"train": {e["step"]: e for e in history if "loss" in e},
            "accuracy": [e["eval_accuracy"] for e in history if "eval_accuracy" in e],
            "state_bytes": max(sum(s.values()) for s in sizes), "state_parts": sizes[0]}


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        return worker(sys.argv[2], sys.argv[3:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-steps", type=int, default=0, help="evaluate every N steps (0: no evaluation)")
    parser.add_argument("--output-root", default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()

    root = Path(args.output_root or tempfile.mkdtemp(prefix="unigrpo-sharded-"))
    walls = {name: launch(name, root / name, args) for name in ("ddp", "fsdp")}
    ddp, fsdp = read_run(root / "ddp"), read_run(root / "fsdp")
    steps = sorted(set(ddp["train"]) & set(fsdp["train"]))
    loss = max(abs(fsdp["train"][s]["loss"] - ddp["train"][s]["loss"]) for s in steps)
    grad = max(abs(fsdp["train"][s]["grad_norm"] - ddp["train"][s]["grad_norm"]) / ddp["train"][s]["grad_norm"]
               for s in steps)
    ratio = fsdp["state_bytes"] / ddp["state_bytes"]
    print(f"{len(steps)} steps: max |Δloss| {loss:.2e}, max rel. Δgrad_norm {grad:.2e}; per-rank state "
          f"{fsdp['state_bytes']} / {ddp['state_bytes']} bytes = {ratio:.3f}")
    figures = {"benchmark": "sharded", "max_steps": args.max_steps, "seed": args.seed, "compared_steps": len(steps),
               "max_loss_diff": loss, "max_grad_norm_rel_diff": grad, "per_rank_state_ratio": round(ratio, 4),
               "per_rank_state_bytes": {"ddp": ddp["state_parts"], "fsdp": fsdp["state_parts"]},
               "wall_s": {k: round(v, 1) for k, v in walls.items()}}
    if args.eval_steps:
        figures["accuracy"] = {"ddp": ddp["accuracy"][-1], "fsdp": fsdp["accuracy"][-1]}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
