"""Data-parallel training (issue #10): how one optimizer step's prompts are split over ``accelerate`` processes,
and the few numbers that must be global.

**The window.** One optimizer step trains on a *window* of W = processes × accumulation-steps micro-batches.
Micro-batch j = slot · processes + rank goes to process ``rank`` as its accumulation slot ``slot``. Every process
draws the same shuffled prompt order (same seed), so splitting the data needs no communication. A prompt's G
answers stay on one process, so group statistics (mean, std, the zero-std flag) are exact locally.

**The invariant.** Micro-batch j gets the same prompts and the same rollout and mask seeds (``rollout_seed``)
however (processes, accumulation) factor W. So a run on P processes with accumulation A *is* the one-process run
with accumulation P·A, up to the order of float reductions: the all-reduce sums the gradients of the micro-batches
in another order than accumulation does (see ``benchmarks/RESULTS.md``, "Data parallel").

**Global, gathered over processes:** the rewards before advantages (so ``scale_rewards: batch`` divides by the
window's std), the reward metrics and ``frac_reward_zero_std``, the logged completions, dapo's masked-token count
(``loss_type: dapo``), and every other logged metric (averaged over processes at log time).
"""

from __future__ import annotations

import os

import torch
from torch.utils.data import Sampler

from .inner_steps import InnerStepCycle


def window_micro_batch(slot: int, rank: int, num_processes: int) -> int:
    """Index j of the micro-batch that process ``rank`` trains in accumulation slot ``slot`` of a window."""
    return slot * num_processes + rank


def window_indices(order: list[int], prompts_per_micro_batch: int, accumulation: int, num_processes: int,
                   rank: int) -> list[int]:
    """This process's prompts of one window, slot by slot: ``order`` holds the window's prompt indices (W·B of
    them, the same list on every process); micro-batch j is ``order[j·B : (j+1)·B]``."""
    B = prompts_per_micro_batch
    chunks = [window_micro_batch(s, rank, num_processes) for s in range(accumulation)]
    return [i for j in chunks for i in order[j * B : (j + 1) * B]]


class RepeatedBatchSampler(Sampler):
    """Shuffled prompt windows (the module docstring); each window is yielded once per micro-step of its μ cycle
    (``cycle.length`` = accumulation × μ times in a row, ``unigrpo.inner_steps``), as this process's prompts of all
    its accumulation slots.

    So the μ optimizer steps of one rollout batch see exactly the same prompts, every process draws the same order
    and keeps its own micro-batches of each window, and the trainer can roll out all its slots at the window's
    first micro-step (dapo's token count and the batch std then span the whole optimizer step).
    """

    def __init__(self, num_rows: int, batch_size: int, cycle: InnerStepCycle, seed: int, num_processes: int = 1,
                 rank: int = 0):
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.accumulation, self.yields_per_window = cycle.accumulation, cycle.length
        self.num_processes, self.rank = num_processes, rank
        self.epoch = 0
        window = batch_size * self.accumulation * num_processes
        self.num_groups = num_rows // window
        if self.num_groups == 0:
            raise ValueError(
                f"the train dataset has {num_rows} prompts, fewer than one optimizer step needs "
                f"({batch_size} prompts × {self.accumulation} accumulation steps × {num_processes} processes)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_groups * self.yields_per_window

    def __iter__(self):
        order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        window = self.batch_size * self.accumulation * self.num_processes
        for g in range(self.num_groups):
            mine = window_indices(order[g * window : (g + 1) * window].tolist(), self.batch_size, self.accumulation,
                                  self.num_processes, self.rank)
            for _ in range(self.yields_per_window):
                yield mine


def rollout_seed(seed: int, cycle: int, micro_batch: int, window: int, num_iterations: int) -> int:
    """Sampling seed of micro-batch j (``micro_batch``) in μ-cycle ``cycle`` (one window, reused μ times).

    A function of the window position, not of the process: micro-batch j draws the same answers and masks on any
    number of processes, and different micro-batches (so different processes) draw different noise. With one
    process it equals the seed the trainer used before data parallelism (the micro-step counter after the
    micro-batch's first appearance), so single-process runs are unchanged."""
    return seed * 1_000_003 + cycle * window * num_iterations + micro_batch + 1


def check_group_sharding(per_device_completions: int, num_generations: int, accumulation: int,
                         num_processes: int) -> None:
    """One ValueError for a global batch that cannot give every process whole groups of G answers."""
    global_batch = per_device_completions * accumulation * num_processes
    prompts = global_batch // num_generations
    split = (f"(global batch {global_batch} completions = {num_processes} processes × per_device_train_batch_size "
             f"{per_device_completions} × gradient_accumulation_steps {accumulation})")
    if num_processes > 1 and prompts < num_processes:
        raise ValueError(
            f"num_processes={num_processes} is larger than the {prompts} prompt(s) of num_generations="
            f"{num_generations} answers per optimizer step {split}: each process needs at least one whole prompt; "
            f"set per_device_train_batch_size to a multiple of {num_generations}")
    if per_device_completions % num_generations:
        raise ValueError(
            f"per_device_train_batch_size={per_device_completions} (completions) is not divisible by num_generations="
            f"{num_generations}: each process scores the G answers of its prompts together, so it must hold whole "
            f"groups {split}")


def check_launch(num_processes: int) -> None:
    """A launcher started more processes than ``accelerate`` joined: each would train alone on the whole batch."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > num_processes:
        raise ValueError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but this one runs alone (world size "
            f"{num_processes}): on CPU add --use_cpu true or set ACCELERATE_USE_CPU=1 so that the processes join "
            f"one gloo group (docs/scaling-out.md)")


def gather_objects(accelerator, value) -> list:
    """``value`` of every process, in rank order (one all-gather of picklable objects)."""
    if accelerator.num_processes == 1:
        return [value]
    from accelerate.utils import gather_object

    return gather_object([value])


def merge_sums(accelerator, sums: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Per key, (sum, count) added over processes; a key may be missing on some (e.g. a task no row of which
    landed on that process)."""
    merged: dict[str, tuple[float, float]] = {}
    for part in gather_objects(accelerator, sums):
        for key, (total, count) in part.items():
            old_total, old_count = merged.get(key, (0.0, 0.0))
            merged[key] = (old_total + total, old_count + count)
    return merged


def mean_over_processes(accelerator, metrics: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes that logged it (metrics already global come back unchanged)."""
    if accelerator.num_processes == 1:
        return metrics
    merged = merge_sums(accelerator, {key: (value, 1.0) for key, value in metrics.items()})
    return {key: total / count for key, (total, count) in merged.items()}


def gather_tensor(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenation over processes in rank order (every process passes the same shape), on ``tensor``'s device.
    (The collective runs on the accelerator's device: NCCL cannot move CPU tensors.)"""
    if accelerator.num_processes == 1:
        return tensor
    return accelerator.gather(tensor.to(accelerator.device)).to(tensor.device)


def local_share(accelerator, gathered: torch.Tensor, size: int) -> torch.Tensor:
    """This process's rows of a ``gather_tensor`` result whose parts had ``size`` rows each."""
    rank = accelerator.process_index
    return gathered[rank * size : (rank + 1) * size]


def sum_over_processes(accelerator, tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise sum over processes, on ``tensor``'s device."""
    if accelerator.num_processes == 1:
        return tensor
    return accelerator.reduce(tensor.to(accelerator.device), reduction="sum").to(tensor.device)


def wait_for_everyone(accelerator) -> None:
    if accelerator.num_processes > 1:
        accelerator.wait_for_everyone()
