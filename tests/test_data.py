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
