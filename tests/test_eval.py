"""`unigrpo eval`: pass@k, what counts as correct, several samples per prompt, several models, JSON + Markdown."""

import itertools
import json
import math
import shutil

import pytest
import torch

from unigrpo.cli import main
from unigrpo.eval_report import markdown_table
from unigrpo.evaluation import EvalSamples, evaluate_accuracy, is_correct, pass_at_k, summarise_samples


@pytest.mark.parametrize("n, c", [(4, 0), (4, 1), (4, 3), (5, 2), (6, 6)])
def test_pass_at_k_is_the_chance_that_k_of_the_n_samples_include_a_correct_one(n, c):
    samples = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(samples, k))
        brute = sum(any(s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute)
    assert pass_at_k(n, c, 1) == pytest.approx(c / n)
    with pytest.raises(ValueError, match="1 ≤ k"):
        pass_at_k(n, c, n + 1)


def test_correct_means_reaching_the_rewards_threshold():
    scores = torch.tensor([0.0, 0.1, 0.625, 1.0, 2.0, math.nan])

    def plain(**kwargs):
        return []

    def solved_only(**kwargs):
        return []

    solved_only.correct_threshold = 1.0
    assert is_correct(scores, plain).tolist() == [False, True, True, True, True, False]
    assert is_correct(scores, solved_only).tolist() == [False, False, False, True, True, False]


@pytest.fixture(scope="module")
def tiny():
    from unigrpo.data import load_prompt_dataset
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id
    from unigrpo.rewarding import resolve_reward_funcs
    from rollouts import SamplerConfig

    model, tokenizer = load_model("tiny-arith-sft"), load_tokenizer("tiny-arith-sft")
    funcs, names = resolve_reward_funcs(["math_correctness", "boxed_format"])
    data = load_prompt_dataset("arith", "test", limit=24)
    sampler = lambda t: SamplerConfig(gen_length=6, block_length=6, steps=6, temperature=t)  # noqa: E731
    return model, tokenizer, funcs, names, data, sampler, resolve_mask_token_id(model, tokenizer)


def test_several_samples_per_prompt(tiny):
    model, tokenizer, funcs, names, data, sampler, mask_id = tiny
    out = evaluate_accuracy(model, tokenizer, data, funcs, names, sampler(1.0), mask_id, num_samples=4,
                            pass_k=(1, 2, 4), return_completions=True, seed=3)
    assert out["n"] == 24 and out["samples_per_prompt"] == 4
    assert len(out["completions"]) == 24 and all(len(c) == 4 for c in out["completions"])
    per_row = [sum(flags) for flags in out["correct"]]
    assert out["accuracy"] == pytest.approx(sum(per_row) / 96)
    assert out["pass@1"] == pytest.approx(out["accuracy"])
    assert out["pass@4"] == pytest.approx(sum(c > 0 for c in per_row) / 24)
    assert out["pass@1"] <= out["pass@2"] <= out["pass@4"]
    assert 0 < out["pass@1"] < out["pass@4"]  # the SFT model is right sometimes, not always: k helps
    # answers keep the dataset's row order: each row's samples are scored against its own reference
    for row, answers, flags in zip(data, out["completions"], out["correct"]):
        assert all(f == ("\\boxed{" + row["answer"] + "}" in a) for a, f in zip(answers, flags))
    greedy = evaluate_accuracy(model, tokenizer, data, funcs, names, sampler(0.0), mask_id, num_samples=3,
                               pass_k=(1, 3))
    assert greedy["pass@3"] == pytest.approx(greedy["pass@1"])  # three identical greedy answers
    with pytest.raises(ValueError, match="1 ≤ k"):
        evaluate_accuracy(model, tokenizer, data, funcs, names, sampler(1.0), mask_id, num_samples=2, pass_k=(4,))


def test_eval_command_compares_models_and_writes_json_and_markdown(tmp_path, capsys):
    from unigrpo.models.loading import ASSETS

    copy = tmp_path / "copy-of-sft"
    shutil.copytree(ASSETS / "tiny-arith-sft", copy)
    out = tmp_path / "report"
    argv = ["eval", "--config", "recipes/tiny-arith.yaml", "--model", "tiny-arith-sft", "--model", str(copy),
            "--limit", "12", "--samples", "3", "--k", "1,3", "--output", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "| model | dataset | n | samples | temperature | accuracy | pass@1 | pass@3 | mean length | reward |" in table
    assert "| tiny-arith-sft | arith | 12 | 3 | 1 |" in table and "| copy-of-sft | arith | 12 | 3 | 1 |" in table
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["samples"] == 3 and report["settings"]["temperature"] == 1.0  # recipe's rollout T
    assert report["settings"]["kv_cache"] == "dual" and report["settings"]["gen_length"] == 6
    first, second = report["results"]
    assert first["pass@1"] == pytest.approx(second["pass@1"])  # same weights, same seed: same answers
    assert (out / "eval.md").read_text().startswith("| model |")


def test_eval_command_refuses_bad_k_before_loading(capsys):
    assert main(["eval", "--config", "recipes/tiny-arith.yaml", "--model", "no/such-model", "--samples", "2",
                 "--k", "1,4"]) == 2
    assert "--k [1, 4] must lie in 1..--samples (2)" in capsys.readouterr().err


def test_image_answers_give_no_nan_mean_length():
    """t2i answers have no length before an EOS: ``completions/mean_length`` counts the text answers only and is
    absent (never NaN) when every answer is an image; the table then shows a dash."""
    scores = torch.tensor([[0.3], [0.5], [0.2], [0.4]])
    images_only = EvalSamples(scores, scores[:, 0] > 0.25, torch.zeros(0), 2)
    results = summarise_samples(images_only, ["clip"], pass_k=(1, 2))
    assert "completions/mean_length" not in results
    assert all(not math.isnan(v) for v in results.values()) and results["reward"] == pytest.approx(0.35)
    mixed = EvalSamples(scores, scores[:, 0] > 0.25, torch.tensor([3.0, 5.0]), 1)  # 2 text + 2 image answers
    assert summarise_samples(mixed, ["clip"])["completions/mean_length"] == 4.0
    table = markdown_table([{"model": "m", "n": 2, "temperature": 1.0, **results}])
    assert table.splitlines()[-1] == "| m |  | 2 | 2 | 1 | 0.750 | 0.750 | 1.000 | – | 0.350 |"


def test_the_table_shows_the_temperature_beside_pass_at_k(tiny):
    model, tokenizer, funcs, names, data, sampler, mask_id = tiny
    out = evaluate_accuracy(model, tokenizer, data.select(range(4)), funcs, names, sampler(0.7), mask_id,
                            num_samples=2, pass_k=(2,))
    assert out["temperature"] == 0.7
    head, _, row = markdown_table([{"model": "tiny", **out}]).splitlines()
    assert head.startswith("| model | dataset | n | samples | temperature | accuracy | pass@2 |")
    assert row.startswith("| tiny |  | 4 | 2 | 0.7 |")
