"""Exact resume (issue #8): a run stopped at a checkpoint and resumed logs what the uninterrupted run logs; and no
lost checkpoint (issue #16): rotation after marking, damaged files named, a full disk reported in one line."""

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_trainer import count_target_reward, make_config, prompts_dataset
from transformers import TrainerCallback

from unigrpo import UniGRPOTrainer
from unigrpo.inner_steps import InnerStepCycle
from unigrpo.models import load_model, load_tokenizer
from unigrpo.resume import (COMPLETE_FILE, ROLLOUTS_FILE, CompleteCheckpointCallback, DiskFullError,
                            ResumeStateCallback, is_disk_full, report_disk_full, resolve_checkpoint)


def build(model_dir, folder, max_steps, callbacks=None, **overrides):
    """A μ = 2 run saving every step (constant lr, so the schedule does not depend on max_steps)."""
    return UniGRPOTrainer(
        model=load_model(model_dir), reward_funcs=[count_target_reward],
        args=make_config(folder, max_steps=max_steps, save_strategy="steps", save_steps=1, num_iterations=2,
                         lr_scheduler_type="constant", learning_rate=1e-2, **overrides),
        train_dataset=prompts_dataset(), processing_class=load_tokenizer(model_dir), callbacks=callbacks)


def run(model_dir, folder, max_steps, resume=None):
    trainer = build(model_dir, folder, max_steps)
    trainer.train(resume_from_checkpoint=resume)
    return [(e["step"], e["loss"], e.get("reward")) for e in trainer.state.log_history if "loss" in e]


def micro_recipe(tmp_path, model_dir, **keys) -> Path:
    """A ``unigrpo train`` recipe on the micro model and the built-in arithmetic data."""
    recipe = tmp_path / "r.yaml"
    lines = {"model_name_or_path": model_dir, "dataset_name": "arith", "dataset_test_split": "null",
             "reward_funcs": "[math_correctness, boxed_format]", "output_dir": tmp_path / "out",
             "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 6, "block_length": 6,
             "diffusion_steps": 6, "logging_steps": 1, "disable_tqdm": "true", "report_to": "none", **keys}
    recipe.write_text("".join(f"{key}: {value}\n" for key, value in lines.items()))
    return recipe


@pytest.mark.parametrize("stop", [2, 3])  # at a μ-cycle boundary, and inside a cycle (rollouts saved with it)
def test_resumed_run_logs_exactly_what_the_uninterrupted_run_logs(micro_model_dir, tmp_path, stop):
    full = run(micro_model_dir, tmp_path / "a", 5)
    run(micro_model_dir, tmp_path / "b", stop)
    checkpoint = tmp_path / "b" / "out" / f"checkpoint-{stop}"
    assert (checkpoint / ROLLOUTS_FILE).is_file() == (stop % 2 == 1)
    resumed = run(micro_model_dir, tmp_path / "b", 5, resume="auto")  # the latest checkpoint: checkpoint-{stop}
    assert resumed == full  # bitwise on CPU: losses and rewards of every step, before and after the stop


def test_resolve_checkpoint_takes_the_latest_complete_one(tmp_path):
    assert resolve_checkpoint(None, tmp_path) is None and resolve_checkpoint("auto", tmp_path / "none") is None
    for step in (3, 12, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if step != 20:  # checkpoint-20 was being written when the run was killed
            (tmp_path / f"checkpoint-{step}" / COMPLETE_FILE).write_text("{}")
    assert resolve_checkpoint("auto", tmp_path) == str(tmp_path / "checkpoint-12")
    assert resolve_checkpoint(True, tmp_path) == str(tmp_path / "checkpoint-12")
    assert resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path) == str(tmp_path / "checkpoint-3")
    with pytest.raises(ValueError, match="was not written completely"):
        resolve_checkpoint(str(tmp_path / "checkpoint-20"), tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "checkpoint-7"), tmp_path)


