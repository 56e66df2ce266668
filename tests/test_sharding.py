"""Sharded training (issue #17, ``unigrpo.sharding``): FSDP2 on CPU (gloo, 2 processes) trains the tiny demo as DDP
does, its checkpoints resume exactly, and set-ups that cannot run stop with one clear error.

FSDP2 runs through accelerate's own FSDP code; ``tests/fsdp_cpu.py`` only lets accelerate's CPU process group take
the FSDP settings of ``recipes/accelerate/fsdp.yaml`` (accelerate enables FSDP for GPU process groups only).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from test_data_parallel import accelerate_launch, train_log

from unigrpo.sharding import check_sharding, per_rank_state_bytes, whole_model

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5


# ---------------------------------------------------------------- set-ups that cannot run
def fake_accelerator(zero_stage=None, fsdp_version=None, device="cpu"):
    state = SimpleNamespace(
        deepspeed_plugin=SimpleNamespace(zero_stage=zero_stage) if zero_stage else None,
        fsdp_plugin=SimpleNamespace(fsdp_version=fsdp_version) if fsdp_version else None)
    return SimpleNamespace(state=state, device=torch.device(device), unwrap_model=lambda m: m)


def test_zero3_without_deepspeed_or_a_gpu_and_fsdp1_are_one_clear_error():
    pytest.importorskip("accelerate")
    try:
        import deepspeed  # noqa: F401
        message = "needs GPUs"
    except ImportError:
        message = "needs DeepSpeed: pip install deepspeed.*recipes/accelerate/fsdp.yaml"
    with pytest.raises(ValueError, match=message):
        check_sharding(fake_accelerator(zero_stage=3))
    with pytest.raises(ValueError, match="FSDP version 1 is not supported: set fsdp_version: 2"):
        check_sharding(fake_accelerator(fsdp_version=1))
    check_sharding(fake_accelerator(fsdp_version=2))
    check_sharding(fake_accelerator(zero_stage=2))  # ZeRO-2 keeps whole parameters


@pytest.mark.parametrize("architecture,layer", [("llada", "LLaDABlock"), ("dream", "DreamDecoderLayer"),
                                                ("llada-moe", "LLaDAMoEDecoderLayer")])
def test_fsdp_yaml_shards_every_decoder_layer_of_each_architecture(tmp_path, monkeypatch, architecture, layer):
    # recipes/accelerate/fsdp.yaml names no layer class, so accelerate takes the model's _no_split_modules
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy
    from fsdp_cpu import fsdp_environment

    from unigrpo.models import init_tiny, load_model

    for key, value in fsdp_environment().items():
        monkeypatch.setenv(key, value)
    model = load_model(init_tiny(tmp_path / architecture, preset="micro", architecture=architecture))
    policy = fsdp2_prepare_auto_wrap_policy(FullyShardedDataParallelPlugin(), model)
    wrapped = [type(m).__name__ for m in model.modules() if policy(m)]
    assert wrapped == [layer] * model.config.num_hidden_layers


def test_whole_model_of_an_unsharded_model_is_the_model_and_nests():
    model = torch.nn.Linear(2, 2)
    accelerator = fake_accelerator()
    with whole_model(accelerator, model) as outer, whole_model(accelerator, model) as inner:
        assert outer is model and inner is model


def test_per_rank_state_counts_parameters_gradients_and_adam_states():
    model = torch.nn.Linear(4, 3, bias=False)  # 12 float32 = 48 bytes
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    sizes = per_rank_state_bytes(model, optimizer)
    assert sizes["parameters"] == 48 and sizes["gradients"] == 48
    assert sizes["optimizer"] == 2 * 48 + 4  # exp_avg, exp_avg_sq and the float32 step count


# ---------------------------------------------------------------- FSDP2 on 2 CPU processes
def launch_fsdp(args: list[str]):
    """``accelerate launch`` of 2 CPU processes with FSDP2 (``tests/fsdp_cpu.py``)."""
    return accelerate_launch(2, [str(ROOT / "tests" / "fsdp_cpu.py"), *args])


def test_fsdp2_trains_as_ddp_and_resumes_exactly_from_its_checkpoint(tmp_path):
    """The tiny demo with β > 0 (a frozen reference beside the shards) for 4 steps: FSDP2 logs the losses, gradient
    norms, rewards and KL of DDP, evaluates the same; its checkpoint (model.safetensors loadable anywhere, the
    FSDP optimizer) resumed at step 2 continues with the same losses as the uninterrupted run."""
    common = ["-m", "unigrpo.cli", "train", "--config", "recipes/tiny-arith.yaml", "--max_steps", "4",
              "--per_device_train_batch_size", "32", "--train_limit", "512", "--beta", "0.04",
              "--learning_rate", "1e-3", "--eval_strategy", "steps", "--eval_steps", "4", "--eval_limit", "32",
              "--eval_on_start", "false", "--load_best_model_at_end", "false", "--save_steps", "2",
              "--save_total_limit", "3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]
    fsdp, ddp, resumed = tmp_path / "fsdp", tmp_path / "ddp", tmp_path / "resumed"
    launch_fsdp(common + ["--output_dir", str(fsdp)])
    accelerate_launch(2, common + ["--output_dir", str(ddp)])

    ours, reference = train_log(fsdp), train_log(ddp)
    assert len(ours) == len(reference) == 4
    for a, b in zip(ours, reference):
        for key in ("loss", "grad_norm", "reward", "kl"):  # reward: on a μ cycle's rollout steps only
            assert (key in a) == (key in b)
            assert key not in b or a[key] == pytest.approx(b[key], rel=TOLERANCE, abs=1e-7), (key, a["step"])
    assert ours[-1]["kl"] > 0  # the reference really differs from θ after the steps
    evals = [[e for e in json.loads((d / "trainer_state.json").read_text())["log_history"] if "eval_accuracy" in e]
             for d in (fsdp, ddp)]
    assert evals[0][0]["eval_accuracy"] == pytest.approx(evals[1][0]["eval_accuracy"])

    from safetensors.torch import load_file

    weights = load_file(fsdp / "model.safetensors")  # whole tensors, not shards
    assert weights.keys() == load_file(ddp / "model.safetensors").keys()
    assert all(torch.allclose(weights[k], w, atol=1e-5) for k, w in load_file(ddp / "model.safetensors").items())

    checkpoint = fsdp / "checkpoint-2"
    launch_fsdp(common + ["--output_dir", str(resumed), "--resume_from_checkpoint", str(checkpoint)])
    continued = [e for e in train_log(resumed) if e["step"] > 2]  # steps 1-2 come with the checkpoint's state
    assert [e["step"] for e in continued] == [3, 4]
    for a, b in zip(continued, ours[2:]):
        for key in ("loss", "grad_norm", "reward", "kl"):
            assert (key in a) == (key in b)
            assert key not in b or a[key] == pytest.approx(b[key], rel=TOLERANCE, abs=1e-7), (key, a["step"])


def test_fsdp2_with_lora_trains_as_ddp(tmp_path):
    """LoRA with β > 0 under FSDP2 (the frozen base and the adapters sharded; the reference is the base with the
    adapters disabled): the same losses, gradient norms, rewards and KL as DDP for 3 steps."""
    common = ["-m", "unigrpo.cli", "train", "--config", "recipes/tiny-arith-lora.yaml", "--max_steps", "3",
              "--per_device_train_batch_size", "32", "--train_limit", "512", "--beta", "0.04",
              "--eval_strategy", "no", "--eval_on_start", "false", "--load_best_model_at_end", "false",
              "--save_strategy", "no", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]
    fsdp, ddp = tmp_path / "fsdp", tmp_path / "ddp"
    launch_fsdp(common + ["--output_dir", str(fsdp)])
    accelerate_launch(2, common + ["--output_dir", str(ddp)])
    ours, reference = train_log(fsdp), train_log(ddp)
    assert len(ours) == len(reference) == 3
    for a, b in zip(ours, reference):
        for key in ("loss", "grad_norm", "reward", "kl"):
            assert (key in a) == (key in b)
            assert key not in b or a[key] == pytest.approx(b[key], rel=TOLERANCE, abs=1e-7), (key, a["step"])
    assert ours[-1]["kl"] > 0
    assert (fsdp / "adapter_model.safetensors").is_file() and not (fsdp / "model.safetensors").exists()
