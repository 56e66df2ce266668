"""The project's documents refer only to files the repository has (no notes that users do not get)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cfg", ".txt"}
FOLDERS = ("unigrpo", "rewards", "rollouts", "recipes", "docs", "benchmarks", "tests")


def project_files():
    yield ROOT / "README.md"
    yield ROOT / "Makefile"
    for folder in FOLDERS:
        yield from (p for p in (ROOT / folder).rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())


def test_no_reference_to_the_private_design_notes():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p in project_files() if p != Path(__file__).resolve()
                 for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
                 if re.search(r"\bDESIGN(\.md| §)|\b(CHECKPOINTS|STYLE)\.md\b|/work/shared|\.\./shared/", line)]
    assert offenders == []


def test_every_docs_file_named_exists():
    named = {m for p in project_files() for m in re.findall(r"docs/[\w./-]+\.md", p.read_text(errors="replace"))}
    assert named, "the project points readers to its docs/"
    missing = sorted(m for m in named if not (ROOT / m).is_file())
    assert missing == []


def test_the_t2i_recipe_header_counts_the_captions_of_its_splits():
    """recipes/tiny-t2i.yaml's header says how many captions SFT, RL and the held-out evaluation use: the numbers
    of unigrpo/data/shapes.py's splits."""
    from unigrpo.data.shapes import split_triples

    header = "".join(line for line in (ROOT / "recipes" / "tiny-t2i.yaml").read_text().splitlines(keepends=True)
                     if line.startswith("#"))
    header = " ".join(header.replace("#", " ").split())
    counts = {split: len(split_triples(split)) for split in ("train", "rl", "test")}
    assert counts == {"train": 30, "rl": 45, "test": 15}
    assert f"{counts['train']} captions: the `train` split" in header
    assert f"on {counts['rl']} other captions (the `rl` split" in header
    assert f"on the {counts['test']} held out from both (the `test` split)" in header


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("From Python, as with TRL:")
    return text[start:].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_python_example_trains_and_saves_what_it_says(tmp_path, monkeypatch):
    """The example as printed (10 steps instead of 100, one logging interval): it leaves the model, the log history,
    the curves and the sampler settings, as the CLI does."""
    code = readme_python_example()
    assert "max_steps=100" in code and 'output_dir="out"' in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("max_steps=100", "max_steps=10"), "README.md", "exec"), {})
    saved = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"model.safetensors", "config.json", "trainer_state.json", "training_curves.png",
            "unigrpo_sampler.json"} <= saved
