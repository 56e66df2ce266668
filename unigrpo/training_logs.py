"""What UniGRPO logs (the metric names are defined in README.md, "Metrics"): reward metrics of each optimizer
step's rollouts, loss diagnostics of each micro-batch, and the completions tables.

With several processes (``unigrpo.data_parallel``) the reward metrics are computed from rewards gathered over
processes, every other metric is averaged over processes at log time, and the completions table is gathered and
written by the main process.
"""

from __future__ import annotations

import json
import os

import torch

from .data_parallel import gather_objects, gather_tensor, mean_over_processes, merge_sums, sum_over_processes
from .likelihood import sequence_logp
from .rollout_batches import ScoredBatch


def add_ratio(sums: dict[str, tuple[float, float]], key: str, numerator: float, denominator: float) -> None:
    """Accumulate a ratio as (sum of numerators, sum of denominators): merged over processes it stays exact."""
    total, count = sums.get(key, (0.0, 0.0))
    sums[key] = (total + numerator, count + denominator)


class TrainingLogsMixin:
    """Metrics and tables of ``UniGRPOTrainer`` (uses its ``_metrics``, ``accelerator``, ``args``, ``state`` and
    ``reward_names``)."""

    def log_rollout_metrics(self, batches: list[ScoredBatch], rewards: torch.Tensor, zero_std: torch.Tensor) -> None:
        """Reward metrics of the whole optimizer step: ``rewards`` and ``zero_std`` come gathered over processes;
        the per-function scores, skipped counts, answer lengths and per-task rewards are gathered here."""
        m, accelerator, G = self._metrics, self.accelerator, self.args.num_generations
        per_func = gather_tensor(accelerator, torch.cat([b.per_func for b in batches]))  # (P·GA·N, F)
        skipped = sum_over_processes(accelerator, torch.tensor([float(sum(s)) for s in zip(*(b.skipped for b in batches))]))
        m["reward"].append(rewards.mean().item())
        m["reward_std"].append(rewards.view(-1, G).std(dim=1).mean().item())
        for i, name in enumerate(self.reward_names):
            column = per_func[:, i]
            m[f"rewards/{name}/mean"].append(torch.nanmean(column).item())
            m[f"rewards/{name}/std"].append(column[~column.isnan()].std().item() if column.isfinite().sum() > 1 else 0.0)
            # per micro-batch, as with one process; under either policy (a time-out skips under `raise` too)
            m[f"rewards/{name}/skipped"].append(skipped[i].item() / (len(batches) * accelerator.num_processes))
        m["frac_reward_zero_std"].append(zero_std.float().mean().item())
        sums = merge_sums(accelerator, self.length_and_task_sums(batches))
        tasks = [key for key in sums if key.startswith("tasks/")]
        for key, (total, count) in sums.items():
            if key.startswith(("completions/", "rollout/")) or len(tasks) > 1:  # per-task: a mixed-task batch
                m[key].append(total / max(count, 1.0))

    def length_and_task_sums(self, batches: list[ScoredBatch]) -> dict[str, tuple[float, float]]:
        """(sum, count) on this process of text answer lengths (before the first EOS), of each task's rewards, and
        of the text sampler's commits per row-forward and committed probabilities (``rollouts.DecodeStats``)."""
        sums: dict[str, tuple[float, float]] = {}

        def add(key, values):
            total, count = sums.get(key, (0.0, 0.0))
            sums[key] = (total + values.sum().item(), count + values.numel())

        for b in batches:
            offset = 0
            for g in b.groups:
                if g.task != "t2i":
                    content = g.eligible.sum(dim=1).float() - float(self.args.eos_in_loss > 0)
                    add("completions/mean_length", content.clamp(min=0))
                add(f"tasks/{g.task}/reward", b.rewards[offset : offset + g.size])
                offset += g.size
                if g.decode_stats is not None:
                    add_ratio(sums, "rollout/tokens_per_forward", g.decode_stats.committed,
                              g.decode_stats.row_forwards)
                    add_ratio(sums, "rollout/committed_confidence", g.decode_stats.confidence_sum,
                              g.decode_stats.committed)
        return sums

    def log_loss_metrics(self, logps, kl, clipped, advantages, view) -> None:
        """Loss diagnostics of one micro-batch: the clip regions are read from ``clipped`` — the tokens where the
        loss took the clipped term (``per_token_loss``) — split by the sign of A, so they are the loss's own."""
        m = self._metrics
        mask = view.score_mask.float()
        masked_mean = lambda x: ((x * mask).sum() / mask.sum().clamp(min=1)).item()  # noqa: E731
        low = clipped & (advantages < 0)  # ρ < 1 − ε_low with A < 0
        high = clipped & (advantages > 0)  # ρ > 1 + ε_high with A > 0
        m["clip_ratio/low_mean"].append(masked_mean(low.float()))
        m["clip_ratio/high_mean"].append(masked_mean(high.float()))
        m["clip_ratio/region_mean"].append(masked_mean(clipped.float()))
        if kl is not None:
            m["kl"].append(masked_mean(kl.detach()))
        m["mask_ratio"].append(view.mask_ratio.float().mean().item())
        m["logp/sequence_mean"].append(sequence_logp(logps.detach(), view.score_mask).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge the averaged rollout and loss metrics (averaged over processes too) into the Trainer's log line,
        then clear them. Every process calls it at the same steps, as the Trainer's loss gather needs."""
        if "loss" in logs:  # a training log, not an evaluation one
            means = {k: sum(v) / len(v) for k, v in self._metrics.items() if v}
            logs = {**logs, **mean_over_processes(self.accelerator, means)}
            self._metrics.clear()
        super().log(logs, start_time)

    def write_completions(self, batches: list[ScoredBatch], advantages: list[torch.Tensor]) -> None:
        """Append the optimizer step's table (every process's answers, gathered) to ``completions/step_<n>.jsonl``
        from the main process (written now, never kept in memory)."""
        rows = [row for b, a in zip(batches, advantages) for row in self.completion_rows(b, a)]
        rows = [row for part in gather_objects(self.accelerator, rows) for row in part]
        if not self.is_world_process_zero():
            return
        folder = os.path.join(self.args.output_dir, "completions")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"step_{self.state.global_step:06d}.jsonl"), "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)

    def completion_rows(self, batch: ScoredBatch, advantages: torch.Tensor) -> list[dict]:
        """One JSON-ready row per answer: prompt, completion (an image as its size), rewards, advantage."""
        G, rows = self.args.num_generations, []
        completions = [c for g in batch.groups for c in g.completions]
        for i, completion in enumerate(completions):
            if not isinstance(completion, (str, list)):  # a t2i image
                completion = f"<{type(completion).__name__} {getattr(completion, 'size', '')}>"
            row = {"step": self.state.global_step, "prompt": batch.rows[i // G]["prompt"], "completion": completion,
                   "reward": batch.rewards[i].item(), "advantage": advantages[i].item()}
            row.update({f"rewards/{n}": (None if v != v else v)
                        for n, v in zip(self.reward_names, batch.per_func[i].tolist())})
            rows.append(row)
        return rows
