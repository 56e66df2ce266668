"""The memory plan (unigrpo/memory_plan.py) against measured bytes of tiny models on CPU, and `unigrpo check --plan`."""

import pytest
import torch
from peft import LoraConfig

from unigrpo.cli import main
from unigrpo.memory_measure import saved_activation_bytes
from unigrpo.memory_plan import GIB, KNOWN_SHAPES, ModelShape, plan_memory
from unigrpo.memory_plan_recipe import launch_from_accelerate_config, model_config_for, parse_memory_size
from unigrpo.models import LORA_TARGET_MODULES, LLaDAModelLM, tiny_config
from unigrpo.models.lora import apply_peft

RECIPE = dict(bf16=False, fp16=False, activation_checkpointing=False, gradient_checkpointing=False,
              likelihood_estimator="unigrpo", eval_strategy="no", per_device_train_batch_size=4,
              per_device_eval_batch_size=8, gradient_accumulation_steps=1, num_generations=2,
              max_completion_length=64, block_length=32, kv_cache="dual", cfg_scale=0.0, num_iterations=2,
              beta=0.0, kl_reference="initial")
PROMPT = 40


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def one_adamw_step(model):
    """(parameter, gradient, optimizer-state) bytes after one AdamW step of a masked-LM loss."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(0, model.config.vocab_size, (2, 24))
    model(ids, labels=ids).loss.backward()
    optimizer.step()
    states = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]  # step counters are scalars
    return (tensor_bytes(model.parameters()), tensor_bytes(p.grad for p in trainable), tensor_bytes(states))


def saved_bytes(model, rows: int, checkpointing: bool) -> int:
    """Bytes saved for backward by the policy's loss forward (parameters excluded)."""
    return saved_activation_bytes(model, rows, PROMPT, RECIPE["max_completion_length"], checkpointing)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return tiny_config("tiny")


def test_shape_counts_every_parameter(tiny):
    model = LLaDAModelLM(tiny)
    assert ModelShape.from_config(tiny).params == sum(p.numel() for p in model.parameters())
    assert ModelShape.from_config(KNOWN_SHAPES["GSAI-ML/LLaDA-8B-Instruct"]).params == 8_015_581_184  # LLaDA-8B's index


def test_weights_gradients_optimizer_match_one_adamw_step(tiny):
    weights, grads, states = one_adamw_step(LLaDAModelLM(tiny))
    plan = plan_memory(tiny, RECIPE)
    assert (plan.bytes["weights"], plan.bytes["gradients"], plan.bytes["optimizer"]) == (weights, grads, states)
    assert plan.bytes["reference"] == 0
    assert plan_memory(tiny, {**RECIPE, "beta": 0.04}).bytes["reference"] == weights  # a whole frozen copy


def test_lora_bytes_match_peft(tiny):
    targets = ["q_proj", "v_proj", "ff_out"]  # blocks' ff_out only, not the LM head (LORA_TARGET_MODULES' regex)
    regex = rf".*blocks\.\d+\.({'|'.join(targets)})"
    model = apply_peft(LLaDAModelLM(tiny), LoraConfig(r=4, lora_alpha=8, target_modules=regex))
    weights, grads, states = one_adamw_step(model)
    plan = plan_memory(tiny, {**RECIPE, "beta": 0.04}, use_peft=True, lora_r=4, lora_targets=targets)
    assert (plan.bytes["weights"], plan.bytes["gradients"], plan.bytes["optimizer"]) == (weights, grads, states)
    assert plan.bytes["reference"] == 0  # the base with adapters off


@pytest.mark.parametrize("checkpointing", [False, True])
def test_activations_match_saved_tensors(tiny, checkpointing):
    measured = saved_bytes(LLaDAModelLM(tiny), RECIPE["per_device_train_batch_size"], checkpointing)
    plan = plan_memory(tiny, RECIPE, prompt_length=PROMPT)
    planned = plan.details["saved_checkpointed" if checkpointing else "saved_full"]
    assert abs(planned - measured) / measured < 0.15, (planned, measured)
    assert plan.details["activations_checkpointed"] < plan.details["activations_full"]


