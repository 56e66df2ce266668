"""Cost of a UniGRPO inner step: forward passes per answer (policy, θ_old, reference) and seconds per phase.

    python benchmarks/step_cost.py

Runs a few optimizer steps of the default recipe's shapes from the shipped SFT checkpoint for β = 0 and β > 0 and
μ = 1, 2, counting the forward passes the trainer makes (each counted once per answer). Expected per inner step and
answer: one policy forward+backward, one no-grad θ_old forward when μ > 1 (at μ = 1 θ_old = θ, read detached
from the policy pass), one no-grad reference forward when β > 0. Ends with one JSON line.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from unigrpo.config import UniGRPOConfig  # noqa: E402
from unigrpo.data import make_arith_dataset  # noqa: E402
from unigrpo.models import resolve_model_path  # noqa: E402
from unigrpo.trainer import UniGRPOTrainer  # noqa: E402


def measure(beta: float, mu: int, cycles: int = 3) -> dict:
    config = UniGRPOConfig(
        output_dir="outputs/step_cost", num_generations=8, per_device_train_batch_size=128, num_iterations=mu,
        beta=beta, max_completion_length=6, block_length=6, diffusion_steps=6, learning_rate=3e-5,
        max_steps=cycles * mu, logging_steps=1, disable_tqdm=True, report_to="none", seed=0,
    )
    trainer = UniGRPOTrainer(resolve_model_path("tiny-arith-sft"), ["math_correctness", "boxed_format"], config,
                             make_arith_dataset("train", limit=cycles * 16))
    trainer.train()
    answers = cycles * 128
    inner_steps = cycles * mu
    def mean(key: str) -> float:  # over the logged steps where the phase ran (rollouts run every μ-th step)
        values = [e[key] for e in trainer.state.log_history if key in e]
        return sum(values) / max(len(values), 1)

    return {
        "beta": beta,
        "mu": mu,
        "policy_fwd_bwd_per_answer_per_inner_step": trainer.forward_counts["policy"] / answers / mu,
        "old_fwd_per_answer_per_inner_step": trainer.forward_counts["old"] / answers / mu,
        "ref_fwd_per_answer_per_inner_step": trainer.forward_counts["ref"] / answers / mu,
        "s_per_optimizer_step": round(trainer.state.log_history[-1]["train_runtime"] / inner_steps, 3),
        "timing_rollout_s_per_rollout": round(mean("timing/rollout"), 3),
        "timing_update_s_per_inner_step": round(mean("timing/update"), 3),
    }


def main() -> None:
    torch.set_num_threads(2)
    rows = [measure(beta, mu) for beta in (0.0, 0.04) for mu in (1, 2)]
    print(f"{'beta':>5} {'mu':>3} {'policy':>7} {'old':>5} {'ref':>5} {'s/step':>7}")
    for r in rows:
        print(f"{r['beta']:5.2f} {r['mu']:>3} {r['policy_fwd_bwd_per_answer_per_inner_step']:7.2f} "
              f"{r['old_fwd_per_answer_per_inner_step']:5.2f} {r['ref_fwd_per_answer_per_inner_step']:5.2f} "
              f"{r['s_per_optimizer_step']:7.3f}")
    print(json.dumps({"benchmark": "step_cost", "rows": rows}))


if __name__ == "__main__":
    sys.exit(main())
