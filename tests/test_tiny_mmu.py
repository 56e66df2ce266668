"""The image-understanding (mmu) CPU demo: the shapes questions data set, its reward, the recipes, the shipped start
model, ``unigrpo eval`` on mmu rows and a very short UniGRPO run."""

import json
from pathlib import Path

import pytest

from unigrpo.data.shapes import COLOURS, SHAPES, caption, split_triples
from unigrpo.data.shapes_qa import CORRECT_REWARD, QUESTIONS, boxed_word, make_shapes_qa_dataset

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "tiny-mmu.yaml"
SFT_RECIPE = ROOT / "recipes" / "tiny-mmu-sft.yaml"


@pytest.fixture(scope="module")
def test_rows():
    return make_shapes_qa_dataset("test", pictures=1)


def test_answers_are_the_rendered_pictures_attributes(test_rows):
    """Each question's answer is the row's attribute; the picture holds exactly the shape's and the background's
    colours, the background in the corner (the jittered shape never reaches it)."""
    assert len(test_rows) == 45 * 3
    for row in test_rows:
        assert row["task"] == "mmu" and row["prompt"] == QUESTIONS[row["question"]][0]
        assert row["answer"] == row[row["question"]] and row["answer"] in QUESTIONS[row["question"]][1]
        assert row["completion"] == f"\\boxed{{{row['answer']}}}"
        image = row["image"]
        colours = {rgb for _, rgb in image.getcolors()}
        assert colours == {COLOURS[row["colour"]], COLOURS[row["background"]]}
        assert image.getpixel((0, 0)) == COLOURS[row["background"]]
        assert row["shape"] in SHAPES


