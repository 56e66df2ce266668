"""``clip_score``: image–text agreement by CLIP (MMaDA §2.3 / docs/design.md §3.7: ``mmu`` captions and ``t2i`` images add
0.1·CLIP to the reward).

The number is the CLIP score as papers report it (MMaDA: 29.4 → 32.5 for text-to-image): 100 × the cosine
similarity of the L2-normalised image and text embeddings of an open_clip model, times ``scale``; it lies in
[−100, 100]·scale, and a real ViT-B/32 gives about 20–35 for matching pairs. Unlike torchmetrics' ``CLIPScore`` it
is not clamped at 0, so poor matches still rank among themselves (GRPO only uses differences within a group).

Which pair is scored, per sample:
  - the completion is a PIL image (``t2i``) → (completion, prompt text; a conversational prompt gives its last user
    message);
  - else the row has a PIL image in the dataset column ``image_column`` (``mmu``) → (that image, completion text);
  - else, or when the row's ``task`` column is ``t2t`` → ``None`` (not applicable).

Weights are local only: ``weights_path`` (a state dict or open_clip checkpoint: .safetensors/.bin/.pt/.pth, read
with ``weights_only=True``) for a built-in architecture (``model_name``) or for a custom one (``model_config``,
open_clip's JSON format: ``embed_dim``, ``vision_cfg``, ``text_cfg``). A ``pretrained`` tag downloads, so it needs
``allow_download=True``. The model is loaded on first use and cached by the factory's arguments.

The registered ``clip_score`` is built by ``make_clip_score`` with the recipe's ``reward_kwargs: {clip_score: {...}}``
(e.g. ``{model_name: ViT-L-14, weights_path: /ckpt/open_clip_model.safetensors}``); without them it takes its
arguments from the environment (``UNIGRPO_CLIP_<ARGUMENT>``, e.g. ``UNIGRPO_CLIP_WEIGHTS_PATH=/ckpt/model.safetensors``,
``UNIGRPO_CLIP_MODEL_CONFIG=/ckpt/config.json``), built once per distinct setting. From Python, pass
``make_clip_score(...)`` itself as a reward function.

This module imports neither torch nor open_clip until a score is computed.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .inputs import caption_text, is_pil_image, parse_flag, parse_json_or_file, settings_from_env
from .registry import completion_text, register_reward

CLIP_SCORE_SCALE = 100.0  # the CLIP-score convention: 100 · cos(image, text)
ENV_PREFIX = "UNIGRPO_CLIP_"
NOT_APPLICABLE_TASKS = ("t2t",)


@dataclass
class ClipBundle:
    """What scoring needs, loaded once per key: the model (eval, no grad), its eval image transform, its tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: Any


_CACHE: dict[tuple, ClipBundle] = {}
_CACHE_LOCK = threading.Lock()


