"""The built-in image-understanding (``mmu``) task of the CPU demo: questions about the synthetic shapes pictures.

A row shows one picture of ``unigrpo.data.shapes`` (a filled circle, square or triangle of one colour on a plain
background of another, jittered) and asks one of three questions, each answered by one word::

    What colour is the shape?          red / green / blue / yellow / white / black
    What shape is it?                  circle / square / triangle
    What colour is the background?     the six colours

Splits follow the captions of ``unigrpo.data.shapes`` (``train`` 30 / ``rl`` 45 / ``test`` 15 of the 90 colour ×
shape × background combinations), each split drawing its pictures (the jitter) from a seed of its own:

    train    the 30 SFT combinations, 10 pictures per question             900 rows   the start model's SFT data
    rl       the 45 RL combinations, 12 pictures per question             1620 rows   RL prompts
    test     the same 45 combinations, 2 *new* pictures per question       270 rows   held-out pictures
    unseen   the 15 combinations neither SFT nor RL saw, 4 per question    180 rows   held-out combinations

Held-out accuracy (``test``) is read on pictures RL never saw (none is pixel for pixel an ``rl`` picture).
``unseen`` asks more, combinations never trained on, and at this size it mostly measures the tiny VQ rather than the
learner: a picture is 16 codes of 8×8 pixels, and a patch mixing the shape's colour with a background it was never
seen against gets a code learned from other pairs. Even supervised training on the ``rl`` rows' true answers reached
only about 52% there, so RL's gain on ``unseen`` is reported beside the held-out one, not as the demo's target.

Rows: ``task`` (``mmu``), ``image`` (the PIL picture), ``prompt`` (the question), ``answer`` (the picture's word),
``question`` (``colour`` / ``shape`` / ``background``), the picture's ``colour``, ``shape``, ``background`` and the
``completion`` (the SFT target), the answer in the checked format ``\\boxed{word}``.

The ``train`` split is the start model's SFT data: 30 combinations only, so a short SFT on it learns the format and
the kind of answer but reads pictures of other combinations poorly (backgrounds well, shape colours and shapes near
chance), and RL on the 45 ``rl`` combinations has room to gain. (SFT completions naming a random word of the right
kind, which would start the model exactly at chance, were tried: they let the model memorise random words per
picture, and RL from there did not learn within the demo's budget.)

``boxed_word`` is the task's correctness reward: 2.0 (MMaDA's correctness reward) when the last ``\\boxed{…}`` holds
exactly the answer word (case and surrounding spaces ignored), else 0. ``exact_answer`` would compare the whole
completion, and ``math_correctness`` would read a word as a product of symbols (``\\boxed{der}`` = ``red``).
"""

from __future__ import annotations

import functools
import random

from rewards.extract import last_boxed
from rewards.inputs import is_pil_image
from rewards.registry import completion_text

from .shapes import COLOURS, SHAPES, render_shape, split_triples

QUESTIONS: dict[str, tuple[str, tuple[str, ...]]] = {  # kind → (question, the words that can answer it)
    "colour": ("What colour is the shape?", tuple(COLOURS)),
    "shape": ("What shape is it?", SHAPES),
    "background": ("What colour is the background?", tuple(COLOURS)),
}
PICTURES = {"train": 10, "rl": 12, "test": 2, "unseen": 4}  # pictures per (caption, question)
SPLIT_SEEDS = {"train": 0, "rl": 1, "test": 2, "unseen": 3}  # each split's pictures from a stream of its own
COMBINATIONS = {"train": "train", "rl": "rl", "test": "rl", "unseen": "test"}  # split → shapes.py's caption split
CORRECT_REWARD = 2.0


def answer_format(word: str) -> str:
    """The completion format that ``boxed_word`` and ``boxed_format`` check."""
    return f"\\boxed{{{word}}}"


def qa_row(colour: str, shape: str, background: str, kind: str, image) -> dict:
    """One question (``kind``) about one picture; ``answer`` is the picture's word, ``completion`` its format."""
    attributes = {"colour": colour, "shape": shape, "background": background}
    return {"task": "mmu", "image": image, "prompt": QUESTIONS[kind][0], "answer": attributes[kind],
            "question": kind, **attributes, "completion": answer_format(attributes[kind])}


def make_shapes_qa_dataset(split: str = "test", pictures: int | None = None, seed: int | None = None,
                           size: int = 32, limit: int | None = None):
    """``pictures`` rows per (caption, question) of ``split`` (default ``PICTURES[split]``), shuffled; the pictures
    drawn from ``seed`` (default: the split's own)."""
    from datasets import Dataset

    if split not in COMBINATIONS:
        raise ValueError(f"shapes-qa split {split!r}; valid: {list(COMBINATIONS)}")
    triples = split_triples(COMBINATIONS[split])
    pictures = PICTURES[split] if pictures is None else pictures
    if pictures < 1:
        raise ValueError(f"pictures={pictures}: each (caption, question) needs at least one picture")
    rng = random.Random(SPLIT_SEEDS[split] if seed is None else seed)
    # held-out pictures: redraw any that is pixel for pixel one RL saw (jitter is quantised to pixels)
    seen = rl_pictures(size) if split == "test" else set()
    rows = []
    for colour, shape, background in triples:
        for kind in QUESTIONS:
            for _ in range(pictures):
                image = render_shape(colour, shape, background, size, rng)
                while image.tobytes() in seen:
                    image = render_shape(colour, shape, background, size, rng)
                rows.append(qa_row(colour, shape, background, kind, image))
    rng.shuffle(rows)
    return Dataset.from_list(rows[:limit] if limit is not None else rows)


@functools.lru_cache(maxsize=4)
def rl_pictures(size: int) -> frozenset[bytes]:
    """The pixels of every picture of the ``rl`` split (default pictures and seed), rendered once per process."""
    return frozenset(image.tobytes() for image in make_shapes_qa_dataset("rl", size=size)["image"])


def boxed_word(prompts=None, completions=(), answer=(), **kwargs) -> list[float | None]:
    """2.0 if the last ``\\boxed{…}`` holds exactly the answer word (case and outer spaces ignored), else 0
    (None for an image)."""
    scores = []
    for completion, gold in zip(completions, answer, strict=True):
        if is_pil_image(completion):
            scores.append(None)
            continue
        word = last_boxed(completion_text(completion))
        scores.append(CORRECT_REWARD if word is not None and word.strip().lower() == str(gold).strip().lower()
                      else 0.0)
    return scores


boxed_word.required_columns = ("answer",)  # checked by `unigrpo check` before any model loads
boxed_word.correct_threshold = CORRECT_REWARD
