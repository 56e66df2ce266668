"""Recipe validation (issue #8): `unigrpo check`, and `train`/`sft` refusing a bad recipe before loading a model."""

import json
from pathlib import Path

import pytest

from unigrpo.cli import main
from unigrpo.config import UniGRPOConfig
from unigrpo.recipe_check import check_recipe, overrides_from_argv
from unigrpo.sft import MaskedSFTConfig

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
GOOD = """model_name_or_path: tiny-arith-sft
dataset_name: arith
reward_funcs: [math_correctness, boxed_format]
num_generations: 8
per_device_train_batch_size: 16
learning_rate: 1e-4
max_completion_length: 6
block_length: 6
diffusion_steps: 6
"""


def recipe(tmp_path, text: str, name="r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(tmp_path, text: str, **kwargs) -> list[str]:
    path = recipe(tmp_path, text)
    found = check_recipe(path, UniGRPOConfig, **kwargs)
    assert all(line.startswith(f"{path}: ") for line in found)  # every line names the file
    return [line[len(f"{path}: "):] for line in found]


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_every_shipped_recipe_passes(name, capsys):
    real_model = name.startswith(("llada-8b", "mmada-8b", "dream-7b", "llada-moe-7b"))  # weights, data: the hub
    argv = ["check", "--config", str(RECIPES / name), *(["--skip-paths"] if real_model else [])]
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip() == f"ok: {RECIPES / name} ({'sft' if 'sft' in name else 'train'})"


@pytest.mark.parametrize("name,architecture", [("dream-7b-gsm8k-lora.yaml", "dream"),
                                               ("llada-moe-7b-gsm8k-lora.yaml", "llada-moe")])
def test_architecture_recipes_name_their_class_lora_targets(name, architecture):
    """The recipe's explicit lora_target_modules adapt exactly the modules of the class's own targets (on a micro model
    shaped like the 7B one: LLaDA-MoE without shared expert or dense layer), and never the LLaDA names."""
    import yaml
    from peft import LoraConfig, get_peft_model

    from unigrpo.models import tiny_config
    from unigrpo.models.tiny import ARCHITECTURES

    model_class = ARCHITECTURES[architecture][1]

    def adapted(targets):
        model = get_peft_model(model_class(tiny_config("micro", architecture=architecture)),
                               LoraConfig(r=2, target_modules=targets))
        return {n for n, m in model.named_modules() if hasattr(m, "lora_A") and not n.endswith(("lora_A", "lora_B"))}

    listed = yaml.safe_load((RECIPES / name).read_text())["lora_target_modules"]
    assert adapted(listed) == adapted(model_class.lora_target_modules)
    assert not any(n.endswith((".experts", ".gate", "lm_head")) or ".experts." in n for n in adapted(listed))


def test_real_model_recipe_names_each_missing_path(capsys):
    assert main(["check", "--config", str(RECIPES / "mmada-8b-t2i.yaml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    reward_lines, lines = lines[:2], lines[2:]  # the weights that reward_kwargs names (#16 item 15)
    assert [line.split(": ")[1:3] for line in reward_lines] == [["reward_kwargs", "clip_score"],
                                                                ["reward_kwargs", "image_reward"]]
    assert "/ckpt/open_clip_vit_l14.safetensors" in reward_lines[0] and "ImageReward.pt" in reward_lines[1]
    assert [line.split(": ")[1] for line in lines] == ["model_name_or_path", "image_tokenizer", "dataset_name"]
    assert "Gen-Verse/MMaDA-8B-MixCoT" in lines[0] and "showlab/magvitv2" in lines[1]
    assert "/data/t2i_prompts.jsonl" in lines[2]


def test_a_good_recipe_has_no_problems_and_yaml_strings_are_read_as_argparse_would(tmp_path):
    assert problems(tmp_path, GOOD) == []  # learning_rate: 1e-4 is a YAML string; argparse reads it as a float


def test_unknown_keys_suggest_the_nearest_name(tmp_path):
    found = problems(tmp_path, GOOD + "learning_rat: 1e-4\nnum_generation: 4\nfrobnicate: 1\n")
    assert found == ["unknown key 'learning_rat' (did you mean 'learning_rate'?)",
                     "unknown key 'num_generation' (did you mean 'num_generations'?)",
                     "unknown key 'frobnicate'"]


@pytest.mark.parametrize("line,expected", [
    ("num_generations: eight", "num_generations='eight' is not an integer"),
    ("num_generations: 2.5", "num_generations=2.5 is not an integer"),
    ("beta: high", "beta='high' is not a number"),
    ("log_completions: maybe", "log_completions='maybe' is not true/false"),
    ("reward_weights: [1.0, heavy]", "reward_weights=[1.0, 'heavy'] is not a list or null"),
    ("confidence_threshold: high", "confidence_threshold='high' is not a number or null"),
])
def test_wrong_types_name_the_key_and_value(tmp_path, line, expected):
    assert problems(tmp_path, GOOD + line + "\n") == [expected]


def test_all_type_problems_are_reported_at_once(tmp_path):
    assert len(problems(tmp_path, GOOD + "num_generations: eight\nbeta: high\nlearnin_rate: 1\n")) == 3


@pytest.mark.parametrize("line,expected", [
    ("per_device_train_batch_size: 12", "per_device_train_batch_size=12 (completions) is not divisible by "
                                        "num_generations=8"),
    ("loss_type: bnpo2", "loss_type='bnpo2' is not valid"),
    ("block_length: 4", "max_completion_length=6 is not divisible by block_length=4"),  # the recipe's key names
    ("kv_cache: full", "kv_cache='full' is not valid"),
])
def test_impossible_combinations_are_one_line(tmp_path, line, expected):
    (found,) = problems(tmp_path, GOOD + line + "\n")
    assert expected in found


def test_rewards_models_and_outputs_are_checked(tmp_path):
    (tmp_path / "a_file").write_text("x")
    text = GOOD.replace("[math_correctness, boxed_format]", "[math_corectness, nopkg.mod:fn]").replace(
        "tiny-arith-sft", str(tmp_path / "no-model")) + f"output_dir: {tmp_path / 'a_file'}\n"
    found = problems(tmp_path, text)
    assert found[0].startswith("reward_funcs: unknown reward 'math_corectness'")
    assert found[0].endswith("(did you mean 'math_correctness'?)")
    assert found[1] == "reward_funcs: reward 'nopkg.mod:fn' cannot be imported: No module named 'nopkg'"
    assert found[2].startswith("model_name_or_path: model path") and "no-model" in found[2]
    assert found[3] == f"output_dir: '{tmp_path / 'a_file'}' is a file, not a folder"


def test_dataset_files_and_the_columns_rewards_need(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps({"question": "1+1="}) for _ in range(3)))
    text = GOOD.replace("dataset_name: arith", f"dataset_name: {rows}") + "dataset_test_split: null\n"
    (found,) = problems(tmp_path, text)
    assert found.startswith("dataset_name: dataset") and "no column(s) ['prompt', 'answer']" in found
    rows.write_text("\n".join(json.dumps({"prompt": "1+1=", "answer": "2"}) for _ in range(3)))
    assert problems(tmp_path, text) == []
    text = text.replace("[math_correctness, boxed_format]", "[boxed_format]")
    rows.write_text("\n".join(json.dumps({"prompt": "1+1=", "task": "t2v"}) for _ in range(3)))
    (found,) = problems(tmp_path, text)
    assert "task(s) ['t2v']" in found
    (found,) = problems(tmp_path, text.replace(str(rows), str(tmp_path / "missing.jsonl")))
    assert "missing.jsonl" in found
    assert problems(tmp_path, text.replace(str(rows), str(tmp_path / "missing.jsonl")), check_paths=False) == []


@pytest.mark.parametrize("text,expected", [
    ("[1, 2]\n", "a recipe is a mapping of keys to values, got list"),
    ("a: [1\n", "not valid YAML"),
])
def test_unreadable_recipes(tmp_path, text, expected):
    (found,) = problems(tmp_path, text)
    assert expected in found
    assert check_recipe(tmp_path / "nowhere.yaml", UniGRPOConfig)[0].startswith(
        f"{tmp_path / 'nowhere.yaml'}: cannot read the recipe")


def test_train_refuses_a_bad_recipe_before_loading_any_model(tmp_path, capsys, monkeypatch):
    from unigrpo.models import LLaDAModelLM

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(LLaDAModelLM, "from_pretrained", classmethod(no_loading))
    path = recipe(tmp_path, GOOD + "learning_rat: 1\nbeta: high\n")
    assert main(["train", "--config", str(path), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'learning_rat' (did you mean 'learning_rate'?)" in err and "beta='high'" in err
    # overrides are checked too, and the SFT command checks against its own config
    sft = recipe(tmp_path, "model_name_or_path: random-tiny\nsft_noise: count\n", "s.yaml")
    assert check_recipe(sft, MaskedSFTConfig) == []
    assert check_recipe(sft, UniGRPOConfig) == [f"{sft}: unknown key 'sft_noise'"]
    assert main(["sft", "--config", str(sft), "--sft_noise", "gaussian", "--output_dir", str(tmp_path / "out")]) == 2
    assert "gaussian" in capsys.readouterr().err


def test_command_line_overrides_are_parsed_like_trl():
    path, values = overrides_from_argv(["--config", "r.yaml", "--seed", "3", "--reward_funcs", "a", "b",
                                        "--use-peft", "--output_dir=/tmp/a-b"])
    assert path == "r.yaml"
    assert values == {"seed": "3", "reward_funcs": ["a", "b"], "use_peft": "true", "output_dir": "/tmp/a-b"}


def test_reward_kwargs_are_checked_before_any_model_loads(tmp_path):
    """#16 item 15: an unknown argument (with the closest one), a key that is not a reward of the recipe and a
    missing weights file are each one line; --skip-paths leaves the file to the training machine."""
    text = (GOOD.replace("boxed_format]", "clip_score]")
            + "reward_kwargs:\n  clip_score: {weight_path: /x.pt}\n  clip: {}\n")
    lines = problems(tmp_path, text)
    assert lines[0].startswith("reward_kwargs: clip_score: unknown argument 'weight_path' of make_clip_score "
                               "(did you mean 'weights_path'?")
    assert lines[1] == ("reward_kwargs: clip: not one of reward_funcs ['math_correctness', 'clip_score'] "
                        "(did you mean 'clip_score'?)")
    missing = str(tmp_path / "nope.safetensors")
    text = text.replace("weight_path: /x.pt", f"weights_path: {missing}").replace("  clip: {}\n", "")
    assert problems(tmp_path, text) == [
        f"reward_kwargs: clip_score: make_clip_score: weights_path={missing!r} is not a file"]
    assert problems(tmp_path, text, check_paths=False) == []


def test_every_problem_at_once_each_attributed_to_the_recipe_or_the_command_line(tmp_path):
    """#16 item 6: a mistyped key no longer hides the rest, and each command-line mistake names its flag."""
    path = recipe(tmp_path, GOOD + "learning_rat: 1e-4\n")
    found = check_recipe(path, UniGRPOConfig, {"kv_cache": "duel", "model_name_or_path": "/nope",
                                               "num_generations": "7"})
    assert found[0] == f"{path}: unknown key 'learning_rat' (did you mean 'learning_rate'?)"
    assert found[1].startswith("command line: --num_generations 7: per_device_train_batch_size=16 (completions) "
                               "is not divisible by num_generations=7")
    assert found[2] == ("command line: --kv_cache duel: kv_cache='duel' is not valid; choose one of "
                        "['none', 'prefix', 'dual']")
    assert found[3].startswith("command line: --model_name_or_path /nope: model path '/nope' does not exist")
    assert len(found) == 4


def test_a_problem_that_follows_from_a_rejected_value_is_not_reported(tmp_path):
    # num_generations falls back to its default (8) for the other checks: 12 % 8 must not be reported
    assert problems(tmp_path, GOOD + "num_generations: eight\nper_device_train_batch_size: 12\n") == [
        "num_generations='eight' is not an integer"]
    # block_length rejected: max_completion_length 6 against the default block_length 32 is not a second problem
    assert problems(tmp_path, GOOD + "block_length: 4\nbeta: -1\n") == [
        "beta=-1.0 must be ≥ 0", "max_completion_length=6 is not divisible by block_length=4"]


def test_the_command_line_alone_is_checked_too():
    from unigrpo.recipe_check import RecipeError, check_command_line

    with pytest.raises(RecipeError) as error:
        check_command_line(["--kv_cache", "duel", "--lora_rank", "4", "--model_name_or_path", "/nope"], UniGRPOConfig)
    assert error.value.problems[0] == "command line: --lora_rank 4: unknown key 'lora_rank' (did you mean 'lora_r'?)"
    flags = [line.split(":")[1] for line in error.value.problems[1:]]
    assert flags == [" --kv_cache duel", " --model_name_or_path /nope"]
    check_command_line(["--kv_cache", "duel", "--help"], UniGRPOConfig)  # --help: argparse prints the help


def test_a_yaml_syntax_error_keeps_the_line_and_column(tmp_path):
    (found,) = problems(tmp_path, "beta: 0.1\nreward_funcs: [a, b\nseed: 3\n")
    assert found.startswith("not valid YAML at line 3, column 5: expected ',' or ']'")
    assert found.endswith("(while parsing a flow sequence at line 2, column 15)")
