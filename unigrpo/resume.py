"""Exact resume (docs/design.md §8): what a UniGRPO checkpoint holds beyond the ``Trainer``'s own state.

The ``Trainer`` saves and restores the model (or adapter), optimizer, scheduler, RNG states, the data position and
the global step. UniGRPO adds the state of its μ cycle (``unigrpo.inner_steps.InnerStepCycle``):

* the **micro-step counter**, from which the seeds of every rollout and mask draw are derived, so it is recomputed
  from the restored global step (global step × gradient-accumulation steps) when training begins;
* the **rollouts of an unfinished μ cycle**: the rollouts of a batch are reused for μ optimizer steps (Algorithm 1),
  so a checkpoint written inside a cycle also holds them (``unigrpo_rollouts.pt``; with several processes one
  shard each, ``unigrpo_rollouts_rank<r>.pt``), and a resumed run continues the cycle with exactly those answers,
  advantages and noised views.

**Complete checkpoints.** The ``Trainer`` writes a checkpoint's files in place, so a kill while writing leaves a
partial folder. After the last file, ``CompleteCheckpointCallback`` writes ``unigrpo_complete.json`` atomically
(temp file + rename); ``--resume_from_checkpoint auto`` takes the latest folder that has it and never a partial one.

**No window without a complete checkpoint.** The ``Trainer`` deletes old checkpoints (``save_total_limit``) inside
its save, before any callback runs, so a kill right after that deletion would leave no complete checkpoint at all.
The ``Trainer`` is therefore given ``save_total_limit=None`` and ``CompleteCheckpointCallback`` rotates instead,
after marking the new checkpoint complete; only complete checkpoints count toward the limit.

**Damaged checkpoints.** Before the ``Trainer`` loads a checkpoint its files are checked cheaply (safetensors
headers against the file size, the zip directory at the end of ``torch.save`` files, JSON), so a truncated file is
one error naming it and the previous complete checkpoint, not a ``SafetensorError``. A full disk while saving is one
error naming the incomplete folder and the last complete checkpoint (``DiskFullError``).
"""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data_parallel import wait_for_everyone

ROLLOUTS_FILE = "unigrpo_rollouts.pt"
COMPLETE_FILE = "unigrpo_complete.json"


def is_complete(folder) -> bool:
    return (Path(folder) / COMPLETE_FILE).is_file()


def checkpoint_step(folder) -> int:
    return int(Path(folder).name.split("-")[-1])


def checkpoint_folders(output_dir) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, complete or not, by step."""
    if not Path(output_dir).is_dir():
        return []
    folders = [p for p in Path(output_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
               if p.is_dir() and p.name.split("-")[-1].isdigit()]
    return sorted(folders, key=checkpoint_step)


def latest_complete_checkpoint(output_dir, before: int | None = None) -> str | None:
    """The highest-step ``checkpoint-N`` folder of ``output_dir`` that was written completely (None if none);
    with ``before``, the highest below that step."""
    complete = [p for p in checkpoint_folders(output_dir)
                if is_complete(p) and (before is None or checkpoint_step(p) < before)]
    return str(complete[-1]) if complete else None


def resolve_checkpoint(resume_from_checkpoint, output_dir) -> str | None:
    """The checkpoint folder to resume from: a path, or True / "auto" = the latest complete one in ``output_dir``
    (None if there is none: a fresh start; None / "none" is a fresh start too). A path that is not a complete
    checkpoint, checkpoint folders of which none is complete, or a damaged file in the chosen one is an error."""
    if resume_from_checkpoint in (None, False) or str(resume_from_checkpoint).lower() in ("none", "null", ""):
        return None
    if resume_from_checkpoint is True or str(resume_from_checkpoint).lower() in ("auto", "true", "latest"):
        checkpoint = latest_complete_checkpoint(output_dir)
        if checkpoint is None and checkpoint_folders(output_dir):
            raise ValueError(f"resume_from_checkpoint=auto: no complete checkpoint in {output_dir}: "
                             f"{[p.name for p in checkpoint_folders(output_dir)]} have no {COMPLETE_FILE} (the run "
                             f"was killed while saving them); delete them, pass a complete checkpoint's path, or set "
                             f"resume_from_checkpoint to none to start fresh")
    else:
        checkpoint = str(resume_from_checkpoint)
        if not Path(checkpoint).is_dir():
            raise FileNotFoundError(f"resume_from_checkpoint={checkpoint!r} is not a checkpoint folder")
        if not is_complete(checkpoint):
            raise ValueError(f"resume_from_checkpoint={checkpoint!r} was not written completely (no "
                             f"{COMPLETE_FILE}: the run was killed while saving it); use an earlier one or 'auto'")
    if checkpoint is not None:
        verify_checkpoint_files(checkpoint)
    return checkpoint


# ---------------------------------------------------------------------------------------- damaged checkpoints
def file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be loaded (None if it looks whole). Cheap: headers and directories, never the tensors,
    so an 8B checkpoint is checked in milliseconds."""
    if path.stat().st_size == 0:
        return "it is empty"
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(path, framework="pt"):  # checks the header and that the data covers the file
                pass
        elif path.suffix in (".pt", ".pth", ".bin"):
            with path.open("rb") as file:
                zipped = file.read(2) == b"PK"  # torch.save's zip format (an old pickle-only file is not checked)
            if zipped:
                zipfile.ZipFile(path).close()  # the zip directory is written last: a truncated file has none
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except Exception as error:  # noqa: BLE001 - any reader failure means the file is damaged
        return f"{type(error).__name__}: {error}"
    return None


