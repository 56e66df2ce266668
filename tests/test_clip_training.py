"""unigrpo.clip_training: the shipped tiny shapes CLIP judges captions through ``rewards.clip`` (matching beats
one-attribute-off captions, scores rise with the number of right attributes), the lazy ``shapes_clip_score`` reward,
and training from scratch (loss falls; the CLI writes an asset that loads)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import itertools
import math
import random

import pytest

pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

from unigrpo import clip_training
from unigrpo.clip_training import (
    ASSET_DIR,
    load_shapes_clip_score,
    main,
    model_config,
    shapes_clip_score,
    train_clip,
)
from unigrpo.data.shapes import COLOURS, SHAPES, all_triples, caption, render_shape

# small towers, for training-from-scratch tests: ViT 1 layer width 32, text 1 layer width 16, joint space 16
TINY = model_config(embed_dim=16, vision_width=32, vision_layers=1, text_width=16, text_layers=1)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shipped():
    return load_shapes_clip_score(device="cpu")


@pytest.fixture(scope="module")
def pictures():
    """36 fresh pictures (seed of its own, neither the training nor the evaluate seed) with their triples."""
    rng = random.Random(2024)
    triples = rng.sample(all_triples(), 36)
    return triples, [render_shape(*t, rng=rng) for t in triples]


def one_off(triple, k):
    """The captions' triples that differ from ``triple`` in attribute ``k`` only (background ≠ colour)."""
    values = (list(COLOURS), list(SHAPES), list(COLOURS))[k]
    out = [triple[:k] + (v,) + triple[k + 1:] for v in values if v != triple[k]]
    return [t for t in out if t[0] != t[2]]


def test_asset_is_small_and_complete():
    files = {p.name: p.stat().st_size for p in ASSET_DIR.iterdir()}
    assert set(files) == {"open_clip_config.json", "open_clip_model.safetensors"}
    assert sum(files.values()) < 3.2e6


@pytest.mark.parametrize("k, name", list(enumerate(["colour", "shape", "background"])))
def test_matching_caption_beats_one_attribute_off(shipped, pictures, k, name):
    rows = [(image, [triple, *one_off(triple, k)]) for triple, image in zip(*pictures)]
    pairs = [(image, caption(*t)) for image, group in rows for t in group]
    scores = shipped(prompts=[p[1] for p in pairs], completions=[p[0] for p in pairs])  # one batched call
    wins, at = [], 0
    for _, group in rows:  # the matching caption first, then its rivals
        wins.append(scores[at] > max(scores[at + 1 : at + len(group)]))
        at += len(group)
    assert sum(wins) / len(wins) >= 0.9, name  # measured: 1.0 for every attribute


def test_scores_rise_with_the_number_of_right_attributes(shipped, pictures):
    triples = all_triples()
    truths, images = pictures
    scores = shipped(prompts=[caption(*t) for t in triples] * len(images),  # one call: each text encoded once
                     completions=[image for image in images for _ in triples])
    by_correct = {k: [] for k in range(4)}
    for i, truth in enumerate(truths):
        for t, s in zip(triples, scores[i * len(triples):(i + 1) * len(triples)]):
            by_correct[sum(a == b for a, b in zip(t, truth))].append(s)
    means = [sum(v) / len(v) for v in by_correct.values()]
    assert means == sorted(means) and min(b - a for a, b in itertools.pairwise(means)) > 10, means
    assert means[3] - means[2] > 20  # measured ≈ (−24, 12, 48, 92)


def test_shapes_clip_score_is_lazy_and_skips_text(monkeypatch, shipped):
    built = []
    clip_training._shipped_reward.cache_clear()
    real = clip_training.load_shapes_clip_score
    monkeypatch.setattr(clip_training, "load_shapes_clip_score", lambda: built.append(1) or real(device="cpu"))
    image = render_shape("red", "circle", "blue")
    scores = shapes_clip_score(prompts=["a red circle on blue", "a red circle on blue", "q"],
                               completions=[image, "a red circle", "2 + 2"], task=["t2i", "mmu", "t2t"])
    shapes_clip_score(prompts=["a red circle on blue"], completions=[image])
    clip_training._shipped_reward.cache_clear()
    assert len(built) == 1  # built on the first call, then cached
    assert isinstance(scores[0], float) and scores[1] is None and scores[2] is None  # no image column: None
    assert scores[0] == pytest.approx(shipped(prompts=["a red circle on blue"], completions=[image])[0], abs=1e-4)
    scaled = load_shapes_clip_score(scale=0.1, device="cpu")(prompts=["a red circle on blue"], completions=[image])
    assert scaled[0] == pytest.approx(0.1 * scores[0], rel=1e-5)


def test_training_reduces_the_contrastive_loss(one_thread):
    result = train_clip(None, steps=60, batch_size=24, lr=3e-3, warmup=5, config=TINY, eval_per_caption=0,
                        progress=False, verbose=False)
    losses = result["losses"]
    assert len(losses) == 60 and set(result["summary"]) == {"seconds"}
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    assert last < first - 1 and last < math.log(24) - 1, losses  # well below chance (uniform logits), not just it
    with pytest.raises(ValueError, match="distinct captions"):
        train_clip(None, steps=1, batch_size=91, config=TINY)


def test_cli_writes_an_asset_that_loads(tmp_path, capsys, one_thread):
    result = main(["--output", str(tmp_path), "--steps", "2", "--batch-size", "8", "--embed-dim", "16",
                   "--vision-width", "32", "--vision-layers", "1", "--text-width", "16", "--text-layers", "1"])
    assert {p.name for p in tmp_path.iterdir()} == {"open_clip_config.json", "open_clip_model.safetensors"}
    # fp16 on disk, fp32 in memory: the reloaded judge scores as the trained one did
    assert result["reloaded"]["gap"] == pytest.approx(result["summary"]["gap"], abs=0.05)
    assert "reloaded through rewards.clip.make_clip_score" in capsys.readouterr().out


def test_reward_kwargs_build_the_shipped_reward_with_other_settings(shipped):
    from unigrpo.rewarding import resolve_reward_funcs

    name = "unigrpo.clip_training:shapes_clip_score"
    (scaled,), names = resolve_reward_funcs([name], {name: {"scale": 0.1, "device": "cpu"}})
    image = render_shape("red", "circle", "blue")
    score = scaled(prompts=["a red circle on blue"], completions=[image])[0]
    assert names == [name]
    assert score == pytest.approx(0.1 * shipped(prompts=["a red circle on blue"], completions=[image])[0], rel=1e-5)
