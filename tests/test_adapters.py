"""Dataset adapters on small local files written in each public data set's own schema (no hub access)."""

import json

import pytest
from PIL import Image

from unigrpo.data import THINKING_PROMPT, load_prompt_dataset
from unigrpo.data.adapters import ADAPTERS
from unigrpo.data.sudoku import all_grids, is_solved, make_sudoku_rows, solutions


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def user_text(prompt):
    assert isinstance(prompt, list) and prompt[0]["role"] == "user" and len(prompt) == 1
    return prompt[0]["content"]


def test_gsm8k_rows_get_the_number_after_hashes(tmp_path):
    rows = [{"question": "Tom has 3 apples and buys 1,200 more. How many?",
             "answer": "He has 3 + 1200 = <<3+1200=1203>>1203.\n#### 1,203"},
            {"question": "What is 2-5?", "answer": "2-5=-3\n#### -3"}]
    data = load_prompt_dataset(write_jsonl(tmp_path / "gsm8k.jsonl", rows), adapter="gsm8k")
    assert data.column_names == ["prompt", "answer"] or set(data.column_names) == {"prompt", "answer"}
    assert data["answer"] == ["1203", "-3"]
    text = user_text(data[0]["prompt"])
    assert text.startswith("Tom has 3 apples") and "\\boxed{}" in text and THINKING_PROMPT not in text


def test_thinking_prompt_and_plain_format(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "1+1?", "answer": "#### 2"}])
    chat = load_prompt_dataset(path, adapter="gsm8k", thinking=True)
    assert user_text(chat[0]["prompt"]).startswith(THINKING_PROMPT) and "<think>" in THINKING_PROMPT
    plain = load_prompt_dataset(path, adapter="gsm8k", thinking=True, prompt_format="plain")
    assert plain[0]["prompt"] == user_text(chat[0]["prompt"])
    with pytest.raises(ValueError, match="prompt_format"):
        load_prompt_dataset(path, adapter="gsm8k", prompt_format="markdown")


def test_math_takes_the_answer_column_or_the_last_boxed_of_the_solution(tmp_path):
    math500 = [{"problem": "Compute $1/2+1/4$.", "solution": "... $\\boxed{\\frac{3}{4}}$", "answer": "\\frac{3}{4}",
                "subject": "Algebra", "level": 1, "unique_id": "test/algebra/1.json"}]
    lighteval = [{"problem": "Find $x$ if $x+\\{1\\}=3$.", "level": "Level 1", "type": "Algebra",
                  "solution": "So $x = \\boxed{2}$, not \\boxed{\\{1, 2\\}}."}]
    assert load_prompt_dataset(write_jsonl(tmp_path / "a.jsonl", math500), adapter="math500")["answer"] == ["\\frac{3}{4}"]
    assert load_prompt_dataset(write_jsonl(tmp_path / "b.jsonl", lighteval), adapter="math")["answer"] == ["\\{1, 2\\}"]


def test_countdown_reads_the_hub_schema_and_d1s_test_file(tmp_path):
    hub = [{"target": 24, "nums": [2, 3, 4]}, {"target": 98, "nums": [44, 19, 35]}]
    d1_test = [{"input": "30,100,93", "output": "23"}]
    data = load_prompt_dataset(write_jsonl(tmp_path / "c.jsonl", hub), adapter="countdown")
    assert data["numbers"] == [[2, 3, 4], [44, 19, 35]] and data["target"] == [24, 98]
    assert "[2, 3, 4]" in user_text(data[0]["prompt"]) and "24" in user_text(data[0]["prompt"])
    test = load_prompt_dataset(write_jsonl(tmp_path / "t.jsonl", d1_test), adapter="countdown")
    assert test[0]["numbers"] == [30, 100, 93] and test[0]["target"] == 23


