import json

import pytest

from unigrpo.data import load_prompt_dataset, make_arith_dataset


def test_arith_is_deterministic_and_held_out_pairs_are_disjoint():
    train, test = make_arith_dataset("train"), make_arith_dataset("test")
    assert len(train) + len(test) == 20000 and len(test) == 2000
    assert train[:5] == make_arith_dataset("train")[:5]
    pairs = lambda ds: {(p[:2], p[3:5]) for p in ds["prompt"]}  # noqa: E731
    assert not pairs(train) & pairs(test)
    row = test[0]
    a, op, b = int(row["prompt"][:2]), row["prompt"][2], int(row["prompt"][3:5])
    assert int(row["answer"]) == (a + b if op == "+" else a - b)
    assert row["completion"] == f"\\boxed{{{row['answer']}}}"


def test_local_files_and_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"p{i}", "answer": str(i)}) for i in range(5)))
    assert load_prompt_dataset(str(path), limit=3)["answer"] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="no column"):
        load_prompt_dataset(str(path), required=("prompt", "solution"))
    with pytest.raises(FileNotFoundError, match="neither a built-in"):
        load_prompt_dataset(str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "d.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="unsupported suffix"):
        load_prompt_dataset(str(bad))
    with pytest.raises(ValueError, match="split"):
        make_arith_dataset("validation")


def test_image_paths_in_a_data_file_load_as_pil_images(tmp_path):
    import json

    from PIL import Image

    from unigrpo.data import load_prompt_dataset

    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "red.png")
    rows = [{"prompt": "What colour?", "image": str(tmp_path / "red.png"), "answer": "red", "task": "mmu"}]
    (tmp_path / "mmu.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    row = load_prompt_dataset(str(tmp_path / "mmu.jsonl"))[0]
    assert isinstance(row["image"], Image.Image) and row["image"].getpixel((0, 0)) == (255, 0, 0)


BAD_FILES = [  # (file name, content, words the one error line must hold: the file's place and what is wrong)
    ("empty.jsonl", "", ["is empty (0 bytes)"]),
    ("empty.json", "", ["is empty (0 bytes)"]),
    ("rows.json", "[]", ["has no rows (an empty list [])"]),
    ("rows.json", '[{"prompt": "a"', ["not valid JSON at line 1, column 16"]),
    ("rows.json", '[{"prompt": "a"}, 3]', ["row 1 is a number, not an object"]),
    ("rows.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n', ["line 2 is not valid JSON", '"b"']),
    ("rows.jsonl", '{"prompt": "a"}\n\n{"prompt": null}\n', ["line 3: prompt is null"]),
    ("rows.jsonl", '{"prompt": "a"}\n{"prompt": 3}\n', ["line 2: prompt is a number (3)"]),
    ("rows.jsonl", '{"prompt": {"text": "a"}}\n', ["line 1: prompt is an object ({'text': 'a'})"]),
    ("rows.jsonl", '{"prompt": [{"role": "user"}]}\n', ["line 1: prompt message 0 is not a {role, content} message"]),
    ("rows.jsonl", '{"prompt": "a", "answer": "1"}\n\n{"prompt": "b", "answer": 2}\n',  # blank line: pandas reads it
     ["line 3: 'answer' is a number but line 1 has text"]),
    ("rows.csv", "prompt,answer\n,1\nx,2\n", ["row 0: prompt is null"]),
    ("rows.csv", "prompt,answer\n", ["has no rows"]),
]


@pytest.mark.parametrize("name,text,expected", BAD_FILES)
def test_a_bad_data_file_is_one_line_naming_the_file_row_and_key(tmp_path, name, text, expected):
    """Each of these was a StopIteration, DatasetGenerationError or TypeError traceback, or a row accepted only to
    fail later in the tokenizer (issue #16 item 4)."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        load_prompt_dataset(str(path))
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"dataset file {str(path)!r}")
    for words in expected:
        assert words in message, message


def test_good_prompts_pass_and_blank_lines_do_not_shift_line_numbers(tmp_path):
    chat = [{"role": "user", "content": "1+1="}]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in ["1+1=", chat, "2+2="]))
    assert len(load_prompt_dataset(str(path))) == 3
    path.write_text('\n{"prompt": "a"}\n\n{"prompt": null}\n{"prompt": "b"}\n')
    with pytest.raises(ValueError, match="line 4: prompt is null"):
        load_prompt_dataset(str(path))
    assert len(load_prompt_dataset(str(path), limit=1)) == 1  # only the rows used are checked


def test_copy_rows_are_checkable_vary_in_length_and_leave_the_canvas_eos_padded():
    from unigrpo.data.long_answers import MIN_DIGITS, WIDTH, copy_row, make_copy_dataset

    train, test = make_copy_dataset("train", limit=300), make_copy_dataset("test", limit=300)
    assert make_copy_dataset("test", limit=5)["prompt"] == test["prompt"][:5]  # deterministic
    assert not set(train["answer"]) & set(test["answer"])  # held-out strings
    for row in test:
        digits = row["prompt"][:WIDTH].rstrip(".")
        assert len(row["prompt"]) == WIDTH + 1 and row["prompt"].endswith("=")  # one width: one copy offset
        assert row["completion"] == row["answer"] == digits and digits.isdigit()
    lengths = [len(a) for a in test["answer"]]
    assert min(lengths) < 80 and max(lengths) > 185 and MIN_DIGITS <= min(lengths) and max(lengths) <= WIDTH
    assert copy_row("0123")["prompt"] == "0123" + "." * (WIDTH - 4) + "="
    with pytest.raises(ValueError, match="1..200 digits"):
        copy_row("12a")
    with pytest.raises(ValueError, match="valid: \\['test', 'train'\\]"):
        make_copy_dataset("validation")

    # the SFT canvas: the digits, then EOS up to max_completion_length
    from unigrpo.models.tokenizer import build_char_tokenizer
    from unigrpo.sft import MaskedSFTTrainer

    tokenizer = build_char_tokenizer()
    holder = type("T", (), {"processing_class": tokenizer, "args": type("A", (), {"max_completion_length": 256})})
    canvas = MaskedSFTTrainer.text_canvases(holder, test.select(range(2)))
    for row, ids in zip(test.select(range(2)), canvas.tolist()):
        n = len(row["answer"])
        assert tokenizer.decode(ids[:n]) == row["answer"] and set(ids[n:]) == {tokenizer.eos_token_id}


def test_copy_is_a_builtin_dataset():
    rows = load_prompt_dataset("copy", "test", limit=3)
    assert rows.column_names == ["prompt", "completion", "answer"] and len(rows) == 3
