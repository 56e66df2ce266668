"""Exact resume (issue #8): a run stopped at a checkpoint and resumed logs what the uninterrupted run logs."""

import pytest
from test_trainer import count_target_reward, make_config, prompts_dataset

from unigrpo import UniGRPOTrainer
from unigrpo.models import load_model, load_tokenizer
from unigrpo.resume import COMPLETE_FILE, ROLLOUTS_FILE, resolve_checkpoint


def run(model_dir, folder, max_steps, resume=None):
    """A μ = 2 run saving every step (constant lr, so the schedule does not depend on max_steps)."""
    trainer = UniGRPOTrainer(
        model=load_model(model_dir), reward_funcs=[count_target_reward],
        args=make_config(folder, max_steps=max_steps, save_strategy="steps", save_steps=1, num_iterations=2,
                         lr_scheduler_type="constant", learning_rate=1e-2),
        train_dataset=prompts_dataset(), processing_class=load_tokenizer(model_dir))
    trainer.train(resume_from_checkpoint=resume)
    return [(e["step"], e["loss"], e.get("reward")) for e in trainer.state.log_history if "loss" in e]


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

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""model_name_or_path: {micro_model_dir}
dataset_name: arith
dataset_test_split: null
reward_funcs: [math_correctness, boxed_format]
output_dir: {tmp_path / 'out'}
num_generations: 4
per_device_train_batch_size: 8
max_completion_length: 6
block_length: 6
diffusion_steps: 6
max_steps: 100000
logging_steps: 1
disable_tqdm: true
report_to: none
""")
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