def test_lora_activations_match_saved_tensors(tiny):
    """Without dropout (CPU's dropout keeps a float mask where CUDA's keeps one byte, so the plan follows CUDA)."""
    model = apply_peft(LLaDAModelLM(tiny), LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGET_MODULES))
    measured = saved_bytes(model, 4, checkpointing=False)
    plan = plan_memory(tiny, RECIPE, use_peft=True, lora_r=8, prompt_length=PROMPT)
    assert abs(plan.details["saved_full"] - measured) / measured < 0.15, (plan.details["saved_full"], measured)
    dropout = plan_memory(tiny, RECIPE, use_peft=True, lora_r=8, lora_dropout=0.05, prompt_length=PROMPT)
    assert dropout.details["saved_full"] > plan.details["saved_full"]  # each adapter's own dropped-out input


@pytest.mark.parametrize("estimator, options, rows_per_answer", [
    ("unigrpo", {}, 1), ("d1", {}, 1), ("coupled", {}, 2), ("spg", {"spg_num_masks": 3}, 3),
    ("trajectory", {"trajectory_shrink": 8, "diffusion_steps": 32}, 4),  # ⌈min(64, 32) / 8⌉ chunks
    ("trajectory", {"trajectory_shrink": 8, "diffusion_steps": 32, "confidence_threshold": 0.9}, 8),  # ⌈64 / 8⌉
])
def test_rows_follow_the_estimator(tiny, estimator, options, rows_per_answer):
    """The policy forward holds each answer's rows: coupled's pair, SPG's K masks, trajectory's chunks (at most one
    per distinct commit step, which threshold decoding may make one per token)."""
    plan = plan_memory(tiny, {**RECIPE, "likelihood_estimator": estimator, **options})
    rows = RECIPE["per_device_train_batch_size"] * rows_per_answer
    assert f"micro-batch {rows} × " in plan.summary
    assert plan.details["saved_full"] == plan_memory(tiny, {**RECIPE, "per_device_train_batch_size": rows}).details[
        "saved_full"]


def test_ratio_free_algorithms_plan_no_old_pass():
    """wd1 and SPG form no importance ratio, so μ = 2 costs no θ_old pass: the same rollout phase as μ = 1."""
    shape = KNOWN_SHAPES["GSAI-ML/LLaDA-8B-Instruct"]  # a real vocabulary: a log-prob pass outweighs the sampler
    recipe = {**RECIPE, "block_length": 8, "kv_cache": "none"}  # with small blocks and no cache
    one_pass = plan_memory(shape, {**recipe, "num_iterations": 1}).bytes["rollout"]
    assert plan_memory(shape, {**recipe, "likelihood_estimator": "wd1"}).bytes["rollout"] == one_pass
    assert plan_memory(shape, {**recipe, "likelihood_estimator": "spg", "spg_num_masks": 1}).bytes["rollout"] == one_pass
    assert plan_memory(shape, recipe).bytes["rollout"] > one_pass  # UniGRPO's θ_old pass


