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
    settings = json.loads((tmp_path / "sft" / "unigrpo_sampler.json").read_text())["sampler"]  # generate's defaults
    assert (settings["max_completion_length"], settings["diffusion_steps"], settings["temperature"]) == (6, 6, 0.0)

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
    real_model = recipe.startswith(("llada-8b", "mmada-8b", "dream-7b", "llada-moe-7b"))  # hub weights, a GPU
    gpu_only = ["--bf16", "false"] if real_model else []  # transformers refuses bf16 on CPU
    run_args, config, model_args = parse_recipe(config_cls, ["--config", str(path), *gpu_only])
    funcs, _ = resolve_reward_funcs(run_args.reward_funcs)
    config.image_sampler_config()
    if real_model:
        from unigrpo.cli import peft_config_from

        peft = peft_config_from(model_args)
        assert (peft is not None) == recipe.endswith(("-lora.yaml", "mmu-geoqa.yaml", "t2i.yaml")), recipe
        if peft is not None:  # targets not named: the loaded model's lora_target_modules fill them in (apply_peft)
            named = model_args.lora_target_modules
            assert peft.target_modules == (None if named is None else set(named)) and peft.r == model_args.lora_r
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


# ---- help, rewards list and generate's options (#16 items 5, 6, 7, 11, 16) ----------------------------------------


def test_top_level_help_lists_each_command_on_one_line(capsys):
    from unigrpo.cli import COMMANDS

    assert main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in COMMANDS:
        (line,) = [line for line in lines if line.startswith(f"  {name} ")]
        assert len(line.split()) > 3, line  # the command, then what it does
    assert any(line.startswith("  train     UniGRPO on a recipe") for line in lines)


