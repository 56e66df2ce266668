"""LoRA (``unigrpo.models.lora.apply_peft``): the model's own default targets for a config without any, from Python
as from the CLI, and the shipped tiny LoRA recipe end to end."""

import json
from pathlib import Path

import torch
from datasets import Dataset
from peft import LoraConfig
from safetensors.torch import load_file

from unigrpo import UniGRPOConfig, UniGRPOTrainer
from unigrpo.cli import main
from unigrpo.models import LORA_TARGET_MODULES, LLaDAModelLM, load_model
from unigrpo.models.lora import apply_peft

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith-lora.yaml"


def adapted_modules(model) -> set[str]:
    """``transformer.blocks.0.q_proj``, … for each module that has a LoRA adapter."""
    return {name[name.index("transformer."):name.index(".lora_A")] for name, _ in model.named_parameters()
            if ".lora_A" in name}


def test_a_lora_config_without_targets_gets_the_models_documented_targets(micro_model_dir):
    config = LoraConfig(r=8, lora_alpha=16)  # no target_modules: PEFT alone raises "Please specify target_modules"
    model = apply_peft(load_model(micro_model_dir), config)
    assert model.peft_config["default"].target_modules == LORA_TARGET_MODULES
    assert config.target_modules is None  # the caller's config is not changed
    modules = adapted_modules(model)
    layers = load_model(micro_model_dir).config.n_layers
    projections = ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]
    assert modules == {f"transformer.blocks.{i}.{p}" for i in range(layers) for p in projections}  # not the head


def test_explicit_targets_are_kept(micro_model_dir):
    model = apply_peft(load_model(micro_model_dir), LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert {m.rsplit(".", 1)[-1] for m in adapted_modules(model)} == {"q_proj"}
    assert type(model).__name__ == "PeftModel"  # TRL's CAUSAL_LM default maps to the plain wrapper


def test_trainer_takes_a_lora_config_without_target_modules(micro_model_dir, tmp_path):
    args = UniGRPOConfig(output_dir=str(tmp_path / "out"), num_generations=2, per_device_train_batch_size=4,
                         max_completion_length=4, block_length=4, diffusion_steps=4, max_steps=1,
                         save_strategy="no", report_to="none", disable_tqdm=True)
    trainer = UniGRPOTrainer(str(micro_model_dir), [lambda completions, **kw: [1.0] * len(completions)], args,
                             Dataset.from_list([{"prompt": "1+1="}] * 4), peft_config=LoraConfig(r=8, lora_alpha=16))
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    assert any("blocks.0.q_proj.lora_A" in name for name in trainable)


def test_tiny_arith_lora_recipe_trains_and_saves_a_loadable_adapter(tmp_path, capsys):
    out = tmp_path / "lora"
    # the recipe as shipped, shortened: 2 optimizer steps of 2 prompts × 8 answers, a 16-prompt held-out split
    assert main(["train", "--config", str(RECIPE), "--output_dir", str(out), "--max_steps", "2",
                 "--per_device_train_batch_size", "16", "--eval_limit", "16", "--eval_steps", "2",
                 "--save_steps", "2", "--logging_steps", "1", "--disable_tqdm", "true"]) == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"]) == (16, 32) and adapter["target_modules"] == LORA_TARGET_MODULES
    assert not (out / "model.safetensors").exists()  # only the adapter is saved
    tensors = load_file(out / "adapter_model.safetensors")
    assert tensors and all("blocks." in name for name in tensors)  # the LM head is not adapted
    merged = load_model(out)  # the base (tiny-arith-sft) with the adapter merged in
    assert isinstance(merged, LLaDAModelLM)
    x = torch.randint(10, 100, (1, 8))
    assert merged(x).logits.shape == (1, 8, merged.config.embedding_size)
    assert "held-out accuracy" in capsys.readouterr().out


def test_the_adapters_initial_weights_follow_the_seed_not_the_global_random_state(tmp_path):
    """LoRA's A matrices are random: seeded by ``args.seed``, so every process of a launch and every launch mode
    (1 process, DDP, FSDP2) starts from the same adapters, whatever drew random numbers before."""
    from unigrpo.data import make_arith_dataset

    def adapters(noise_draws: int) -> dict:
        torch.rand(noise_draws)  # other code consumed the global generator differently
        args = UniGRPOConfig(output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=2,
                             max_completion_length=6, block_length=6, diffusion_steps=6, max_steps=1, seed=3,
                             report_to="none")
        trainer = UniGRPOTrainer("tiny-arith-sft", ["math_correctness"], args, make_arith_dataset("train"),
                                 peft_config=LoraConfig(r=4, lora_alpha=8))
        return {k: v.detach().clone() for k, v in trainer.model.named_parameters() if "lora_A" in k}

    first, second = adapters(1), adapters(7)
    assert first and first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