def test_a_kill_while_saving_never_becomes_the_resume_point(micro_model_dir, tmp_path):
    """Simulated crash mid-write: the next checkpoint folder holds the model but not the rest. 'auto' resumes from
    the last complete checkpoint and the run still matches the uninterrupted one."""
    import shutil

    full = run(micro_model_dir, tmp_path / "a", 4)
    run(micro_model_dir, tmp_path / "b", 2)
    out = tmp_path / "b" / "out"
    partial = out / "checkpoint-3"
    shutil.copytree(out / "checkpoint-2", partial)
    for name in (COMPLETE_FILE, "trainer_state.json", "optimizer.pt"):
        (partial / name).unlink(missing_ok=True)
    assert resolve_checkpoint("auto", out) == str(out / "checkpoint-2")
    assert run(micro_model_dir, tmp_path / "b", 4, resume="auto") == full


def test_sigterm_finishes_the_step_writes_a_checkpoint_and_exits_zero(micro_model_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    recipe = micro_recipe(tmp_path, micro_model_dir, max_steps=100000)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "unigrpo.cli", "train", "--config", str(recipe)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in process.stdout:  # wait until training has logged a step
        lines.append(line)
        if "'loss'" in line:
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, "".join(lines) + output
    assert "signal 15 received" in output
    checkpoints = sorted((tmp_path / "out").glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / "trainer_state.json").is_file()
    assert resolve_checkpoint("auto", tmp_path / "out") == str(checkpoints[-1])


def test_a_non_finite_loss_stops_the_run_naming_the_step_and_the_last_checkpoint(micro_model_dir, tmp_path):
    class NanAtStep3(UniGRPOTrainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            loss = super().compute_loss(model, inputs, *args, **kwargs)
            return loss * float("nan") if self.state.global_step == 2 else loss

    trainer = NanAtStep3(
        model=load_model(micro_model_dir), reward_funcs=[count_target_reward],
        args=make_config(tmp_path, max_steps=5, save_strategy="steps", save_steps=1),
        train_dataset=prompts_dataset(), processing_class=load_tokenizer(micro_model_dir))
    with pytest.raises(FloatingPointError, match="loss is nan at optimizer step 3") as error:
        trainer.train()
    assert f"Last complete checkpoint: {tmp_path / 'out' / 'checkpoint-2'}" in str(error.value)
    assert "q" in str(error.value)  # the batch's prompts are named
    assert trainer.state.global_step == 2


# ---------------------------------------------------------------------------------------- checkpoint safety (#16)
class KilledAfterSaving(TrainerCallback):
    """A kill in the window after the Trainer wrote checkpoint-``step`` and before it is marked complete."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def test_rotation_never_deletes_the_last_complete_checkpoint_before_the_next_is_marked(micro_model_dir, tmp_path):
    trainer = build(micro_model_dir, tmp_path, 3, callbacks=[KilledAfterSaving(2)], save_total_limit=1)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    out = tmp_path / "out"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert resolve_checkpoint("auto", out) == str(out / "checkpoint-1")  # the Trainer had deleted it before
    assert trainer.args.save_total_limit is None and trainer.callback_handler.callbacks[-1].save_total_limit == 1

    (out / "checkpoint-99").mkdir()  # a partial folder left by an earlier, longer run
    resumed = build(micro_model_dir, tmp_path, 4, save_total_limit=2)
    resumed.train(resume_from_checkpoint="auto")
    assert resumed.state.global_step == 4
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert all((out / name / COMPLETE_FILE).is_file() for name in ("checkpoint-3", "checkpoint-4"))

    # the same run's files, one truncated: one line naming folder, file and the checkpoint to resume from
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"checkpoint-4 is damaged .*model\.safetensors cannot be read .*"
                                         r"--resume_from_checkpoint .*checkpoint-3$"):
        resumed.train(resume_from_checkpoint="auto")


def test_sft_rotates_after_marking_and_resumes_auto(micro_model_dir, tmp_path):
    """MaskedSFTTrainer: the same completion callback and ``auto`` (its ``train`` resolves it, as ``fit`` relies on)."""
    from datasets import Dataset

    from unigrpo.sft import MaskedSFTConfig, MaskedSFTTrainer

    def sft(max_steps, callbacks=None):
        config = MaskedSFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=8, max_steps=max_steps,
                                 max_completion_length=4, block_length=4, diffusion_steps=4, report_to="none",
                                 disable_tqdm=True, save_strategy="steps", save_steps=1, save_total_limit=1)
        rows = [{"prompt": f"{c}=", "completion": c * 2} for c in "abcd"] * 4
        return MaskedSFTTrainer(load_model(micro_model_dir), config, Dataset.from_list(rows),
                                processing_class=load_tokenizer(micro_model_dir), callbacks=callbacks)

    with pytest.raises(KeyboardInterrupt):
        sft(3, [KilledAfterSaving(2)]).train()
    out = tmp_path / "sft"
    assert resolve_checkpoint("auto", out) == str(out / "checkpoint-1")
    resumed = sft(3)
    resumed.train(resume_from_checkpoint="auto")
    assert resumed.state.global_step == 3 and [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-3"]


def fake_checkpoint(output_dir, step, complete=True, completed_at=None):
    folder = Path(output_dir) / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if complete:
        (folder / COMPLETE_FILE).write_text("{}")
        if completed_at is not None:
            os.utime(folder / COMPLETE_FILE, (completed_at, completed_at))
    return folder


def test_rotation_keeps_the_newest_the_best_and_the_latest_completed_and_drops_debris(tmp_path):
    for step, completed_at in ((10, 1000), (20, 3000), (30, 2000)):  # 30: an earlier run's, before resuming at 10
        fake_checkpoint(tmp_path, step, completed_at=completed_at)
    fake_checkpoint(tmp_path, 5, complete=False)
    fake_checkpoint(tmp_path, 12, completed_at=4000)  # the checkpoint just written and marked
    (tmp_path / "checkpoint-12" / COMPLETE_FILE).unlink()  # on_save marks it
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    state = SimpleNamespace(global_step=12, best_model_checkpoint=str(tmp_path / "checkpoint-10"))
    callback = CompleteCheckpointCallback(save_total_limit=3)
    callback.on_save(args, state, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-12", "checkpoint-20"]

    CompleteCheckpointCallback(save_total_limit=1).on_train_end(args, state, None)  # the Trainer's rule at the end
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-10"]


def test_a_checkpoint_rewritten_by_a_resumed_run_is_unmarked_before_the_trainer_writes_it(tmp_path):
    fake_checkpoint(tmp_path, 20)  # an earlier, longer run's; this run resumed at 10 and is about to save step 20
    args = SimpleNamespace(output_dir=str(tmp_path), should_save=True)
    callback = CompleteCheckpointCallback()
    callback.on_step_end(args, SimpleNamespace(global_step=20), SimpleNamespace(should_save=False))
    assert (tmp_path / "checkpoint-20" / COMPLETE_FILE).is_file()
    callback.on_step_end(args, SimpleNamespace(global_step=20), SimpleNamespace(should_save=True))
    assert not (tmp_path / "checkpoint-20" / COMPLETE_FILE).is_file()


def test_auto_with_only_incomplete_checkpoints_is_an_error_not_a_fresh_start(tmp_path):
    fake_checkpoint(tmp_path, 4, complete=False)
    fake_checkpoint(tmp_path, 8, complete=False)
    with pytest.raises(ValueError, match=r"resume_from_checkpoint=auto: no complete checkpoint in .*"
                                         r"\['checkpoint-4', 'checkpoint-8'\] have no unigrpo_complete\.json .*"
                                         r"set resume_from_checkpoint to none to start fresh"):
        resolve_checkpoint("auto", tmp_path)
    assert resolve_checkpoint("none", tmp_path) is None


@pytest.mark.parametrize("name", ["optimizer.pt", "adapter_model.safetensors", "trainer_state.json", "rng_state.pth"])
def test_a_truncated_file_in_a_complete_checkpoint_is_named(tmp_path, name):
    from safetensors.torch import save_file

    fake_checkpoint(tmp_path, 3)
    folder = fake_checkpoint(tmp_path, 6)
    path = folder / name
    if name.endswith(".safetensors"):
        save_file({"w": torch.ones(64, 64)}, path)
    elif name.endswith(".json"):
        path.write_text('{"global_step": 6, "log_history": [' + "{}, " * 50 + "{}]}")
    else:
        torch.save({"state": torch.ones(1000)}, path)
    assert resolve_checkpoint(str(folder), tmp_path) == str(folder)  # whole: accepted
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"checkpoint {folder} is damaged although marked complete: {name} cannot "
                                         rf"be read \(.*\); resume from the previous complete checkpoint with "
                                         rf"--resume_from_checkpoint {tmp_path / 'checkpoint-3'}$"):
        resolve_checkpoint("auto", tmp_path)
    (tmp_path / "checkpoint-3" / COMPLETE_FILE).unlink()
    with pytest.raises(ValueError, match="no earlier complete checkpoint: set resume_from_checkpoint to none"):
        resolve_checkpoint(str(folder), tmp_path)


def test_disk_full_in_a_checkpoint_is_one_line_naming_it_and_the_last_complete_one(micro_model_dir, tmp_path,
                                                                                     monkeypatch, capsys):
    from unigrpo.cli import main

    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if "checkpoint-2" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.delenv("UNIGRPO_TRACEBACK", raising=False)
    recipe = micro_recipe(tmp_path, micro_model_dir, max_steps=3, save_strategy="steps", save_steps=1)
    assert main(["train", "--config", str(recipe)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    out = tmp_path / "out"
    assert error == (f"unigrpo train: error: disk full while writing {out / 'checkpoint-2'}: that checkpoint is "
                     f"incomplete (no {COMPLETE_FILE}: --resume_from_checkpoint auto skips it); last complete "
                     f"checkpoint: {out / 'checkpoint-1'}. Free space, then continue with --resume_from_checkpoint "
                     f"auto")
    assert resolve_checkpoint("auto", out) == str(out / "checkpoint-1")


def test_disk_full_in_the_final_save_names_the_output_folder(tmp_path):
    fake_checkpoint(tmp_path, 7)
    trainer = SimpleNamespace(args=SimpleNamespace(output_dir=str(tmp_path)), state=SimpleNamespace(global_step=7))
    with pytest.raises(DiskFullError, match=rf"^disk full while writing {tmp_path}: the final model there is "
                                            rf"incomplete; last complete checkpoint: {tmp_path / 'checkpoint-7'}\."):
        with report_disk_full(trainer, final_save=True):
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.safetensors"))
    with pytest.raises(KeyError), report_disk_full(trainer):  # anything else passes unchanged
        raise KeyError("x")


def test_a_silent_write_error_on_a_full_disk_counts_as_disk_full(tmp_path, monkeypatch):
    """torch.save reports ENOSPC as ``RuntimeError: basic_ios::clear: iostream error``: the free space decides."""
    import shutil

    error = RuntimeError("basic_ios::clear: iostream error")
    assert not is_disk_full(error, tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=4096))
    assert is_disk_full(error, tmp_path) and not is_disk_full(ValueError("bad row"), tmp_path)
    assert not is_disk_full(torch.OutOfMemoryError("CUDA out of memory"), tmp_path)


def test_resuming_inside_a_cycle_with_other_accumulation_steps_names_the_fix(tmp_path):
    """The open cycle's rollouts hold one micro-batch per accumulation slot: with other accumulation steps the
    resumed micro-step differs from the saved one, and the run stops before it trains on a missing slot."""
    single = SimpleNamespace(process_index=0, num_processes=1)
    args = SimpleNamespace(output_dir=str(tmp_path), gradient_accumulation_steps=1, num_iterations=2,
                           device=torch.device("cpu"))
    saved = InnerStepCycle(accumulation=1, num_iterations=2)
    saved.advance()
    saved.store(["slot 0"])
    ResumeStateCallback(saved, single).on_save(args, SimpleNamespace(global_step=1), None)
    checkpoint = tmp_path / "checkpoint-1"
    assert torch.load(checkpoint / ROLLOUTS_FILE, weights_only=False) == {"micro_step": 1, "rollouts": {0: "slot 0"}}

    same = ResumeStateCallback(InnerStepCycle(accumulation=1, num_iterations=2), single)
    same.resume_from = str(checkpoint)
    same.on_train_begin(args, SimpleNamespace(global_step=1), None)
    assert same.inner_steps.rollouts_for(0) == "slot 0"

    other = ResumeStateCallback(InnerStepCycle(accumulation=2, num_iterations=2), single)
    other.resume_from = str(checkpoint)
    args.gradient_accumulation_steps = 2
    with pytest.raises(ValueError, match="micro-step 1, but step 1 with gradient_accumulation_steps=2 resumes at "
                                         "micro-step 2: resume with the accumulation steps the checkpoint"):
        other.on_train_begin(args, SimpleNamespace(global_step=1), None)