@pytest.mark.parametrize("command,own", [("train", "UniGRPO keys"), ("sft", "SFT keys")])
def test_train_and_sft_help_explain_recipes_then_group_every_key(command, own, capsys):
    import dataclasses

    from unigrpo.config import UniGRPOConfig
    from unigrpo.recipe_check import argument_classes
    from unigrpo.sft import MaskedSFTConfig

    assert main([command, "--config", "recipes/whatever.yaml", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: unigrpo {command} --config RECIPE [--key value ...]\n")
    headings = ["A recipe is a YAML file", f"\n{own}:", "\nsampling keys", "\nreward keys", "\nmodel and LoRA keys",
                "\ndata keys", "\nTrainer keys"]
    positions = [out.index(h) for h in headings]
    assert positions == sorted(positions)  # recipes and overrides first, then the groups in this order
    config_cls = UniGRPOConfig if command == "train" else MaskedSFTConfig
    keys = [line.split()[0] for line in out.splitlines() if line.startswith("  --")]
    expected = {f.name for cls in argument_classes(config_cls) for f in dataclasses.fields(cls) if f.init}
    assert sorted(keys) == sorted(f"--{name}" for name in expected)  # every key, once
    assert "  --kv_cache  (default dual)" in out
    assert "  --reward_funcs  (default [math_correctness, boxed_format])" in out
    sampling, rewards = out[positions[2]:positions[3]], out[positions[3]:positions[4]]
    assert "--max_completion_length" in sampling and "--accuracy_reward" in rewards and "--reward_funcs" in rewards


def test_rewards_list_describes_each_reward(capsys):
    import rewards

    assert main(["rewards", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == rewards.list_rewards()
    for line in lines:
        assert len(line.split(maxsplit=1)[1]) > 20 and "no description" not in line, line
    assert "math-verify" in next(line for line in lines if line.startswith("math_correctness "))


def test_generate_options_are_the_recipes_sampler_keys():
    """One source: generate's sampler options are SamplingArguments' fields (names, choices), with the README's
    --gen_length / --steps as aliases; an option not given stays unset (so the model folder's value applies)."""
    from rollouts import CACHES, RECIPE_KEYS
    from unigrpo.generate_cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["--model", "m", "--prompt", "p", "--gen_length", "8", "--steps", "4",
                              "--confidence_threshold", "none"])
    assert (args.max_completion_length, args.diffusion_steps, args.confidence_threshold) == (8, 4, None)
    assert not hasattr(args, "kv_cache") and not hasattr(args, "block_length")
    options = {a.dest: a for a in parser._actions if a.dest in RECIPE_KEYS.values()}
    assert sorted(options) == sorted(RECIPE_KEYS.values()) and list(options["kv_cache"].choices) == list(CACHES)
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--prompt", "p", "--kv_cache", "duel"])
    # a bool option reads true/false (argparse's type=bool would take "false" as True)
    assert parser.parse_args(["--model", "m", "--prompt", "p", "--early_finish", "false"]).early_finish is False
    assert parser.parse_args(["--model", "m", "--prompt", "p", "--early_finish", "True"]).early_finish is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--prompt", "p", "--early_finish", "maybe"])


def test_generate_takes_its_defaults_from_the_model_folder(tmp_path, capsys):
    """The shipped tiny model records the settings it was evaluated with (6-token canvas, one block, 6 steps);
    generate answers 12+34= right with them, and wrongly with the sampler's generic defaults (64 tokens)."""
    import shutil

    from unigrpo.generate_cli import sampler_options
    from unigrpo.models import resolve_model_path
    from unigrpo.sampler_settings import SETTINGS_FILE, read_sampler_settings

    shipped = resolve_model_path("tiny-arith-sft")
    recorded = read_sampler_settings(shipped)
    assert recorded["max_completion_length"] == recorded["block_length"] == recorded["diffusion_steps"] == 6
    assert main(["generate", "--model", "tiny-arith-sft", "--prompt", "12+34="]) == 0
    assert capsys.readouterr().out.strip() == "\\boxed{46}"

    bare = tmp_path / "bare"
    shutil.copytree(shipped, bare, ignore=shutil.ignore_patterns(SETTINGS_FILE))
    assert main(["generate", "--model", str(bare), "--prompt", "12+34="]) == 0
    assert capsys.readouterr().out.strip() != "\\boxed{46}"

    options = sampler_options({"max_completion_length": 12, "block_length": 12}, recorded)  # the command line wins
    assert (options["max_completion_length"], options["diffusion_steps"], options["kv_cache"]) == (12, 6, "dual")
    assert sampler_options({"max_completion_length": 8, "block_length": 4}, {})["diffusion_steps"] == 4


def test_generate_checks_prompt_length_before_loading_weights(monkeypatch, capsys):
    import unigrpo.models

    def no_load(*args, **kwargs):
        raise AssertionError("weights loaded before the prompt length was checked")

    monkeypatch.setattr(unigrpo.models, "load_model", no_load)
    assert main(["generate", "--model", "tiny-arith-sft", "--prompt", "1+" * 300]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unigrpo generate: error: --prompt row 0: the prompt is 600 tokens")
    assert "max_sequence_length 512" in err and "Traceback" not in err


def test_generate_names_a_mistyped_local_folder(tmp_path, monkeypatch, capsys):
    """`outputs/tiny-arth` looks like a hub id (org/name): the error is the clean 'no such model' line."""
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "--model", "outputs/tiny-arth", "--prompt", "1+2="]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no such model" in line and "'outputs/tiny-arth'" in line


# ---- #16 items 4-6: bad data, too-long prompts and mistyped models are one line each, never a traceback ----------


def one_error_line(capsys, command: str) -> str:
    """The single stderr line of a command that failed on bad input (no traceback, nothing else printed)."""
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"unigrpo {command}: error: "), line
    return line


def test_a_zero_byte_data_file_is_one_line_in_every_command(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    recipe = RECIPES / "tiny-arith.yaml"
    runs = {"train": ["train", "--dataset_name", str(empty)],
            "sft": ["sft", "--config", str(RECIPES / "tiny-arith-sft.yaml"), "--dataset_name", str(empty)],
            "eval": ["eval", "--model", "tiny-arith-sft", "--config", str(recipe), "--eval-file", str(empty)]}
    for command, argv in runs.items():
        assert main(argv) == 2
        line = one_error_line(capsys, command)
        assert f"dataset file '{empty}' is empty (0 bytes)" in line
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("dataset_name: arith", f"dataset_name: {empty}"))
    assert main(["check", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"{bad}: dataset_name: dataset file '{empty}' is empty (0 bytes); give one JSON object per line (.jsonl), "
        f"a JSON list of objects (.json), or a CSV / Parquet table with a prompt column")


def test_a_null_prompt_in_eval_names_the_line(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": null, "answer": "3"}\n')
    assert main(["eval", "--model", "tiny-arith-sft", "--config", str(RECIPES / "tiny-arith.yaml"),
                 "--eval-file", str(rows)]) == 2
    assert f"dataset file '{rows}': line 2: prompt is null" in one_error_line(capsys, "eval")


def test_eval_checks_prompt_length_before_loading_weights(tmp_path, monkeypatch, capsys):
    """A prompt longer than the model's context was cut and scored 0.000; now it is refused, as `train` does."""
    import unigrpo.models

    def no_load(*args, **kwargs):
        raise AssertionError("weights loaded before the prompt length was checked")

    monkeypatch.setattr(unigrpo.models, "load_model", no_load)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"prompt": "12+34=", "answer": "46"}) + "\n"
                    + json.dumps({"prompt": "1+" * 300, "answer": "0"}) + "\n")
    assert main(["eval", "--model", "tiny-arith-sft", "--config", str(RECIPES / "tiny-arith.yaml"),
                 "--eval-file", str(rows)]) == 2
    line = one_error_line(capsys, "eval")
    assert f"dataset '{rows}'" in line and "row 1: the prompt is 600 tokens + max_completion_length 6" in line
    assert "max_sequence_length 512" in line


def test_eval_names_a_mistyped_local_model_folder(tmp_path, monkeypatch, capsys):
    """`outputs/tiny-arth` looks like a hub id: the error says there is no such folder or hub id (offline here)."""
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "--model", "outputs/tiny-arth", "--config", str(RECIPES / "tiny-arith.yaml")]) == 2
    line = one_error_line(capsys, "eval")
    assert "no such model folder or hub id: 'outputs/tiny-arth' is not a folder here" in line
    assert "HF_HUB_OFFLINE=1" in line


