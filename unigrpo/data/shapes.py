"""The built-in synthetic image domain of the CPU text-to-image demo: "a red circle on blue".

An image is a ``size``×``size`` RGB picture of one filled shape (circle, square or triangle) of one colour on a plain
background of another colour, its centre and radius jittered per sample. Captions name the three attributes:
``a {colour} {shape} on {background}``. Six colours × three shapes × five other backgrounds = 90 captions, split
(in a fixed shuffled order) into ``train`` (30: the SFT data), ``rl`` (45: prompts for RL, never seen by SFT) and
``test`` (15: held out from both), so a held-out caption is a combination never trained on (each of its words was).

Rows (TRL's prompt format): ``prompt`` (the caption), ``task`` (``t2i``), ``colour``, ``shape``, ``background``, and,
for ``with_images=True``, ``image`` (the PIL picture, the SFT target and the data the image tokenizer and the demo's
CLIP are trained on).
"""

from __future__ import annotations

import itertools
import math
import random

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
SHAPES = ("circle", "square", "triangle")
SPLITS = {"test": (0,), "rl": (1, 3, 5), "train": (2, 4)}  # caption index mod 6 in the shuffled order


def caption(colour: str, shape: str, background: str) -> str:
    return f"a {colour} {shape} on {background}"


def all_triples() -> list[tuple[str, str, str]]:
    """(colour, shape, background) for every caption, background ≠ colour, in a fixed order."""
    return [(c, s, b) for c, s, b in itertools.product(COLOURS, SHAPES, COLOURS) if b != c]


def split_triples(split: str) -> list[tuple[str, str, str]]:
    """The captions of ``train`` (30), ``rl`` (45) or ``test`` (15, held out)."""
    if split not in SPLITS:
        raise ValueError(f"shapes split {split!r}; valid: {list(SPLITS)}")
    triples = all_triples()
    random.Random(0).shuffle(triples)
    return [t for i, t in enumerate(triples) if i % 6 in SPLITS[split]]


def render_shape(colour: str, shape: str, background: str, size: int = 32, rng: random.Random | None = None):
    """One picture: the shape's centre jittered by up to size/8, its radius between 0.25 and 0.34 of ``size``."""
    from PIL import Image, ImageDraw

    if colour not in COLOURS or background not in COLOURS or shape not in SHAPES:
        raise ValueError(f"unknown shape attributes {(colour, shape, background)}; colours {list(COLOURS)}, "
                         f"shapes {list(SHAPES)}")
    rng = rng or random.Random(0)
    image = Image.new("RGB", (size, size), COLOURS[background])
    draw = ImageDraw.Draw(image)
    jitter = size / 8
    cx, cy = size / 2 + rng.uniform(-jitter, jitter), size / 2 + rng.uniform(-jitter, jitter)
    r = size * rng.uniform(0.25, 0.34)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        half = r * 0.85
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    else:
        draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a))
                      for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)], fill=fill)
    return image


def make_shapes_dataset(split: str = "train", per_caption: int = 1, with_images: bool = False, size: int = 32,
                        seed: int = 0, limit: int | None = None):
    """``per_caption`` rows per caption of ``split`` (shuffled); images drawn from ``seed`` when asked for."""
    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for colour, shape, background in split_triples(split):
        for _ in range(per_caption):
            row = {"prompt": caption(colour, shape, background), "task": "t2i", "colour": colour, "shape": shape,
                   "background": background}
            if with_images:
                row["image"] = render_shape(colour, shape, background, size, rng)
            rows.append(row)
    random.Random(seed + 1).shuffle(rows)
    if limit is not None:
        rows = rows[:limit]
    return Dataset.from_list(rows)