def test_strategies_divide_state_by_ranks():
    shape = KNOWN_SHAPES["GSAI-ML/LLaDA-8B-Instruct"]
    bf16 = {**RECIPE, "bf16": True}
    P = ModelShape.from_config(shape).params
    one = plan_memory(shape, bf16, 1, "zero2").bytes
    eight = plan_memory(shape, bf16, 8, "zero2").bytes
    assert one["optimizer"] == 12 * P and eight["optimizer"] == -(-12 * P // 8)  # ZeRO's K = 12, sharded
    assert eight["gradients"] == -(-2 * P // 8) and eight["weights"] == one["weights"] == 2 * P  # whole bf16 weights
    for strategy in ("zero3", "fsdp2"):
        sharded = plan_memory(shape, bf16, 8, strategy).bytes
        total = sharded["weights"] + sharded["gradients"] + sharded["optimizer"]
        working = plan_memory(shape, bf16, 10**6, strategy).bytes["weights"]  # the unsharded working set, ≈ 0 shard
        assert abs(total - working - 16 * P / 8) < 10**6  # 16 bytes per parameter, 1/N of them per GPU
    ddp = plan_memory(shape, bf16, 8, "ddp").bytes  # bf16 checkpoint: torch AdamW moments in bf16, DDP buckets
    assert (ddp["weights"], ddp["gradients"], ddp["optimizer"]) == (2 * P, 4 * P, 4 * P)


def test_advice_when_it_does_not_fit():
    shape = KNOWN_SHAPES["GSAI-ML/LLaDA-8B-Instruct"]
    recipe = {**RECIPE, "bf16": True, "beta": 0.04, "per_device_train_batch_size": 12, "num_generations": 6}
    plan = plan_memory(shape, recipe, 8, "ddp", gpu_memory_bytes=80 * 10**9)
    assert plan.fits is False and plan.total > 0.9 * 80 * 10**9
    text = "\n".join(plan.advice)
    assert "activation_checkpointing: true" in text and "LoRA" in text and "zero2 over 8 rank(s)" in text
    assert "per_device_train_batch_size: 6 with gradient_accumulation_steps: 2" in text
    fitting = [line for line in plan.advice if line.endswith("(fits)")]
    assert fitting and all(float(line.split("peak ")[1].split(" GiB")[0]) < 0.9 * 80e9 / GIB for line in fitting)
    roomy = plan_memory(shape, recipe, 8, "zero2", gradient_checkpointing=True, gpu_memory_bytes=200 * 10**9)
    assert roomy.fits is True and roomy.advice == [] and "fits" in roomy.format()
    assert plan_memory(shape, recipe).fits is None


def test_launch_and_sizes():
    assert launch_from_accelerate_config("recipes/accelerate/deepspeed_zero2.yaml") == ("zero2", 8)
    assert launch_from_accelerate_config("recipes/accelerate/deepspeed_zero3.yaml") == ("zero3", 8)
    assert launch_from_accelerate_config("recipes/accelerate/fsdp.yaml") == ("fsdp2", 8)
    assert launch_from_accelerate_config("recipes/accelerate/ddp.yaml") == ("ddp", 8)
    assert parse_memory_size("80GB") == 80 * 10**9 and parse_memory_size("80GiB") == 80 * GIB
    with pytest.raises(ValueError, match="80 gigs"):
        parse_memory_size("80 gigs")
    assert model_config_for("GSAI-ML/LLaDA-8B-Instruct")["d_model"] == 4096
    assert model_config_for("tiny-arith-sft")["d_model"] == 128
    with pytest.raises(FileNotFoundError, match="not a known shape"):
        model_config_for("nobody/unknown-model")


def test_check_plan_command(capsys):
    argv = ["check", "--config", "recipes/llada-8b-gsm8k.yaml", "--skip-paths", "--plan", "--num_processes", "8",
            "--gpu_memory", "80GB"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "8.02 B parameters, full fine-tuning, ddp × 8 rank(s), bf16" in out and "does NOT fit" in out
    assert "zero2 over 8 rank(s)" in out
    assert main([*argv, "--accelerate_config", "recipes/accelerate/deepspeed_zero2.yaml"]) == 0
    out = capsys.readouterr().out
    assert "zero2 × 8 rank(s)" in out and " fits: " in out
    assert main(["check", "--config", "recipes/llada-8b-gsm8k-lora.yaml", "--skip-paths", "--plan",
                 "--gpu_memory", "80GB"]) == 0
    assert "LoRA r 128" in capsys.readouterr().out
    assert main([*argv[:-1], "lots"]) == 2
    assert "unigrpo check: error: --gpu_memory 'lots'" in capsys.readouterr().err