def clear_clip_cache() -> None:
    """Forget every loaded CLIP model (frees its memory once no reward function holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _check_source(model_name, pretrained, weights_path, model_config, allow_download):
    """One clear ValueError for every way of not saying where the weights come from."""
    if weights_path is not None and pretrained is not None:
        raise ValueError("make_clip_score: give weights_path (a local file) or pretrained (a tag), not both")
    if weights_path is not None and not os.path.isfile(weights_path):
        raise ValueError(f"make_clip_score: weights_path={weights_path!r} is not a file")
    if pretrained is not None:
        if model_config is not None:
            raise ValueError("make_clip_score: a pretrained tag names weights of a built-in model; with "
                             "model_config give weights_path (a local file) instead")
        if not allow_download:
            raise ValueError(
                f"make_clip_score: pretrained={pretrained!r} is an open_clip tag, which downloads weights; pass "
                "allow_download=True to allow that, or give weights_path=<local .safetensors/.bin/.pt file>"
            )
    if weights_path is None and pretrained is None and model_config is None:
        raise ValueError(
            f"clip_score needs CLIP weights for model {model_name!r}: pass weights_path=<local "
            ".safetensors/.bin/.pt file> (optionally with model_config=<open_clip config dict> for a custom "
            "architecture), or pretrained=<open_clip tag> with allow_download=True, to make_clip_score; for the "
            f"registered 'clip_score' set {ENV_PREFIX}WEIGHTS_PATH (and {ENV_PREFIX}MODEL_NAME or "
            f"{ENV_PREFIX}MODEL_CONFIG), or give them in the recipe as reward_kwargs: {{clip_score: {{weights_path: "
            "...}}"
        )


def _load_clip(model_name, pretrained, weights_path, model_config, device) -> ClipBundle:
    """Build the open_clip model with its weights, its eval transform and its tokenizer (uncached)."""
    try:
        import open_clip
    except ImportError as error:
        raise ImportError("clip_score needs open-clip-torch: pip install 'unigrpo[image]'") from error
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if pretrained is not None:  # a tag: open_clip fetches (or finds in its cache) the weights
        model = open_clip.create_model(model_name, pretrained=pretrained, device=device)
        tokenizer = open_clip.get_tokenizer(model_name)
    else:
        config = model_config if model_config is not None else open_clip.get_model_config(model_name)
        if config is None:
            raise ValueError(f"unknown open_clip model {model_name!r}; give model_config, or one of "
                             f"{', '.join(open_clip.list_models())}")
        with tempfile.TemporaryDirectory(prefix="unigrpo-clip-") as folder:
            _open_clip_folder(folder, config, weights_path)
            # pretrained_text=False: never fetch a text tower's base weights (hf-text models) over the network.
            model = open_clip.create_model(f"local-dir:{folder}", pretrained_text=False, device=device)
            tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval().requires_grad_(False)
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device)


def _open_clip_folder(folder: str, config: dict, weights_path: str | None) -> None:
    """Lay out ``folder`` as open_clip's ``local-dir:`` format: ``open_clip_config.json`` and a linked checkpoint.

    open_clip then builds the architecture and loads the weights itself (strict, ``weights_only=True``), with no
    global config registry touched; a non-safetensors file is linked under a ``.bin`` name, which ``torch.load``
    reads whatever its format.
    """
    if "model_cfg" not in config:  # the model_configs/*.json format → the open_clip_config.json format
        config = {"model_cfg": config}
    with open(os.path.join(folder, "open_clip_config.json"), "w") as f:
        json.dump(config, f)
    if weights_path is not None:
        name = "open_clip_model.safetensors" if weights_path.endswith(".safetensors") else "open_clip_pytorch_model.bin"
        os.symlink(weights_path, os.path.join(folder, name))


def load_clip(model_name, pretrained, weights_path, model_config, device) -> ClipBundle:
    """The cached ``ClipBundle`` for these arguments, loaded on first request."""
    key = (model_name, pretrained, weights_path, json.dumps(model_config, sort_keys=True), str(device))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load_clip(model_name, pretrained, weights_path, model_config, device)
        return _CACHE[key]


def clip_scores(bundle: ClipBundle, images: list, texts: list[str], batch_size: int = 32) -> list[float]:
    """100 · cos(image embedding, text embedding) for each (image, text) pair; each distinct image/text encoded once.

    images: PIL images (pairs may share one object: the G answers to one ``mmu`` prompt); texts: strings, truncated
    to the model's context length by its tokenizer. Encoding runs in chunks of ``batch_size`` under ``no_grad``.
    """
    import torch

    unique_images = list({id(im): im for im in images}.values())
    image_row = {id(im): r for r, im in enumerate(unique_images)}
    unique_texts = list(dict.fromkeys(texts))
    text_row = {t: r for r, t in enumerate(unique_texts)}

    with torch.no_grad():
        image_emb = torch.cat([  # (I, D), unit norm
            bundle.model.encode_image(
                torch.stack([bundle.preprocess(im) for im in unique_images[s : s + batch_size]]).to(bundle.device),
                normalize=True,
            ).float()
            for s in range(0, len(unique_images), batch_size)
        ])
        text_emb = torch.cat([  # (T, D), unit norm
            bundle.model.encode_text(bundle.tokenizer(unique_texts[s : s + batch_size]).to(bundle.device),
                                     normalize=True).float()
            for s in range(0, len(unique_texts), batch_size)
        ])
        rows_i = torch.tensor([image_row[id(im)] for im in images], device=image_emb.device)
        rows_t = torch.tensor([text_row[t] for t in texts], device=text_emb.device)
        cosine = (image_emb[rows_i] * text_emb[rows_t]).sum(-1)  # (N,)
    return (CLIP_SCORE_SCALE * cosine).cpu().tolist()


def _pair(prompt, completion, image, task):
    """(image, text) to score for one sample, or None when CLIP does not apply."""
    if task in NOT_APPLICABLE_TASKS:
        return None
    if is_pil_image(completion):  # t2i: generated image, caption
        return completion, caption_text(prompt)
    if is_pil_image(image):  # mmu: input image, generated text
        return image, completion_text(completion)
    return None


def make_clip_score(
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    weights_path: str | os.PathLike | None = None,
    model_config: dict | str | os.PathLike | None = None,
    device: str | None = None,
    scale: float = 1.0,
    image_column: str = "image",
    batch_size: int = 32,
    allow_download: bool = False,
):
    """A ``clip_score`` reward: ``scale`` · 100 · cos(image, text) per completion (see the module docstring).

    model_name: open_clip architecture (``open_clip.list_models()``); ignored when ``model_config`` is given.
    pretrained: open_clip weight tag (e.g. ``laion2b_s34b_b79k``); downloads, so only with ``allow_download=True``.
    weights_path: local state dict / open_clip checkpoint (.safetensors, .bin, .pt, .pth).
    model_config: custom architecture, open_clip's JSON config as a dict or the path of its JSON file
        (``embed_dim``, ``vision_cfg``, ``text_cfg``; or an ``open_clip_config.json`` with ``model_cfg`` /
        ``preprocess_cfg``). Without ``weights_path`` its weights are random (tests only).
    device: where the model runs (default: cuda if available, else cpu).
    scale: multiplies the score (MMaDA's 0.1·CLIP is ``scale=0.1`` or a reward weight of 0.1).
    image_column: dataset column holding the ``mmu`` input image.
    batch_size: images or texts per encoder forward pass.
    The model loads on the first call and is shared by every reward built with the same model arguments.
    """
    weights_path = None if weights_path is None else os.path.abspath(os.fspath(weights_path))
    if isinstance(model_config, (str, os.PathLike)):
        if not os.path.isfile(model_config):
            raise ValueError(f"make_clip_score: model_config={os.fspath(model_config)!r} is not a file")
        model_config = parse_json_or_file(os.fspath(model_config))
    _check_source(model_name, pretrained, weights_path, model_config, allow_download)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    model_args = (model_name, pretrained, weights_path, model_config, device)

    def clip_score(prompts=None, completions=(), **kwargs) -> list[float | None]:
        n = len(completions)
        prompts = [None] * n if prompts is None else prompts
        images, tasks = kwargs.get(image_column), kwargs.get("task")
        images = [None] * n if images is None else images
        tasks = [None] * n if tasks is None else tasks
        pairs = [_pair(*row) for row in zip(prompts, completions, images, tasks, strict=True)]
        todo = [i for i, pair in enumerate(pairs) if pair is not None]
        scores: list[float | None] = [None] * n
        if todo:
            values = clip_scores(load_clip(*model_args), [pairs[i][0] for i in todo], [pairs[i][1] for i in todo],
                                 batch_size)
            for i, value in zip(todo, values):
                scores[i] = scale * value
        return scores

    clip_score.load = lambda: load_clip(*model_args)  # the shared ClipBundle (loads it if needed)
    return clip_score


_ENV_PARSERS = {"model_config": parse_json_or_file, "allow_download": parse_flag, "scale": float, "batch_size": int}


def clip_settings_from_env(environ=os.environ) -> dict:
    """``make_clip_score`` arguments from ``UNIGRPO_CLIP_<ARGUMENT>`` variables (e.g. ``UNIGRPO_CLIP_WEIGHTS_PATH``).

    ``MODEL_CONFIG`` is a JSON file path or inline JSON; ``ALLOW_DOWNLOAD`` is 1/true/yes; ``SCALE`` and
    ``BATCH_SIZE`` are numbers.
    """
    return settings_from_env(ENV_PREFIX, make_clip_score, _ENV_PARSERS, environ)


@lru_cache(maxsize=8)
def _clip_for(variables: tuple):
    """The reward the ``UNIGRPO_CLIP_*`` variables describe, built once per distinct setting (not on every call)."""
    return make_clip_score(**clip_settings_from_env(dict(variables)))


@register_reward("clip_score", factory=make_clip_score)
def clip_score(prompts=None, completions=(), **kwargs) -> list[float | None]:
    """100 · cos(image, text) by CLIP; settings from ``reward_kwargs`` (``make_clip_score``) or ``UNIGRPO_CLIP_*``."""
    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    return _clip_for(variables)(prompts=prompts, completions=completions, **kwargs)