def test_eval_reports_every_recipe_problem(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text((RECIPES / "tiny-arith.yaml").read_text() + "kv_cache: duel\nlora_rank: 4\n")
    assert main(["eval", "--model", "tiny-arith-sft", "--config", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "2 problems in the recipe" in err and "(did you mean 'lora_r'?)" in err and "kv_cache='duel'" in err


def test_train_reports_every_command_line_problem_at_once(capsys):
    assert main(["train", "--kv_cache", "duel", "--model_name_or_path", "/nope", "--num_generations", "7"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == "unigrpo train: error: 3 problems in the recipe and command line; nothing was loaded:"
    assert [line.split(":")[1] for line in lines[1:]] == [
        " --num_generations 7", " --kv_cache duel", " --model_name_or_path /nope"]


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    """A reward raising RuntimeError (the reward wrapper's error, JudgeError, …) or a file error is reported like a
    ValueError; UNIGRPO_TRACEBACK=1 re-raises it; a TypeError is a bug and keeps its traceback."""
    import unigrpo.cli as cli

    def failing(error):
        def handler(argv):
            raise error
        return handler

    reward_error = RuntimeError("reward 'mine' failed on sample 3: ZeroDivisionError('division by zero')")
    for error in (reward_error, PermissionError(13, "Permission denied", "/out")):
        monkeypatch.setitem(cli.HANDLERS, "train", failing(error))
        assert main(["train"]) == 2
        assert one_error_line(capsys, "train") == f"unigrpo train: error: {error}"
    monkeypatch.setitem(cli.HANDLERS, "train", failing(reward_error))
    monkeypatch.setenv("UNIGRPO_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="failed on sample 3"):
        main(["train"])
    monkeypatch.delenv("UNIGRPO_TRACEBACK")
    monkeypatch.setitem(cli.HANDLERS, "train", failing(TypeError("a bug")))
    with pytest.raises(TypeError):
        main(["train"])
