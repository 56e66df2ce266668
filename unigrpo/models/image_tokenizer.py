"""The image tokenizer interface (docs/design.md §5): images ↔ grids of discrete codes that a diffusion LM generates.

An image tokenizer is a ``torch.nn.Module`` subclass of ``ImageTokenizer`` with

    codebook_size     number of codes (MMaDA's MAGVIT-v2: 8192)
    tokens_per_image  codes per image, row-major (h, w) (MAGVIT-v2 at 512 px: 32 × 32 = 1024)
    image_size        side of the square pixel input it encodes
    encode_pixels(x)  (B, 3, S, S) float in [−1, 1] → (B, N) long codes in [0, codebook_size)
    decode_codes(c)   (B, N) long → (B, 3, S, S) float, [−1, 1] nominal (clamped by ``decode``)

and gets from this base class the PIL side: ``encode(images)`` (RGB PIL images of any size: short side resized
bicubic to S, centre-cropped, to [−1, 1]) and ``decode(codes)`` → RGB PIL images (clamp((x+1)/2, 0, 1)·255).
Bad input gets one clear ``ValueError``: a non-RGB image, a pixel tensor of the wrong shape or range, a code outside
the codebook.

Implementations are found by name in ``IMAGE_TOKENIZERS`` (``register_image_tokenizer``). Each has
``from_pretrained(folder)`` (a ``config.json`` and its weights) and ``save_pretrained(folder)``, and a classmethod
``matches_config(config)`` that recognises its own ``config.json``; ``load_image_tokenizer(folder)`` picks the
class that way (or by ``kind=``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

IMAGE_TOKENIZERS: dict[str, type] = {}


def register_image_tokenizer(name: str) -> Callable[[type], type]:
    """Class decorator: make an ``ImageTokenizer`` subclass loadable by ``name``."""

    def decorator(cls: type) -> type:
        IMAGE_TOKENIZERS[name] = cls
        cls.tokenizer_type = name
        return cls

    return decorator


class ImageTokenizer(torch.nn.Module):
    """Base class: subclasses set ``codebook_size``, ``tokens_per_image``, ``image_size`` and implement the two
    tensor methods; the PIL conversions and input checks live here."""

    tokenizer_type = "abstract"
    codebook_size: int
    tokens_per_image: int
    image_size: int

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) in [-1, 1] → (B, N)
        raise NotImplementedError

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:  # (B, N) → (B, 3, S, S)
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- checks ------------------------------------------------------------------------------------------------

    def check_pixels(self, pixels: torch.Tensor) -> None:
        s = self.image_size
        if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4 or tuple(pixels.shape[1:]) != (3, s, s):
            shape = tuple(pixels.shape) if isinstance(pixels, torch.Tensor) else type(pixels).__name__
            raise ValueError(f"{type(self).__name__} encodes pixels of shape (B, 3, {s}, {s}); got {shape}")
        if not pixels.is_floating_point() or pixels.min() < -1.001 or pixels.max() > 1.001:
            raise ValueError(f"{type(self).__name__} encodes float pixels in [-1, 1] (normalise 0.5/0.5); got "
                             f"{pixels.dtype} in [{pixels.min().item():g}, {pixels.max().item():g}]")

    def check_codes(self, codes: torch.Tensor) -> None:
        n = self.tokens_per_image
        if not isinstance(codes, torch.Tensor) or codes.dim() != 2 or codes.shape[1] != n:
            shape = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            raise ValueError(f"{type(self).__name__} decodes codes of shape (B, {n}); got {shape}")
        if codes.dtype not in (torch.int64, torch.int32) or codes.numel() and (
                codes.min() < 0 or codes.max() >= self.codebook_size):
            low, high = (codes.min().item(), codes.max().item()) if codes.numel() else (0, 0)
            raise ValueError(f"image codes must be integers in [0, {self.codebook_size}); got {codes.dtype} in "
                             f"[{low}, {high}] — are they token ids that still carry the text-vocabulary offset?")

    # ---- PIL side ----------------------------------------------------------------------------------------------

    def preprocess(self, images: list) -> torch.Tensor:
        """RGB PIL images → (B, 3, S, S) in [−1, 1]: short side resized (bicubic) to S, centre crop."""
        from PIL import Image
        from torchvision.transforms import functional as F

        tensors = []
        for i, image in enumerate(images):
            if not isinstance(image, Image.Image):
                raise ValueError(f"image {i} is a {type(image).__name__}, not a PIL image")
            if image.mode != "RGB":
                raise ValueError(f"image {i} has mode {image.mode!r}; image tokenizers take RGB "
                                 "(convert with image.convert('RGB'))")
            image = F.center_crop(F.resize(image, self.image_size, F.InterpolationMode.BICUBIC), self.image_size)
            tensors.append(F.to_tensor(image) * 2 - 1)
        return torch.stack(tensors)

    @torch.no_grad()
    def encode(self, images: list) -> torch.Tensor:
        """RGB PIL images → (B, N) long codes."""
        pixels = self.preprocess(images).to(self.device)
        self.check_pixels(pixels)
        return self.encode_pixels(pixels)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> list:
        """(B, N) codes → RGB PIL images."""
        from PIL import Image

        self.check_codes(codes)
        pixels = self.decode_codes(codes.to(self.device).long())  # (B, 3, S, S)
        pixels = ((pixels.float() + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
        return [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]


BUILTIN_MODULES = ("unigrpo.models.tiny_vq", "unigrpo.models.magvit2")  # register themselves when imported


def resolve_image_tokenizer_path(name_or_path: str | Path) -> Path:
    """A folder, the name of an image tokenizer shipped in ``unigrpo/assets`` (e.g. ``tiny-shapes-vq``), or a hub
    id (``showlab/magvitv2``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = Path(__file__).resolve().parent.parent / "assets" / str(name_or_path)
    if (shipped / "config.json").is_file():
        return shipped
    from .loading import hub_snapshot, is_hub_id

    if is_hub_id(str(name_or_path)):  # e.g. showlab/magvitv2
        return hub_snapshot(str(name_or_path), "image tokenizer", ("*.bin",))  # may ship pytorch_model.bin only
    raise FileNotFoundError(f"image tokenizer {str(name_or_path)!r} is neither a folder, a shipped one nor a hub id")


def load_image_tokenizer(path: str | Path, kind: str | None = None, device=None) -> ImageTokenizer:
    """The image tokenizer saved in folder ``path`` (or shipped under that name): of class ``kind`` (a registered
    name), or the one whose ``matches_config`` recognises the folder's ``config.json``. Eval mode, on ``device``."""
    import importlib.util

    for module in BUILTIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    path = resolve_image_tokenizer_path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not an image tokenizer folder (no config.json)")
    if kind is None:
        config = json.loads((path / "config.json").read_text())
        kinds = [name for name, cls in IMAGE_TOKENIZERS.items() if cls.matches_config(config)]
        if len(kinds) != 1:
            raise ValueError(f"cannot tell which image tokenizer {path}/config.json describes (matches: {kinds}); "
                             f"pass kind= one of {sorted(IMAGE_TOKENIZERS)}")
        kind = kinds[0]
    if kind not in IMAGE_TOKENIZERS:
        raise ValueError(f"unknown image tokenizer {kind!r}; valid: {sorted(IMAGE_TOKENIZERS)}")
    tokenizer = IMAGE_TOKENIZERS[kind].from_pretrained(path)
    return tokenizer.to(device or "cpu").eval().requires_grad_(False)