def test_splits_combinations_pictures_and_default_sizes():
    """train / rl / unseen hold disjoint combinations (shapes.py's caption splits); test shows rl's combinations in
    pictures RL never saw."""
    captions = {split: {caption(*t) for t in split_triples(split)} for split in ("train", "rl", "test")}
    combinations = {"train": "train", "rl": "rl", "test": "rl", "unseen": "test"}
    pictures = {}
    for split, expected in (("train", 30 * 3 * 10), ("rl", 45 * 3 * 12), ("test", 45 * 3 * 2), ("unseen", 15 * 3 * 4)):
        rows = make_shapes_qa_dataset(split)
        assert len(rows) == expected
        seen = {caption(c, s, b) for c, s, b in zip(rows["colour"], rows["shape"], rows["background"])}
        assert seen == captions[combinations[split]]
        assert {q: rows["question"].count(q) for q in QUESTIONS} == {q: expected // 3 for q in QUESTIONS}
        pictures[split] = {image.tobytes() for image in rows["image"]}
    assert not pictures["test"] & pictures["rl"]  # held-out pictures
    assert not captions["test"] & (captions["train"] | captions["rl"]) and not captions["train"] & captions["rl"]
    assert len(make_shapes_qa_dataset("train", limit=7)) == 7


def test_rows_are_deterministic_and_each_split_draws_its_own_pictures():
    first, again = make_shapes_qa_dataset("rl", limit=20), make_shapes_qa_dataset("rl", limit=20)
    assert first["answer"] == again["answer"]
    assert [im.tobytes() for im in first["image"]] == [im.tobytes() for im in again["image"]]
    other = make_shapes_qa_dataset("rl", seed=5, limit=20)
    assert [im.tobytes() for im in other["image"]] != [im.tobytes() for im in first["image"]]


def test_bad_split_or_picture_count_is_one_clear_error():
    with pytest.raises(ValueError, match="valid: \\['train', 'rl', 'test', 'unseen'\\]"):
        make_shapes_qa_dataset("validation")
    with pytest.raises(ValueError, match="pictures=0"):
        make_shapes_qa_dataset("test", pictures=0)


def test_boxed_word_compares_the_boxed_word_exactly():
    completions = ["\\boxed{red}", " \\boxed{ Red } ", "\\boxed{der}", "red", "\\boxed{re}d",
                   "\\boxed{blue}\\boxed{red}", "\\boxed{}"]
    assert boxed_word(completions=completions, answer=["red"] * 7) == [CORRECT_REWARD, CORRECT_REWARD, 0.0, 0.0,
                                                                        0.0, CORRECT_REWARD, 0.0]
    assert boxed_word.correct_threshold == CORRECT_REWARD and boxed_word.required_columns == ("answer",)


@pytest.mark.parametrize("recipe", [RECIPE, SFT_RECIPE])
def test_the_recipes_pass_unigrpo_check(recipe, capsys):
    from unigrpo.cli import main

    assert main(["check", "--config", str(recipe)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {recipe}")


def test_the_shipped_start_model_answers_in_the_format_with_a_word_of_the_right_kind(test_rows):
    from unigrpo.cli import parse_recipe
    from unigrpo.config import UniGRPOConfig
    from unigrpo.evaluation import evaluate_accuracy
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
    from unigrpo.models.image_tokenizer import load_image_tokenizer
    from unigrpo.rewarding import resolve_reward_funcs

    run_args, config, model_args = parse_recipe(UniGRPOConfig, ["--config", str(RECIPE)])
    path = resolve_model_path(model_args.model_name_or_path)
    model, tokenizer = load_model(path), load_tokenizer(path)
    funcs, names = resolve_reward_funcs(run_args.reward_funcs)
    result = evaluate_accuracy(model, tokenizer, test_rows, funcs, names,
                               config.sampler_config(temperature=config.eval_temperature),
                               resolve_mask_token_id(model, tokenizer), image_tokenizer=load_image_tokenizer(
                                   run_args.image_tokenizer), return_completions=True, batch_size=45)
    boxed = [c.startswith("\\boxed{") and c.endswith("}") for c in result["completions"]]
    assert sum(boxed) >= 0.9 * len(test_rows)  # the format, nothing after it
    kinds = [c[len("\\boxed{"):-1] in QUESTIONS[q][1] for c, q in zip(result["completions"], test_rows["question"])]
    assert sum(kinds) >= 0.6 * len(test_rows)  # a word that answers this kind of question (some misspelt: 73%)
    assert result["accuracy"] < 0.8  # well below the ceiling: room for RL


def test_eval_json_reports_accuracy_on_held_out_mmu_rows(capsys):
    from unigrpo.cli import main

    assert main(["eval", "--config", str(RECIPE), "--model", "tiny-mmu-sft", "--json", "--limit", "6"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    assert result["rewards/boxed_format/mean"] > 0


def test_a_very_short_rl_run_trains_and_evaluates(tmp_path, capsys):
    from unigrpo.cli import main

    out = tmp_path / "rl"
    assert main(["train", "--config", str(RECIPE), "--output_dir", str(out), "--max_steps", "2", "--eval_steps", "2",
                 "--num_generations", "4", "--per_device_train_batch_size", "8", "--train_limit", "4",
                 "--eval_limit", "6",
                 "--save_strategy", "no", "--load_best_model_at_end", "false", "--disable_tqdm", "true",
                 "--logging_steps", "1"]) == 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [e["step"] for e in history if "eval_accuracy" in e] == [0, 2]
    assert all(e["rewards/boxed_format/mean"] > 0 for e in history if "reward" in e)
    assert "held-out accuracy" in capsys.readouterr().out


def test_the_benchmark_reports_held_out_and_unseen_accuracy_per_seed(tmp_path):
    """benchmarks/tiny_mmu.py at test size: 2 steps, 6 held-out questions, the first 6 unseen ones."""
    import subprocess
    import sys

    plot = tmp_path / "mmu.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "tiny_mmu.py"), "--seeds", "0",
                           "--unseen_limit", "6", "--out", str(tmp_path / "runs"), "--plot", str(plot),
                           "--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--num_generations", "4",
                           "--per_device_train_batch_size", "8", "--train_limit", "4", "--eval_limit", "6",
                           "--logging_steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    seed = result["seeds"]["0"]
    assert result["benchmark"] == "tiny_mmu" and seed["steps"] == 2
    accuracies = (seed["before"], seed["after"], seed["best"], seed["unseen"], result["unseen_before"])
    assert all(0 <= v <= 1 and abs(v * 6 - round(v * 6)) < 1e-3 for v in accuracies)  # each scored on 6 questions
    assert seed["best"] == max(seed["before"], seed["after"])  # two evaluations: on start and at step 2
    assert result["gain_mean"] == round(seed["after"] - seed["before"], 4)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
