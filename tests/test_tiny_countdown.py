"""The Countdown CPU demo (issue #20 §4): the built-in ``tiny-countdown`` task, its shipped format-SFT start model
and ``recipes/tiny-countdown.yaml``."""

import json
from pathlib import Path

import pytest

from rewards.countdown import countdown, countdown_expression, evaluate_expression
from unigrpo.cli import main
from unigrpo.data import load_prompt_dataset
from unigrpo.data.countdown_tiny import expressions, make_tiny_countdown_dataset, value

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "tiny-countdown.yaml"


@pytest.fixture(scope="module")
def splits():
    return {split: make_tiny_countdown_dataset(split) for split in ("train", "test", "sft")}


def test_every_problem_is_solvable_with_its_numbers_in_the_order_shown(splits):
    for split in ("train", "test"):
        for row in splits[split]:
            a, b, c = row["numbers"]
            assert row["prompt"] == f"{a},{b},{c}:{row['target']}=" and row["target"] > 0
            solutions = [e for e in expressions(row["numbers"]) if value(e) == row["target"]]
            assert solutions, row
            assert countdown(completions=[f"\\boxed{{{solutions[0]}}}"], numbers=[row["numbers"]],
                             target=[row["target"]]) == [1.0]


def test_held_out_number_sets_never_appear_in_training(splits):
    def number_sets(split):
        return {tuple(sorted(row["numbers"])) for row in splits[split]}

    assert number_sets("train") == number_sets("sft")
    assert number_sets("test") and not number_sets("test") & number_sets("train")
    assert len(number_sets("test")) + len(number_sets("train")) == 165  # every set of three digits 1–9, once
    problems = [(tuple(r["numbers"]), r["target"]) for r in splits["train"]]
    assert len(problems) == len(set(problems))  # each problem once


def test_splits_are_deterministic_and_an_unknown_split_is_named(splits):
    assert make_tiny_countdown_dataset("test").to_list() == splits["test"].to_list()
    assert load_prompt_dataset("tiny-countdown", "test").to_list() == splits["test"].to_list()  # the built-in name
    with pytest.raises(ValueError, match="tiny-countdown split 'dev'; valid: \\['train', 'test', 'sft'\\]"):
        make_tiny_countdown_dataset("dev")


def test_sft_answers_are_the_format_only(splits):
    """Each number used once, well-formed (0.1 or 1.0, never 0), and correct only about as often as chance."""
    sft = splits["sft"]
    for row in sft:
        expression = countdown_expression(row["completion"])
        assert evaluate_expression(expression) is not None, row
        assert [int(ch) for ch in expression if ch.isdigit()] == row["numbers"], row  # in the order shown
    scores = countdown(completions=sft["completion"], numbers=sft["numbers"], target=sft["target"])
    assert set(scores) == {0.1, 1.0}
    pairs = len(expressions(sft[0]["numbers"]))  # operator pairs: 4 for + and ×
    chance = sum(len([e for e in expressions(r["numbers"]) if value(e) == r["target"]]) / pairs for r in sft) / len(sft)
    assert pairs == 4 and abs(scores.count(1.0) / len(scores) - chance) < 0.02 and 0.2 < chance < 0.35


def test_the_recipe_checks_and_its_reward_fits_the_data(capsys):
    from rewards import get_reward
    from unigrpo.cli import parse_recipe
    from unigrpo.config import UniGRPOConfig

    assert main(["check", "--config", str(RECIPE), "--config", str(ROOT / "recipes" / "tiny-countdown-sft.yaml")]) == 0
    run_args, config, model_args = parse_recipe(UniGRPOConfig, ["--config", str(RECIPE)])
    assert model_args.model_name_or_path == "tiny-countdown-sft" and run_args.dataset_name == "tiny-countdown"
    reward = get_reward(run_args.reward_funcs[0])
    assert reward is countdown and reward.correct_threshold == 1.0  # accuracy = success, not a well-formed answer
    columns = make_tiny_countdown_dataset("test").column_names
    assert set(reward.required_columns) <= set(columns)
    assert config.eval_on_start and config.metric_for_best_model == "eval_accuracy"


def test_the_shipped_start_model_answers_in_the_format(splits):
    from unigrpo.cli import parse_recipe
    from unigrpo.config import UniGRPOConfig
    from unigrpo.evaluation import evaluate_accuracy
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path

    path = resolve_model_path("tiny-countdown-sft")
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    _, config, _ = parse_recipe(UniGRPOConfig, ["--config", str(RECIPE)])
    model, tokenizer = load_model(path).eval(), load_tokenizer(path)
    test = splits["test"].select(range(64))
    result = evaluate_accuracy(model, tokenizer, test, [countdown], ["countdown"],
                               config.sampler_config(temperature=0.0), resolve_mask_token_id(model, tokenizer),
                               return_completions=True)
    uses_its_numbers = [(found := evaluate_expression(countdown_expression(c) or "")) is not None
                        and sorted(found[1]) == sorted(row["numbers"])
                        for c, row in zip(result["completions"], test)]
    assert sum(uses_its_numbers) >= 0.8 * len(test), result["completions"]
    assert result["accuracy"] < 0.4  # format only: about chance (27%), far from what the target tells (58–70%)


def test_eval_json_prints_the_held_out_accuracy(capsys):
    capsys.readouterr()
    assert main(["eval", "--config", str(RECIPE), "--model", "tiny-countdown-sft", "--limit", "16", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 16 and 0.0 <= result["accuracy"] <= 1.0 and "rewards/countdown/mean" in result


def test_a_short_rl_run_of_the_recipe_trains(tmp_path):
    out = tmp_path / "rl"
    assert main(["train", "--config", str(RECIPE), "--output_dir", str(out), "--max_steps", "2",
                 "--num_generations", "4", "--per_device_train_batch_size", "16", "--train_limit", "64",
                 "--eval_limit", "16", "--eval_steps", "2", "--logging_steps", "1", "--save_strategy", "no",
                 "--load_best_model_at_end", "false", "--disable_tqdm", "true"]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval_accuracy" in e] == [0, 2]
    rewards = [e["reward"] for e in history if "reward" in e]  # one sample, μ = 2 updates on it
    assert rewards and all(0.0 <= r <= 1.0 for r in rewards)


def test_the_benchmark_reports_before_and_after_on_problems_the_checkpoint_choice_never_saw(tmp_path):
    """benchmarks/tiny_countdown.py at test size: 2 steps, a 16-problem selection set, the other 530 report."""
    import subprocess
    import sys

    plot = tmp_path / "countdown.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tiny_countdown.py"), "--seeds", "0",
                           "--eval_limit", "16", "--out", str(tmp_path / "runs"), "--plot", str(plot),
                           "--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "16",
                           "--train_limit", "64", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    test = load_prompt_dataset("tiny-countdown", "test")
    assert result["benchmark"] == "tiny_countdown" and result["steps"] == [2]
    assert (result["n_selection"], result["n_report"]) == (16, len(test) - 16)
    report = [json.loads(line) for line in (tmp_path / "runs" / "report.jsonl").read_text().splitlines()]
    assert [r["prompt"] for r in report] == test["prompt"][16:]  # exactly the problems selection never used
    assert 0.1 < result["before"] < 0.5  # the format-only start succeeds about as often as chance (27%)
    assert 0.0 <= result["after"][0] <= 1.0
    assert result["gain_mean"] == round(result["after"][0] - result["before"], 4)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