def test_sudoku_reads_d1s_csv_and_generates_unique_puzzles(tmp_path):
    (tmp_path / "s.csv").write_text("Puzzle,Solution\n0040302120000300,1243342121344312\n")
    data = load_prompt_dataset(str(tmp_path / "s.csv"), adapter="sudoku")
    assert data[0]["puzzle"] == "0040302120000300" and data[0]["solution"] == "1243342121344312"
    assert "0040302120000300" in user_text(data[0]["prompt"])

    grids = all_grids()
    assert len(grids) == len(set(grids)) == 288 and all(is_solved(g) for g in grids)
    train, test = make_sudoku_rows("train", size=300), make_sudoku_rows("test", size=50)
    assert make_sudoku_rows("test", size=50) == test  # deterministic
    for row in train[:100] + test:
        assert solutions(row["puzzle"]) == [row["solution"]]  # unique, and it is the stored one
        assert all(p in ("0", s) for p, s in zip(row["puzzle"], row["solution"]))
        assert 6 <= row["puzzle"].count("0") <= 10
    assert not {r["solution"] for r in train} & {r["solution"] for r in test}  # held-out solved grids
    assert load_prompt_dataset("sudoku", "test", limit=5)["puzzle"] == [r["puzzle"] for r in test[:5]]


def test_geoqa_style_rows_become_mmu_rows_with_images(tmp_path):
    Image.new("RGB", (16, 16), (0, 0, 255)).save(tmp_path / "fig.png")
    rows = [{"image": str(tmp_path / "fig.png"), "problem": "What is angle B?", "solution": "<answer> 35 </answer>"}]
    for name in ("geoqa", "clevr"):
        data = load_prompt_dataset(write_jsonl(tmp_path / f"{name}.jsonl", rows), adapter=name, thinking=True)
        row = data[0]
        assert row["task"] == "mmu" and row["answer"] == "35"
        assert isinstance(row["image"], Image.Image) and row["image"].getpixel((0, 0)) == (0, 0, 255)
        assert user_text(row["prompt"]).endswith("What is angle B?")


def test_captions_become_t2i_rows_from_a_folder_of_splits(tmp_path):
    folder = tmp_path / "captions"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"caption": "a red circle"}, {"caption": "a blue square"}])
    write_jsonl(folder / "test.jsonl", [{"caption": "a green triangle"}])
    train = load_prompt_dataset(str(folder), "train", adapter="captions", prompt_format="plain")
    test = load_prompt_dataset(str(folder), "test", adapter="captions", prompt_format="plain")
    assert train["prompt"] == ["a red circle", "a blue square"] and train["task"] == ["t2i", "t2i"]
    assert test["prompt"] == ["a green triangle"]
    with pytest.raises(FileNotFoundError, match="validation"):
        load_prompt_dataset(str(folder), "validation", adapter="captions")


def test_bad_input_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "no question here"}])
    with pytest.raises(ValueError, match="'question or prompt' and 'answer'"):
        load_prompt_dataset(path, adapter="gsm8k")
    with pytest.raises(ValueError, match="unknown dataset adapter 'gsm9k'"):
        load_prompt_dataset(path, adapter="gsm9k")
    with pytest.raises(FileNotFoundError, match="could not be loaded from the hub.*dataset_adapter: gsm8k"):
        load_prompt_dataset("gsm8k")  # offline: names the hub id and the local-file way out
    with pytest.raises(ValueError, match="no hub source for split 'test'"):
        load_prompt_dataset("geoqa", "test")
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        load_prompt_dataset(str(tmp_path / "missing.jsonl"), adapter="gsm8k")
    bad_row = write_jsonl(tmp_path / "c.jsonl", [{"target": 6, "nums": [1, 2, 3]}, {"target": "six", "nums": [1]}])
    with pytest.raises(ValueError, match="row 1 cannot be read by the 'countdown' adapter.*'six'"):
        load_prompt_dataset(bad_row, adapter="countdown")


def test_every_adapter_declares_what_its_rows_have():
    for name, adapter in ADAPTERS.items():
        assert adapter.name == name and adapter.needs and (adapter.sources or adapter.generate or name == "captions")
        assert "prompt" not in adapter.produces


