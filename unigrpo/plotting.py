"""Training curves as a PNG: reward and held-out accuracy over optimizer steps, from ``state.log_history``."""

from __future__ import annotations

import os

from transformers import TrainerCallback

CURVES = (("reward", "train reward"), ("eval_accuracy", "held-out accuracy"), ("eval_reward", "held-out reward"),
          ("loss", "loss"))


def plot_log_history(log_history: list[dict], path: str, title: str = "") -> str | None:
    """One panel per logged curve (reward, eval_accuracy, eval_reward, loss); returns the path, or None if nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {key: [(e["step"], e[key]) for e in log_history if key in e] for key, _ in CURVES}
    present = [(key, label) for key, label in CURVES if series[key]]
    if not present:
        return None
    fig, axes = plt.subplots(1, len(present), figsize=(4.5 * len(present), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], present):
        steps, values = zip(*series[key])
        ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
        ax.set_xlabel("optimizer step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_seed_curves(results: list[dict], path, ylabel: str, title: str) -> None:
    """One line per seed: ``results`` items carry ``seed`` and ``curve`` = [(step, value), …] (the benchmarks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in results:
        steps, values = zip(*r["curve"])
        ax.plot(steps, values, marker="o", markersize=3, label=f"seed {r['seed']}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class TrainingCurvesCallback(TrainerCallback):
    """Writes ``training_curves.png`` to ``output_dir`` at the end of training (main process only)."""

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            os.makedirs(args.output_dir, exist_ok=True)
            plot_log_history(state.log_history, os.path.join(args.output_dir, "training_curves.png"))