def verify_checkpoint_files(folder) -> None:
    """Raises one ValueError naming the first damaged file and the previous complete checkpoint to resume from."""
    folder = Path(folder)
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        problem = file_problem(path)
        if problem is None:
            continue
        previous = latest_complete_checkpoint(folder.parent, before=checkpoint_step(folder)) \
            if folder.name.split("-")[-1].isdigit() else None
        advice = (f"resume from the previous complete checkpoint with --resume_from_checkpoint {previous}"
                  if previous else "there is no earlier complete checkpoint: set resume_from_checkpoint to none "
                  "to start fresh")
        raise ValueError(f"checkpoint {folder} is damaged although marked complete: {path.name} cannot be read "
                         f"({problem}); {advice}")


# ---------------------------------------------------------------------------------------- disk full
class DiskFullError(OSError, ValueError):
    """No space left while writing a checkpoint or the final model: an ``OSError`` (ENOSPC) that the CLI reports
    in one line like the other ``ValueError``s."""


def is_disk_full(error: BaseException, output_dir) -> bool:
    """ENOSPC anywhere in the exception chain, or a write error while ``output_dir``'s disk has no room left
    (``torch.save`` reports a full disk as ``RuntimeError: basic_ios::clear: iostream error``)."""
    chain, seen = error, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if (isinstance(chain, OSError) and chain.errno == errno.ENOSPC) or "No space left on device" in str(chain):
            return True
        chain = chain.__cause__ or chain.__context__
    written = isinstance(error, OSError) or (isinstance(error, RuntimeError) and any(
        word in str(error) for word in ("iostream", "write", "PytorchStreamWriter")))  # not e.g. out of memory
    if not written:
        return False
    try:
        return shutil.disk_usage(output_dir).free < 1 << 20
    except OSError:
        return False