TASK_RECIPE = """
model_name_or_path: {model}
dataset_name: {dataset}
dataset_adapter: {adapter}
train_limit: 8
eval_limit: 4
reward_funcs: [{reward}]
output_dir: {out}
num_generations: 4
per_device_train_batch_size: 8
per_device_eval_batch_size: 4
num_iterations: 1
max_steps: 1
max_completion_length: 16
block_length: 16
diffusion_steps: 4
eval_strategy: steps
eval_steps: 1
logging_steps: 1
save_strategy: "no"
disable_tqdm: true
"""


@pytest.mark.parametrize("task", ["sudoku", "countdown"])
def test_a_training_run_on_an_adapted_task_scores_with_its_reward(task, tmp_path, micro_model_dir):
    """Adapter → chat prompts → rollouts → the task's reward → logged reward and held-out accuracy."""
    from unigrpo.cli import main

    dataset = "sudoku"  # generated, no file needed
    if task == "countdown":
        folder = tmp_path / "countdown"
        folder.mkdir()
        rows = [{"target": a + b + c, "nums": [a, b, c]} for a, b, c in [(1, 2, 3), (4, 5, 6), (7, 8, 9), (2, 2, 5)]]
        write_jsonl(folder / "train.jsonl", rows * 2)
        write_jsonl(folder / "test.jsonl", rows)
        dataset = str(folder)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TASK_RECIPE.format(model=micro_model_dir, dataset=dataset, adapter=task, reward=task,
                                         out=tmp_path / "out"))
    assert main(["train", "--config", str(recipe)]) == 0
    history = json.loads((tmp_path / "out" / "trainer_state.json").read_text())["log_history"]
    rewards = [e[f"rewards/{task}/mean"] for e in history if f"rewards/{task}/mean" in e]
    accuracies = [e["eval_accuracy"] for e in history if "eval_accuracy" in e]
    assert rewards and 0.0 <= rewards[0] <= 1.0  # a random model: scored, not solved
    assert accuracies and accuracies[0] == 0.0


def test_adapter_names_and_hub_ids_load_the_published_source(monkeypatch):
    """By name or hub id, an adapter asks the hub for its own (id, config, split); no network: the call is recorded."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return datasets.Dataset.from_list([{"question": "2+2?", "answer": "#### 4"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for name in ("gsm8k", "openai/gsm8k"):
        assert load_prompt_dataset(name, "test")["answer"] == ["4"]
    assert calls == [("openai/gsm8k", "main", "test")] * 2
    calls.clear()
    monkeypatch.setattr(datasets, "load_dataset", lambda path, name=None, split=None, **kw: (
        calls.append((path, name, split)) or datasets.Dataset.from_list([{"target": 6, "nums": [1, 2, 3]}])))
    load_prompt_dataset("countdown", "train")
    load_prompt_dataset("countdown", "test")
    load_prompt_dataset("someone/countdown-mirror", "train", adapter="countdown")  # another hub copy, same schema
    assert calls == [("Jiayi-Pan/Countdown-Tasks-3to4", None, "train[:-500]"),
                     ("Jiayi-Pan/Countdown-Tasks-3to4", None, "train[-500:]"),
                     ("someone/countdown-mirror", None, "train")]


def test_eval_file_is_read_in_the_schema_of_the_recipes_data_set(tmp_path, capsys):
    """`unigrpo eval --eval-file` on a recipe whose data set is an adapter: the file is adapted the same way."""
    from unigrpo.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: tiny-arith-sft\ndataset_name: gsm8k\nprompt_format: plain\n"
                      "reward_funcs: [math_correctness]\nmax_completion_length: 6\nblock_length: 6\n"
                      "diffusion_steps: 6\noutput_dir: " + str(tmp_path / "o") + "\n")
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "12+34=", "answer": "#### 46"}] * 3)
    assert main(["eval", "--config", str(recipe), "--model", "tiny-arith-sft", "--eval-file", path, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 3 and "rewards/math_correctness/mean" in result
