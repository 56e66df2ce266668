"""The `unigrpo` command: init-tiny, generate, sft, train and eval end to end on tiny models, and its errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unigrpo.cli import main

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def test_init_tiny_then_generate(tmp_path, capsys):
    assert main(["init-tiny", "--output", str(tmp_path / "m"), "--preset", "micro"]) == 0
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "12+34=", "--prompt", "1-2=",
                 "--gen_length", "8", "--block_length", "4", "--steps", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "12+34=", "--gen_length", "8",
                 "--block_length", "4", "--steps", "8", "--kv_cache", "dual", "--confidence_threshold", "0.9"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_bad_inputs_name_the_value(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nowhere"), "--prompt", "x"]) == 2
    assert "nowhere" in capsys.readouterr().err
    main(["init-tiny", "--output", str(tmp_path / "m"), "--preset", "micro"])
    assert main(["generate", "--model", str(tmp_path / "m"), "--prompt", "x", "--gen_length", "10",
                 "--block_length", "4"]) == 2
    assert "10" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


SFT_RECIPE = """
model_name_or_path: {model}
dataset_name: arith
train_limit: 64
eval_limit: 16
reward_funcs: [math_correctness, boxed_format]
output_dir: {out}
max_steps: 3
per_device_train_batch_size: 16
per_device_eval_batch_size: 16
learning_rate: 1.0e-3
sft_noise: count
max_completion_length: 6
block_length: 6
diffusion_steps: 6
logging_steps: 1
disable_tqdm: true
"""

RL_RECIPE = """
model_name_or_path: {model}
dataset_name: arith
train_limit: 64
eval_limit: 16
reward_funcs: [math_correctness, boxed_format]
output_dir: {out}
num_generations: 4
per_device_train_batch_size: 16
per_device_eval_batch_size: 16
num_iterations: 2
max_steps: 2
max_completion_length: 6
block_length: 6
diffusion_steps: 3
eval_strategy: steps
eval_steps: 2
eval_on_start: true
logging_steps: 1
disable_tqdm: true
"""


def test_sft_train_eval_pipeline(tmp_path, micro_model_dir, capsys):
    sft_recipe = tmp_path / "sft.yaml"
    sft_recipe.write_text(SFT_RECIPE.format(model=micro_model_dir, out=tmp_path / "sft"))
    assert main(["sft", "--config", str(sft_recipe)]) == 0
    assert (tmp_path / "sft" / "model.safetensors").is_file()

    rl_recipe = tmp_path / "rl.yaml"
    rl_recipe.write_text(RL_RECIPE.format(model=tmp_path / "sft", out=tmp_path / "rl"))
    assert main(["train", "--config", str(rl_recipe), "--seed", "3"]) == 0
    out = tmp_path / "rl"
    for name in ("model.safetensors", "tokenizer.json", "trainer_state.json", "training_curves.png"):
        assert (out / name).is_file(), name
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert any("eval_accuracy" in e for e in history) and any("reward" in e for e in history)

    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text("\n".join(json.dumps({"prompt": f"0{i}+00=", "answer": str(i)}) for i in range(5)))
    capsys.readouterr()
    assert main(["eval", "--model", str(out), "--config", str(rl_recipe), "--eval-file", str(eval_file),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 5 and 0.0 <= result["accuracy"] <= 1.0


def test_console_script_help_runs():
    done = subprocess.run([sys.executable, "-m", "unigrpo.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "train" in done.stdout


def test_lora_run_saves_an_adapter_that_eval_loads(tmp_path, micro_model_dir, capsys):
    recipe = tmp_path / "rl.yaml"
    recipe.write_text(RL_RECIPE.format(model=micro_model_dir, out=tmp_path / "lora"))
    assert main(["train", "--config", str(recipe), "--use_peft", "true", "--lora_r", "4", "--eval_on_start",
                 "false", "--eval_strategy", "no"]) == 0
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert not (tmp_path / "lora" / "model.safetensors").exists()  # only the adapter is saved
    capsys.readouterr()
    assert main(["eval", "--model", str(tmp_path / "lora"), "--config", str(recipe), "--limit", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 4


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_recipe_parses_and_validates(recipe):
    from unigrpo.cli import parse_recipe
    from unigrpo.config import UniGRPOConfig
    from unigrpo.models import resolve_model_path
    from unigrpo.rewarding import resolve_reward_funcs
    from unigrpo.sft import MaskedSFTConfig

    path = RECIPES / recipe
    config_cls = MaskedSFTConfig if "sft" in recipe else UniGRPOConfig
    real_model = recipe.startswith(("llada-8b", "mmada-8b"))  # weights and data: the hub / a GPU machine
    gpu_only = ["--bf16", "false"] if real_model else []  # transformers refuses bf16 on CPU
    run_args, config, model_args = parse_recipe(config_cls, ["--config", str(path), *gpu_only])
    funcs, _ = resolve_reward_funcs(run_args.reward_funcs)
    config.image_sampler_config()
    if real_model:
        from unigrpo.cli import peft_config_from

        peft = peft_config_from(model_args)
        assert (peft is not None) == recipe.endswith(("-lora.yaml", "mmu-geoqa.yaml", "t2i.yaml")), recipe
        if peft is not None:
            assert "q_proj" in peft.target_modules and "ff_out" in peft.target_modules
        assert len(config.reward_weights or funcs) == len(funcs)
        assert bool(run_args.image_tokenizer) == ("mmu" in recipe or "t2i" in recipe)
    elif not model_args.model_name_or_path.startswith("random-"):
        assert resolve_model_path(model_args.model_name_or_path).is_dir()


def test_summary_of_a_t2i_run_reports_the_held_out_reward_and_the_image_grid(tmp_path, capsys):
    """A t2i run's closing lines give the reward (CLIP) before → after on held-out captions and name image_grid.png,
    not an "accuracy"; a text run keeps its held-out accuracy."""
    from types import SimpleNamespace

    from datasets import Dataset

    from unigrpo.cli import summarise

    history = [{"eval_accuracy": 1.0, "eval_reward": 0.21, "step": 0}, {"reward": 0.2, "step": 10},
               {"eval_accuracy": 1.0, "eval_reward": 0.34, "step": 50}, {"reward": 0.3, "step": 60},
               {"eval_accuracy": 1.0, "eval_reward": 0.31, "step": 100}]
    (tmp_path / "image_grid.png").write_bytes(b"")

    def fake_trainer(tasks):
        rows = [{"prompt": f"caption {i}", "task": task} for i, task in enumerate(tasks)]
        return SimpleNamespace(state=SimpleNamespace(log_history=history, global_step=100),
                               args=SimpleNamespace(output_dir=str(tmp_path)), reward_names=["shapes_clip_score"],
                               eval_dataset=Dataset.from_list(rows))

    summarise(fake_trainer(["t2i", "t2i"]), 0.0, "UniGRPO")
    out = capsys.readouterr().out
    assert "  held-out reward (shapes_clip_score): 0.210 → 0.310 (best 0.340)" in out
    assert f"  image_grid.png: held-out captions before / after training, in {tmp_path}" in out
    assert "accuracy" not in out
    summarise(fake_trainer(["t2t", "t2i"]), 0.0, "UniGRPO")
    assert "  held-out accuracy: 1.000 → 1.000 (best 1.000)" in capsys.readouterr().out