def disk_full_message(error: BaseException, output_dir, global_step: int, final_save: bool) -> str:
    last = latest_complete_checkpoint(output_dir)
    current = Path(output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{global_step}"
    if not final_save and current.is_dir() and not is_complete(current):
        folder, what = current, (f"that checkpoint is incomplete (no {COMPLETE_FILE}: --resume_from_checkpoint "
                                 f"auto skips it)")
    elif final_save:
        folder, what = Path(output_dir), "the final model there is incomplete"
    else:
        filename = getattr(error, "filename", None)
        folder, what = (Path(filename).parent if filename else Path(output_dir)), "the file there is incomplete"
    return (f"disk full while writing {folder}: {what}; last complete checkpoint: {last or 'none'}. Free space, "
            f"then continue with --resume_from_checkpoint auto")


@contextmanager
def report_disk_full(trainer, final_save: bool = False):
    """Turns a full disk inside the block (training with its checkpoints, or the final save) into one
    ``DiskFullError`` line; any other error passes unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as error:
        if not is_disk_full(error, trainer.args.output_dir):
            raise
        full = DiskFullError(disk_full_message(error, trainer.args.output_dir, trainer.state.global_step, final_save))
        full.errno = errno.ENOSPC  # set after: OSError(errno, text) would print "[Errno 28] " before the line
        raise full from error


# ---------------------------------------------------------------------------------------- marking and rotation
class CompleteCheckpointCallback(TrainerCallback):
    """Marks a checkpoint complete once every file is written (the ``Trainer`` calls ``on_save`` after saving;
    add it last so that other callbacks' files come first), then applies ``save_total_limit`` in the ``Trainer``'s
    place (``add_complete_checkpoint_callback``): the last complete checkpoint is never deleted before the next
    one is complete."""

    def __init__(self, save_total_limit: int | None = None):
        self.save_total_limit = save_total_limit

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if not (folder.is_dir() and args.should_save):
            return
        temporary = folder / f".{COMPLETE_FILE}.tmp"
        temporary.write_text(json.dumps({"global_step": state.global_step}))
        os.replace(temporary, folder / COMPLETE_FILE)  # atomic: the marker exists whole or not at all
        if self.save_total_limit and self.save_total_limit > 0:
            rotate_checkpoints(args.output_dir, self.save_total_limit, folder, state.best_model_checkpoint)

    def on_step_end(self, args, state, control, **kwargs):
        """A checkpoint about to be written over one that an earlier, longer run marked (resumed from an older
        checkpoint) loses its marker first: mixed files of two runs must never look complete."""
        stale = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}" / COMPLETE_FILE
        if control.should_save and args.should_save and stale.is_file():
            stale.unlink()

    on_epoch_end = on_step_end  # the Trainer also saves after on_epoch_end (save_strategy: epoch)

    def on_train_end(self, args, state, control, **kwargs):
        """The ``Trainer``'s end-of-training rule for ``save_total_limit=1`` with ``load_best_model_at_end``: only
        the best checkpoint stays."""
        best = state.best_model_checkpoint
        if self.save_total_limit == 1 and best and args.should_save and Path(best).is_dir():
            for folder in checkpoint_folders(args.output_dir):
                if not folder.samefile(best):
                    shutil.rmtree(folder, ignore_errors=True)


def rotate_checkpoints(output_dir, limit: int, newest: Path, best: str | None) -> None:
    """Keeps ``limit`` complete checkpoints (``max(limit, protected)`` as the ``Trainer`` does): the newest (just
    marked) and the best (``load_best_model_at_end``) always, then the most recently completed (marker time, as
    the ``Trainer`` orders by time: a resumed run's new checkpoints outrank higher-step leftovers). Incomplete
    folders other than the newest are debris of a killed save that resume never uses: they go too."""
    protected = [p for p in (newest, Path(best) if best else None) if p is not None and p.is_dir()]
    others, debris = [], []
    for folder in checkpoint_folders(output_dir):
        if any(folder.samefile(p) for p in protected):
            continue
        (others if is_complete(folder) else debris).append(folder)
    others.sort(key=lambda p: ((p / COMPLETE_FILE).stat().st_mtime, checkpoint_step(p)))  # oldest first
    keep = max(limit - len({p.resolve() for p in protected}), 0)
    for folder in debris + others[: max(len(others) - keep, 0)]:
        shutil.rmtree(folder, ignore_errors=True)


def add_complete_checkpoint_callback(trainer) -> None:
    """Adds ``CompleteCheckpointCallback`` last and moves ``save_total_limit`` from the ``Trainer`` to it (the
    ``Trainer`` would rotate before the new checkpoint is marked). ``trainer.args`` becomes a copy with
    ``save_total_limit=None``; the caller's arguments object is left as it was."""
    limit = trainer.args.save_total_limit
    if limit:
        trainer.args = copy.copy(trainer.args)
        trainer.args.save_total_limit = None
    trainer.add_callback(CompleteCheckpointCallback(limit))


def rollouts_file(rank: int, num_processes: int) -> str:
    """The open cycle's rollouts of one process: each holds only its own micro-batches, so each writes its shard."""
    return ROLLOUTS_FILE if num_processes == 1 else f"unigrpo_rollouts_rank{rank}.pt"


class ResumeStateCallback(TrainerCallback):
    """Saves the open μ cycle (``unigrpo.inner_steps``: its counter and rollouts) with each checkpoint, one file per
    process, and restores it on resume."""

    def __init__(self, inner_steps, accelerator):
        self.inner_steps, self.accelerator = inner_steps, accelerator
        self.resume_from: str | None = None  # set by ``UniGRPOTrainer.train``

    def shard_name(self) -> str:
        return rollouts_file(self.accelerator.process_index, self.accelerator.num_processes)

    def on_train_begin(self, args, state, control, **kwargs):
        cycle = self.inner_steps
        cycle.reset_to_step(state.global_step)
        if not (self.resume_from and cycle.is_open):
            return  # a fresh start or a cycle boundary: the next step makes new rollouts
        saved = Path(self.resume_from) / self.shard_name()
        if not saved.is_file():
            raise FileNotFoundError(
                f"{saved} is missing: checkpoint step {state.global_step} is inside a μ cycle and its rollouts were "
                f"saved by another number of processes; resume with the same number, or from a checkpoint at a "
                f"multiple of num_iterations={args.num_iterations}")
        device = "cpu" if args.device.type == "cpu" else args.device  # torch.load cannot map to "cpu:0" (gloo runs)
        expected = cycle.micro_step
        cycle.load_state_dict(torch.load(saved, weights_only=False, map_location=device))
        if cycle.micro_step != expected:
            raise ValueError(
                f"{saved} holds the rollouts of micro-step {cycle.micro_step}, but step {state.global_step} with "
                f"gradient_accumulation_steps={args.gradient_accumulation_steps} resumes at micro-step {expected}: "
                f"resume with the accumulation steps the checkpoint was written with, or from a checkpoint at a "
                f"multiple of num_iterations={args.num_iterations}")

    def on_save(self, args, state, control, **kwargs):
        if self.inner_steps.is_open:  # the next steps reuse these rollouts
            folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)  # the main process may not have made it yet
            torch.save(self.inner_steps.state_dict(), folder / self.shard_name())
        # every process's files (its RNG state, its rollouts) are written before the main one marks it complete
        wait_for_everyone(self.accelerator)


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
