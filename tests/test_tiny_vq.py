"""TinyVQ (VQ-VAE, van den Oord et al. 2017): the shipped shapes tokenizer, its folder format, training, bad input."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

import unigrpo.models.tiny_vq  # noqa: F401  (registers "tiny-vq")
from unigrpo.data.shapes import COLOURS, make_shapes_dataset
from unigrpo.image_tokenizer_training import train_tiny_vq, validation_images
from unigrpo.models.image_tokenizer import IMAGE_TOKENIZERS, load_image_tokenizer
from unigrpo.models.tiny_vq import TinyVQ

ASSET = Path(__file__).resolve().parents[1] / "unigrpo" / "assets" / "tiny-shapes-vq"
PALETTE = np.array(list(COLOURS.values()), np.float32)  # (6, 3)
# Measured on the shipped asset, 60 held-out pictures (seed 0): mean MSE 0.0092 in [−1, 1] units, worst 0.0187.
MAX_MEAN_MSE, MAX_IMAGE_MSE = 0.02, 0.045


@pytest.fixture(scope="module")
def tokenizer():
    return load_image_tokenizer(ASSET)


@pytest.fixture(scope="module")
def held_out():
    return make_shapes_dataset("test", per_caption=4, with_images=True, seed=0)  # 60 rows, 15 unseen captions


def palette_labels(image) -> np.ndarray:
    """(S, S) index of the nearest shapes colour of every pixel."""
    x = np.asarray(image).astype(np.float32)
    return ((x[..., None, :] - PALETTE) ** 2).sum(-1).argmin(-1)


def classify_shape(mask: np.ndarray) -> str:
    """The shape whose drawing (render_shape's geometry) at the mask's centroid, sized to its area, overlaps it most."""
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    ious = {}
    for shape, area in (("circle", math.pi), ("square", 1.7 ** 2), ("triangle", 3 * math.sqrt(3) / 4)):
        r = math.sqrt(mask.sum() / area)  # area = factor · r²
        template = Image.new("L", mask.shape[::-1], 0)
        draw = ImageDraw.Draw(template)
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
        elif shape == "square":
            draw.rectangle((cx - 0.85 * r, cy - 0.85 * r, cx + 0.85 * r, cy + 0.85 * r), fill=1)
        else:
            draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a))
                          for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)], fill=1)
        t = np.asarray(template).astype(bool)
        ious[shape] = (t & mask).sum() / (t | mask).sum()
    return max(ious, key=ious.get)


def test_shipped_asset_is_small_and_loads_as_tiny_vq(tokenizer):
    assert isinstance(tokenizer, TinyVQ) and not tokenizer.training
    assert (tokenizer.image_size, tokenizer.tokens_per_image, tokenizer.codebook_size) == (32, 16, 256)
    assert (ASSET / "model.safetensors").stat().st_size < 1_000_000
    config = json.loads((ASSET / "config.json").read_text())
    assert [name for name, cls in IMAGE_TOKENIZERS.items() if cls.matches_config(config)] == ["tiny-vq"]


def test_held_out_shapes_survive_encode_decode(tokenizer, held_out):
    images = list(held_out["image"])
    codes = tokenizer.encode(images)  # (60, 16)
    assert codes.shape == (60, 16) and codes.dtype == torch.long
    assert 0 <= codes.min() and codes.max() < tokenizer.codebook_size
    assert codes.unique().numel() > 100  # a healthy share of the codebook
    recon = tokenizer.decode(codes)
    assert all(r.mode == "RGB" and r.size == (32, 32) for r in recon)
    a = np.stack([np.asarray(i) for i in images]).astype(np.float32) / 127.5 - 1
    b = np.stack([np.asarray(i) for i in recon]).astype(np.float32) / 127.5 - 1
    mse = ((a - b) ** 2).mean(axis=(1, 2, 3))
    assert mse.mean() < MAX_MEAN_MSE and mse.max() < MAX_IMAGE_MSE, (mse.mean(), mse.max())
    names = list(COLOURS)
    for row, image in zip(held_out, recon):
        labels = palette_labels(image)
        border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
        assert names[np.bincount(border).argmax()] == row["background"], row["prompt"]
        inside = labels[labels != names.index(row["background"])]
        assert names[np.bincount(inside, minlength=6).argmax()] == row["colour"], row["prompt"]
        original = palette_labels(row["image"])
        assert (labels == original).mean() > 0.95, row["prompt"]  # the same pixels keep the same colours
        assert classify_shape(original == names.index(row["colour"])) == row["shape"]  # (the classifier works)
        assert classify_shape(labels == names.index(row["colour"])) == row["shape"], row["prompt"]


def test_pixel_tensors_round_trip(tokenizer):
    pixels = validation_images(32, per_caption=1)[:8]  # (8, 3, 32, 32) in [−1, 1]
    with torch.no_grad():
        codes = tokenizer.encode_pixels(pixels)  # (8, 16)
        recon = tokenizer.decode_codes(codes)  # (8, 3, 32, 32)
    assert codes.shape == (8, 16) and recon.shape == pixels.shape
    assert codes.dtype == torch.long and 0 <= codes.min() and codes.max() < 256
    assert torch.nn.functional.mse_loss(recon.clamp(-1, 1), pixels) < MAX_MEAN_MSE


def test_save_load_round_trip_gives_identical_codes(tokenizer, tmp_path):
    pixels = validation_images(32, per_caption=1)[:16]
    tokenizer.save_pretrained(tmp_path / "copy")
    copy = load_image_tokenizer(tmp_path / "copy")
    assert sorted((tmp_path / "copy").iterdir()) == [tmp_path / "copy" / "config.json",
                                                      tmp_path / "copy" / "model.safetensors"]
    with torch.no_grad():
        assert torch.equal(copy.encode_pixels(pixels), tokenizer.encode_pixels(pixels))
        codes = tokenizer.encode_pixels(pixels)
        assert torch.equal(copy.decode_codes(codes), tokenizer.decode_codes(codes))


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_folder_with_missing_or_extra_tensor_is_refused(tmp_path, change):
    folder = tmp_path / change
    shutil.copytree(ASSET, folder)
    state = load_file(str(folder / "model.safetensors"))
    if change == "missing":
        state.pop("decoder.conv_out.weight")
    else:
        state["decoder.extra.weight"] = torch.zeros(3)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match="decoder.conv_out.weight" if change == "missing" else "decoder.extra"):
        load_image_tokenizer(folder)


def test_short_training_run_lowers_the_loss_deterministically(tmp_path):
    kwargs = {"steps": 30, "batch_size": 8, "lr": 2e-3, "seed": 3, "codebook_size": 32, "warmup": 5,
              "progress": False, "verbose": False}
    first = train_tiny_vq(tmp_path / "vq", **kwargs)
    losses = first["losses"]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
    again = train_tiny_vq(None, **kwargs)
    assert again["losses"] == losses
    loaded = load_image_tokenizer(tmp_path / "vq")
    assert (loaded.codebook_size, loaded.tokens_per_image) == (32, 16)
    assert first["summary"]["codes_used"] <= 32 and first["summary"]["mse"] > 0


def test_bad_input_is_refused(tokenizer):
    with pytest.raises(ValueError, match="mode 'L'"):
        tokenizer.encode([Image.new("L", (32, 32))])
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        tokenizer.decode(torch.full((1, 16), 256))
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        tokenizer.decode(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TinyVQ(image_size=30)
    with pytest.raises(ValueError, match="not a tiny-vq"):
        TinyVQ.from_pretrained(Path("/nonexistent"))
