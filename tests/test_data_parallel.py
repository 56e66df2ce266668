"""Data parallelism (issue #10, ``unigrpo.data_parallel``): the window split, seeds, bad batches, loss
normalisations under a split batch, and real 2-process runs on CPU (gloo, loopback only) against 1 process.

The invariant tested end to end: P processes with accumulation A equal 1 process with accumulation P·A (same
micro-batches, same seeds), up to float reduction order. Run as a script, this file is the 2-process worker.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from unigrpo.data_parallel import (
    RepeatedBatchSampler,
    check_group_sharding,
    rollout_seed,
    window_indices,
    window_micro_batch,
)
from unigrpo.inner_steps import InnerStepCycle
from unigrpo.loss import LOSS_TYPES

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5  # relative: the all-reduce adds the micro-batches' gradients in another order than accumulation


# ---------------------------------------------------------------- the window split and seeds
@pytest.mark.parametrize("processes,accumulation", [(2, 1), (2, 2), (4, 1)])
def test_processes_split_the_window_that_one_process_accumulates(processes, accumulation):
    B, W = 3, processes * accumulation  # prompts per micro-batch, micro-batches per optimizer step
    one = list(RepeatedBatchSampler(60, B, InnerStepCycle(W, 1), seed=5))  # 1 process, accumulation W: W yields/window
    windows = [one[k * W] for k in range(len(one) // W)]
    shards = [list(RepeatedBatchSampler(60, B, InnerStepCycle(accumulation, 1), seed=5, num_processes=processes,
                                        rank=r))
              for r in range(processes)]
    for k, window in enumerate(windows):
        for r in range(processes):
            mine = shards[r][k * accumulation]  # every yield of a window is this process's whole share
            for s in range(accumulation):
                j = window_micro_batch(s, r, processes)
                assert mine[s * B : (s + 1) * B] == window[j * B : (j + 1) * B]
    assert sorted(i for r in range(processes) for i in shards[r][0]) == sorted(windows[0])


def test_window_indices_keep_whole_micro_batches():
    order = list(range(100, 112))  # W = 4 micro-batches of 3 prompts
    assert window_indices(order, 3, 2, 2, 0) == [100, 101, 102, 106, 107, 108]  # j = 0, 2
    assert window_indices(order, 3, 2, 2, 1) == [103, 104, 105, 109, 110, 111]  # j = 1, 3


def test_seeds_follow_the_micro_batch_not_the_process():
    # micro-batch j of cycle c: 1 process × accumulation 2 (slot j) and 2 processes × accumulation 1 (rank j)
    for cycle in range(3):
        one = [rollout_seed(7, cycle, window_micro_batch(s, 0, 1), 2, 2) for s in range(2)]
        two = [rollout_seed(7, cycle, window_micro_batch(0, r, 2), 2, 2) for r in range(2)]
        assert one == two and one[0] != one[1]
    seeds = {rollout_seed(0, c, j, 4, 2) for c in range(10) for j in range(4)}
    assert len(seeds) == 40


# ---------------------------------------------------------------- bad input
def test_groups_that_do_not_split_over_processes_fail_naming_the_numbers():
    with pytest.raises(ValueError, match=r"num_processes=4 is larger than the 2 prompt\(s\).*global batch 16"):
        check_group_sharding(4, 8, 1, 4)  # 16 completions = 2 prompts of 8 answers for 4 processes
    with pytest.raises(ValueError, match=r"per_device_train_batch_size=12 .* not divisible by num_generations=8"):
        check_group_sharding(12, 8, 2, 2)  # 48 = 6 prompts, but 12 per process is 1.5 groups
    check_group_sharding(16, 8, 1, 2)


def test_config_refuses_bad_sharding_and_a_lone_launched_process(monkeypatch, tmp_path):
    from unigrpo import UniGRPOConfig

    base = dict(output_dir=str(tmp_path), num_generations=8, report_to="none")
    monkeypatch.setattr(UniGRPOConfig, "world_size", property(lambda self: 4))
    with pytest.raises(ValueError, match="num_processes=4 is larger than the 2 prompt"):
        UniGRPOConfig(per_device_train_batch_size=4, **base)
    monkeypatch.setattr(UniGRPOConfig, "world_size", property(lambda self: 1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="ACCELERATE_USE_CPU=1"):
        UniGRPOConfig(per_device_train_batch_size=8, **base)


def test_recipe_configs_for_accelerate_parse():
    import yaml

    kinds = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED"}
    for name, kind in kinds.items():
        text = (ROOT / "recipes" / "accelerate" / f"{name}.yaml").read_text()
        config = yaml.safe_load(text)
        assert config["distributed_type"] == kind and config["num_machines"] == 1
        assert ("EXERCISED HERE" in text) == (name in ("ddp", "fsdp"))  # the header says which ran here
    assert yaml.safe_load((ROOT / "recipes/accelerate/deepspeed_zero3.yaml").read_text())["deepspeed_config"][
        "zero_stage"] == 3


# ---------------------------------------------------------------- loss normalisations of a split batch
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_split_batch_loss_and_gradient_equal_the_whole_batch(loss_type):
    """Two micro-batches, each normalised alone (dapo: by the whole step's count / 2) and averaged as the
    Trainer's accumulation and DDP's mean do, give the whole batch's loss and gradient."""
    normalise = LOSS_TYPES[loss_type]
    g = torch.Generator().manual_seed(0)
    values = torch.randn(8, 5, generator=g, requires_grad=True)
    mask = torch.rand(8, 5, generator=g) < 0.5
    mask[:, 0] = True
    whole_tokens = mask.sum().float()
    whole = normalise(values, mask, torch.arange(8), 8, 5, whole_tokens)
    (grad_whole,) = torch.autograd.grad(whole, values)
    halves = [normalise(values[h], mask[h], torch.arange(4), 4, 5, whole_tokens / 2)
              for h in (slice(0, 4), slice(4, 8))]
    split = sum(halves) / 2
    (grad_split,) = torch.autograd.grad(split, values)
    assert torch.allclose(split, whole, atol=1e-6)
    assert torch.allclose(grad_split, grad_whole, atol=1e-7)


def test_bnpo_is_a_mean_of_micro_batch_token_means():
    """bnpo normalises each micro-batch by its own tokens (as TRL's): with unequal counts it is not the whole
    batch's token mean; dapo is (documented in unigrpo.loss)."""
    values = torch.ones(4, 2)
    values[2:] = 3.0
    mask = torch.tensor([[True, True], [True, True], [True, False], [False, False]])
    halves = [LOSS_TYPES["bnpo"](values[h], mask[h], torch.arange(2), 2, 2) for h in (slice(0, 2), slice(2, 4))]
    assert torch.isclose(sum(halves) / 2, torch.tensor(2.0))  # (1 + 3) / 2, while the token mean is 1.4


def test_trainer_gives_dapo_the_whole_steps_token_count(micro_model_dir, tmp_path):
    """Accumulation 2 in one process: each slot's normaliser is the masked tokens of both slots' views / 2."""
    from unigrpo import UniGRPOConfig, UniGRPOTrainer
    from unigrpo.models import load_model, load_tokenizer

    config = UniGRPOConfig(output_dir=str(tmp_path), num_generations=4, per_device_train_batch_size=8,
                           gradient_accumulation_steps=2, num_iterations=2, max_completion_length=4, block_length=4,
                           diffusion_steps=4, loss_type="dapo", report_to="none")
    dataset = Dataset.from_list([{"prompt": f"q{i:02d}=", "answer": str(i)} for i in range(8)])
    trainer = UniGRPOTrainer(load_model(micro_model_dir), [count_target_reward], config, dataset,
                             processing_class=load_tokenizer(micro_model_dir))
    rows = [dataset[i] for i in range(4)]
    slots = trainer.make_window_rollouts([rows[:2], rows[2:]], cycle=0)
    step_tokens = slots[0].masked_tokens() + slots[1].masked_tokens()  # (μ,)
    assert step_tokens.shape == (2,) and not torch.equal(slots[0].masked_tokens(), slots[1].masked_tokens())
    for rollouts in slots:
        assert torch.equal(rollouts.tokens_per_micro_batch, step_tokens / 2)
        assert rollouts.inputs_for_step(1)["global_tokens"] == step_tokens[1] / 2


# ---------------------------------------------------------------- real processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               ACCELERATE_USE_CPU="1", MASTER_ADDR="127.0.0.1")
    env.pop("WORLD_SIZE", None)
    return env


def accelerate_launch(processes: int, args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    """``accelerate launch`` with the DDP recipe config on CPU (gloo over loopback)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
               str(ROOT / "recipes/accelerate/ddp.yaml"), "--num_processes", str(processes),
               "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()), *args]
    result = subprocess.run(command, cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=timeout)
    causes = [line for line in result.stderr.splitlines()
              if any(word in line for word in ("Error", "error:", "what()", "terminate", "Signal"))]
    assert result.returncode == 0, "\n".join(causes[:20]) + "\n...\n" + result.stderr[-2000:]
    return result


def train_log(output_dir) -> list[dict]:
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return [e for e in history if "loss" in e]


def assert_same_steps(ours: list[dict], reference: list[dict], keys=("loss", "grad_norm", "reward")):
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        for key in keys:
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=TOLERANCE, abs=1e-7), (key, a["step"], a[key], b[key])


def test_two_processes_run_the_cli_and_match_one_process(tmp_path):
    """``accelerate launch --num_processes 2 -m unigrpo.cli train`` (the tiny demo recipe, 3 steps): one checkpoint
    set (per-process rollout shards inside the μ cycle), one curve plot, a global completions table; its logged
    losses, gradient norms and rewards equal a 1-process run with accumulation 2 (the same global batch), and so
    does its held-out evaluation, split over the processes."""
    common = ["-m", "unigrpo.cli", "train", "--config", "recipes/tiny-arith.yaml", "--max_steps", "3",
              "--per_device_train_batch_size", "32", "--train_limit", "512", "--eval_strategy", "steps",
              "--eval_steps", "3", "--eval_limit", "64", "--eval_on_start", "false",
              "--load_best_model_at_end", "false", "--save_steps", "3",
              "--logging_steps", "1", "--log_completions", "true", "--report_to", "none", "--disable_tqdm", "true"]
    two, one = tmp_path / "two", tmp_path / "one"
    accelerate_launch(2, common + ["--output_dir", str(two)])
    accelerate_launch(1, common + ["--output_dir", str(one), "--gradient_accumulation_steps", "2"])

    checkpoints = sorted(p.name for p in two.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-3"]
    files = sorted(p.name for p in (two / "checkpoint-3").iterdir())
    for name in ("model.safetensors", "optimizer.pt", "unigrpo_complete.json", "unigrpo_rollouts_rank0.pt",
                 "unigrpo_rollouts_rank1.pt", "rng_state_0.pth", "rng_state_1.pth"):
        assert name in files
    assert "unigrpo_rollouts.pt" in {p.name for p in (one / "checkpoint-3").iterdir()}
    assert (two / "training_curves.png").is_file() and (two / "model.safetensors").is_file()
    table = [json.loads(line) for line in (two / "completions" / "step_000000.jsonl").read_text().splitlines()]
    assert len(table) == 2 * 32 and len({row["prompt"] for row in table}) == 8  # both processes' prompts, once
    reference = [json.loads(line) for line in (one / "completions" / "step_000000.jsonl").read_text().splitlines()]
    assert table == reference

    assert train_log(two)[0]["loss"] == pytest.approx(train_log(one)[0]["loss"], rel=TOLERANCE, abs=1e-7)
    # held-out evaluation is split over the processes (32 rows each) and gathered: the 1-process figures
    evals = [[e for e in json.loads((d / "trainer_state.json").read_text())["log_history"] if "eval_accuracy" in e]
             for d in (two, one)]
    assert evals[0][0]["eval_n"] == evals[1][0]["eval_n"] == 64
    for key in ("eval_accuracy", "eval_reward", "eval_completions/mean_length"):
        assert evals[0][0][key] == pytest.approx(evals[1][0][key]), key
    assert_same_steps(train_log(two), train_log(one),
                      keys=("loss", "grad_norm", "reward", "frac_reward_zero_std", "mask_ratio", "clip_ratio/region_mean"))


# ---------------------------------------------------------------- every loss type, the reference, LoRA, mixed tasks
WORKER_CASES = [dict(loss_type=t) for t in ("grpo", "bnpo", "dr_grpo", "dapo")] + [
    dict(loss_type="dapo", beta=0.1, scale_rewards="batch"),  # a frozen reference copy beside DDP; global std
    dict(beta=0.1, peft=True),  # LoRA: the reference is the unwrapped policy with adapters disabled
    dict(beta=0.05, mixed=True),  # t2t + mmu + t2i in a micro-batch: several DDP forwards before one backward
]


def count_target_reward(prompts, completions, completion_ids, **kwargs):
    return [sum(ch == "7" for ch in c) / 4 for c in completions]


def case_trainer(case: dict, model_dir: str, mmada_dir: str, output_dir: str, accumulation: int):
    """A trainer for one case: 2 optimizer steps (one μ = 2 cycle), 4 prompts × G 4 per process and slot."""
    from unigrpo import UniGRPOConfig, UniGRPOTrainer
    from unigrpo.models import LORA_TARGET_MODULES, load_model, load_tokenizer

    case = dict(case)
    peft, mixed = case.pop("peft", False), case.pop("mixed", False)
    config = UniGRPOConfig(
        output_dir=output_dir, num_generations=4, per_device_train_batch_size=16 if mixed else 8,
        gradient_accumulation_steps=accumulation, num_iterations=2, max_completion_length=4, block_length=4,
        diffusion_steps=4, image_steps=4, learning_rate=1e-2, max_steps=2, logging_steps=1, seed=0,
        save_strategy="no", report_to="none", disable_tqdm=True, **case)
    torch.manual_seed(0)  # LoRA's initial A matrices
    if mixed:
        from image_helpers import PatchColourTokenizer
        from test_tasks import mixed_dataset, redness, target_text

        return UniGRPOTrainer(load_model(mmada_dir), [target_text, redness], config, mixed_dataset(8),
                              processing_class=load_tokenizer(mmada_dir), image_tokenizer=PatchColourTokenizer())
    peft_config = None
    if peft:
        from peft import LoraConfig

        peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES)
    dataset = Dataset.from_list([{"prompt": f"q{i:02d}=", "answer": str(i)} for i in range(32)])
    return UniGRPOTrainer(load_model(model_dir), [count_target_reward], config, dataset,
                          processing_class=load_tokenizer(model_dir), peft_config=peft_config)


def run_cases(model_dir: str, mmada_dir: str, output_dir: str, accumulation: int) -> list[list[dict]]:
    logs = []
    for k, case in enumerate(WORKER_CASES):
        trainer = case_trainer(case, model_dir, mmada_dir, f"{output_dir}/{k}", accumulation)
        trainer.train()
        logs.append([e for e in trainer.state.log_history if "loss" in e])
    return logs


def worker(model_dir: str, mmada_dir: str, output: str) -> None:
    """Run under a launcher with 2 processes: accumulation 1 each; the main process writes the logs."""
    from accelerate import PartialState

    logs = run_cases(model_dir, mmada_dir, str(Path(output).parent / "work"), accumulation=1)
    state = PartialState()
    if state.is_main_process:
        Path(output).write_text(json.dumps(logs))
    state.wait_for_everyone()
    state.destroy_process_group()  # leave together: gloo torn down at interpreter exit can abort a process


def test_every_loss_type_lora_and_mixed_tasks_match_one_process(micro_model_dir, tmp_path):
    """grpo / bnpo / dr_grpo / dapo, dapo with β > 0 (frozen reference) and the batch std, LoRA with β > 0, and a
    mixed-task batch: 2 processes × accumulation 1 log the same losses, gradient norms, rewards and KL as
    1 process × accumulation 2."""
    from unigrpo.models import init_tiny

    mmada_dir = init_tiny(tmp_path / "mmada", preset="micro", mmada=True, codebook_size=8, num_vq_tokens=4)
    output = tmp_path / "two.json"
    accelerate_launch(2, [str(Path(__file__)), "worker", str(micro_model_dir), str(mmada_dir), str(output)])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each launched process: same kernels, same float results
    try:
        reference = run_cases(str(micro_model_dir), str(mmada_dir), str(tmp_path / "one"), accumulation=2)
    finally:
        torch.set_num_threads(threads)
    for case, ours, ref in zip(WORKER_CASES, json.loads(output.read_text()), reference):
        keys = ("loss", "grad_norm", "reward") + (("kl",) if case.get("beta") else ())
        keys += ("tasks/t2i/reward",) if case.get("mixed") else ()
        assert_same_steps(ours, ref, keys)
        assert "kl" not in keys or ours[1]["kl"] > 0  # the reference really differs from θ after a step


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(*sys.argv[2:5])
