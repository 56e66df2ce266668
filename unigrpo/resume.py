"""Exact resume (docs/design.md §8): what a UniGRPO checkpoint holds beyond the ``Trainer``'s own state.

The ``Trainer`` saves and restores the model (or adapter), optimizer, scheduler, RNG states, the data position and
the global step. UniGRPO adds two things:

* the **micro-step counter**, from which the seeds of every rollout and mask draw are derived, so it is recomputed
  from the restored global step (global step × gradient-accumulation steps) when training begins;
* the **rollouts of an unfinished μ cycle**: the rollouts of a batch are reused for μ optimizer steps (Algorithm 1),
  so a checkpoint written inside a cycle also holds them (``unigrpo_rollouts.pt``; with several processes one
  shard each, ``unigrpo_rollouts_rank<r>.pt``), and a resumed run continues the cycle with exactly those answers,
  advantages and noised views.

**Complete checkpoints.** The ``Trainer`` writes a checkpoint's files in place, so a kill while writing leaves a
partial folder. After the last file, ``CompleteCheckpointCallback`` writes ``unigrpo_complete.json`` atomically
(temp file + rename); ``--resume_from_checkpoint auto`` takes the latest folder that has it and never a partial one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data_parallel import wait_for_everyone

ROLLOUTS_FILE = "unigrpo_rollouts.pt"
COMPLETE_FILE = "unigrpo_complete.json"


def is_complete(folder) -> bool:
    return (Path(folder) / COMPLETE_FILE).is_file()


def latest_complete_checkpoint(output_dir) -> str | None:
    """The highest-step ``checkpoint-N`` folder of ``output_dir`` that was written completely (None if none)."""
    folders = [p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.name.split("-")[-1].isdigit()]
    complete = [p for p in folders if is_complete(p)]
    return str(max(complete, key=lambda p: int(p.name.split("-")[-1]))) if complete else None


def resolve_checkpoint(resume_from_checkpoint, output_dir) -> str | None:
    """The checkpoint folder to resume from: a path, or True / "auto" = the latest complete one in ``output_dir``
    (None if there is none: a fresh start). A path that is not a complete checkpoint is an error."""
    if resume_from_checkpoint in (None, False):
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in ("auto", "true", "latest"):
        return latest_complete_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if not Path(resume_from_checkpoint).is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
    if not is_complete(resume_from_checkpoint):
        raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r} was not written completely (no "
                         f"{COMPLETE_FILE}: the run was killed while saving it); use an earlier one or 'auto'")
    return str(resume_from_checkpoint)


class CompleteCheckpointCallback(TrainerCallback):
    """Marks a checkpoint complete once every file is written (the ``Trainer`` calls ``on_save`` after saving;
    add it last so that other callbacks' files come first)."""

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not (folder.is_dir() and args.should_save):
            return
        temporary = folder / f".{COMPLETE_FILE}.tmp"
        temporary.write_text(json.dumps({"global_step": state.global_step}))
        os.replace(temporary, folder / COMPLETE_FILE)  # atomic: the marker exists whole or not at all


def rollouts_file(rank: int, num_processes: int) -> str:
    """The open cycle's rollouts of one process: each holds only its own micro-batches, so each writes its shard."""
    return ROLLOUTS_FILE if num_processes == 1 else f"unigrpo_rollouts_rank{rank}.pt"


class ResumeStateCallback(TrainerCallback):
    """Saves the open cycle's rollouts with each checkpoint (one file per process) and restores them and the
    micro-step on resume."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.resume_from: str | None = None  # set by ``UniGRPOTrainer.train``

    def shard_name(self) -> str:
        accelerator = self.trainer.accelerator
        return rollouts_file(accelerator.process_index, accelerator.num_processes)

    def on_train_begin(self, args, state, control, **kwargs):
        trainer = self.trainer
        trainer._micro_step = state.global_step * args.gradient_accumulation_steps
        trainer._rollouts = {}
        if not (self.resume_from and state.global_step % args.num_iterations):
            return  # a fresh start or a cycle boundary: the next step makes new rollouts
        saved = Path(self.resume_from) / self.shard_name()
        if not saved.is_file():
            raise FileNotFoundError(
                f"{saved} is missing: checkpoint step {state.global_step} is inside a μ cycle and its rollouts were "
                f"saved by another number of processes; resume with the same number, or from a checkpoint at a "
                f"multiple of num_iterations={args.num_iterations}")
        device = "cpu" if args.device.type == "cpu" else args.device  # torch.load cannot map to "cpu:0" (gloo runs)
        trainer._rollouts = torch.load(saved, weights_only=False, map_location=device)

    def on_save(self, args, state, control, **kwargs):
        if state.global_step % args.num_iterations:  # inside a cycle: the next steps reuse these rollouts
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)  # the main process may not have made it yet
            torch.save(self.trainer._rollouts, folder / self.shard_name())
        # every process's files (its RNG state, its rollouts) are written before the main one marks it complete
        wait_for_everyone(self.trainer.accelerator)


class GracefulStopCallback(TrainerCallback):
    """SIGTERM / SIGINT (a scheduler's pre-emption, Ctrl-C): finish the current optimizer step, write a checkpoint,
    and end training normally, so ``unigrpo train`` exits 0 and ``--resume_from_checkpoint auto`` continues.

    With several processes (``accelerator``) they decide together at each step's end: the launcher forwards the
    signal to all, but not at the same instant, and one process stopping a step early would leave the others
    waiting in the next gradient all-reduce."""

    def __init__(self, accelerator=None):
        self.signal: int | None = None
        self._previous = {}
        self.accelerator = accelerator

    def on_train_begin(self, args, state, control, **kwargs):
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._request_stop)

    def _request_stop(self, signum, frame):
        self.signal = signum

    def stop_requested(self) -> bool:
        """Whether any process received a signal (one small all-reduce per step with several processes)."""
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return self.signal is not None
        flag = torch.tensor([float(self.signal is not None)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_requested():
            received = f"signal {self.signal}" if self.signal is not None else "a signal on another process"
            print(f"unigrpo: {received} received: checkpoint at step {state.global_step}, then stop",
                  flush=True)
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
