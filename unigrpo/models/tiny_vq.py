"""TinyVQ: a small convolutional VQ-VAE (van den Oord et al. 2017, "Neural Discrete Representation Learning").

It is the image tokenizer of the tests and of the CPU text-to-image demo: it turns the 32×32 pictures of the
synthetic shapes domain (``unigrpo.data.shapes``: one coloured circle/square/triangle on a plain background) into
a 4×4 grid of codes — 16 tokens per image from a 256-entry codebook — small enough for a tiny diffusion LM to
generate on CPU, and back. The MMaDA-scale counterpart is MAGVIT-v2 (8192 codes, 1024 tokens per 512 px image).

    encoder  conv 3→c0 at S, then per level a 3×3 stride-2 conv (GroupNorm, SiLU) down to S/2^L, a ResBlock,
             a 1×1 projection to ``embed_dim``                                 (B, 3, S, S) → (B, D, h, w)
    quantise nearest codebook entry (Euclidean); straight-through gradient; commitment loss β‖z − sg(e)‖²;
             the codebook follows EMA cluster means (γ = 0.99) with dead-code restarts during training
    decoder  the mirror: 3×3 conv D→cL, a ResBlock, per level nearest ×2 upsample + 3×3 conv, a 3×3 conv to RGB

The EMA statistics are training state only (non-persistent buffers): ``model.safetensors`` holds the conv weights
and the codebook (defaults: 208,723 float32 numbers, 0.84 MB). ``unigrpo.image_tokenizer_training`` trains it; ``unigrpo/assets/tiny-shapes-vq`` is the shipped
checkpoint.
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .image_tokenizer import ImageTokenizer, register_image_tokenizer

CONFIG_KEYS = ("image_size", "channels", "embed_dim", "codebook_size", "beta", "ema_decay")


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class ResBlock(nn.Module):
    """x + conv(SiLU(GN(conv(SiLU(GN(x))))))."""

    def __init__(self, c: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c), nn.Conv2d(c, c, 3, padding=1)
        self.norm2, self.conv2 = _norm(c), nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class Encoder(nn.Module):
    def __init__(self, channels: list[int], embed_dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in pairwise(channels))
        self.norms = nn.ModuleList(_norm(b) for b in channels[1:])
        self.mid = ResBlock(channels[-1])
        self.norm_out = _norm(channels[-1])
        self.conv_out = nn.Conv2d(channels[-1], embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, D, S/2^L, S/2^L)
        h = self.conv_in(x)
        for conv, norm in zip(self.down, self.norms):
            h = norm(conv(F.silu(h)))
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, channels: list[int], embed_dim: int):
        super().__init__()
        self.conv_in = nn.Conv2d(embed_dim, channels[-1], 3, padding=1)
        self.mid = ResBlock(channels[-1])
        pairs = list(zip(channels[1:], channels))[::-1]  # (c_{i+1} → c_i), coarse to fine
        self.norms = nn.ModuleList(_norm(a) for a, _ in pairs)
        self.up = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in pairs)
        self.norm_out = _norm(channels[0])
        self.conv_out = nn.Conv2d(channels[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) → (B, 3, h·2^L, w·2^L)
        h = self.mid(self.conv_in(z))
        for norm, conv in zip(self.norms, self.up):
            h = conv(F.interpolate(F.silu(norm(h)), scale_factor=2, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook (K, D); EMA updates (``ema_update``) and restarts (``restart_dead``) in training."""

    def __init__(self, codebook_size: int, embed_dim: int, decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        self.decay, self.eps = decay, eps
        self.codebook = nn.Parameter(torch.randn(codebook_size, embed_dim), requires_grad=False)  # (K, D)
        self.register_buffer("cluster_size", torch.ones(codebook_size), persistent=False)  # (K,) EMA counts
        self.register_buffer("embed_sum", self.codebook.detach().clone(), persistent=False)  # (K, D) EMA sums

    def indices(self, flat: torch.Tensor) -> torch.Tensor:  # (M, D) → (M,)
        d = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
             + self.codebook.pow(2).sum(1)[None])  # (M, K) squared distances
        return d.argmin(1)

    @torch.no_grad()
    def init_from(self, flat: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Codebook ← K distinct random rows of the encoder outputs ``flat`` (M ≥ K, D)."""
        rows = flat[torch.randperm(flat.shape[0], generator=generator)[: self.codebook.shape[0]]]
        self.codebook.copy_(rows)
        self.embed_sum.copy_(rows)
        self.cluster_size.fill_(1.0)

    @torch.no_grad()
    def ema_update(self, flat: torch.Tensor, idx: torch.Tensor) -> None:
        onehot = F.one_hot(idx, self.codebook.shape[0]).type_as(flat)  # (M, K)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        size = (self.cluster_size + self.eps) / (n + self.codebook.shape[0] * self.eps) * n  # Laplace smoothing
        self.codebook.copy_(self.embed_sum / size[:, None])

    @torch.no_grad()
    def restart_dead(self, flat: torch.Tensor, threshold: float, generator: torch.Generator | None = None) -> int:
        """Codes whose EMA count fell below ``threshold`` jump to random encoder outputs; returns how many."""
        dead = (self.cluster_size < threshold).nonzero().squeeze(1)
        if len(dead):
            rows = flat[torch.randint(flat.shape[0], (len(dead),), generator=generator)]
            self.codebook[dead] = rows
            self.embed_sum[dead] = rows
            self.cluster_size[dead] = 1.0
        return len(dead)


@register_image_tokenizer("tiny-vq")
class TinyVQ(ImageTokenizer):
    """The conv VQ-VAE; ``forward`` returns (reconstruction, commitment loss, codes) for training."""

    def __init__(self, image_size: int = 32, channels: list[int] | tuple[int, ...] = (32, 48, 48, 48),
                 embed_dim: int = 16, codebook_size: int = 256, beta: float = 0.25, ema_decay: float = 0.99):
        super().__init__()
        channels = [int(c) for c in channels]
        levels = len(channels) - 1
        if levels < 1 or image_size % 2 ** levels:
            raise ValueError(f"image_size {image_size} must be divisible by 2^{levels} ({len(channels)} channels)")
        self.image_size, self.channels, self.embed_dim = image_size, channels, embed_dim
        self.codebook_size, self.beta, self.ema_decay = codebook_size, beta, ema_decay
        self.grid = image_size // 2 ** levels
        self.tokens_per_image = self.grid ** 2
        self.encoder = Encoder(channels, embed_dim)
        self.quantizer = VectorQuantizer(codebook_size, embed_dim, ema_decay)
        self.decoder = Decoder(channels, embed_dim)

    # ---- tensors -----------------------------------------------------------------------------------------------

    def forward(self, pixels: torch.Tensor):
        z = self.encoder(pixels)  # (B, D, h, w)
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)  # (B·h·w, D), row-major (h, w)
        idx = self.quantizer.indices(flat.detach())  # (B·h·w,)
        q = self.quantizer.codebook[idx]  # (B·h·w, D)
        commit = self.beta * F.mse_loss(flat, q.detach())
        if self.training:
            self.quantizer.ema_update(flat.detach(), idx)
        q = flat + (q - flat).detach()  # straight-through
        recon = self.decoder(self._grid(q, pixels.shape[0]))
        return recon, commit, idx.view(pixels.shape[0], -1)

    def _grid(self, flat: torch.Tensor, batch: int) -> torch.Tensor:  # (B·h·w, D) → (B, D, h, w)
        return flat.view(batch, self.grid, self.grid, self.embed_dim).permute(0, 3, 1, 2)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, N)
        z = self.encoder(pixels)
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.embed_dim)
        return self.quantizer.indices(flat).view(pixels.shape[0], -1)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:  # (B, N) → (B, 3, S, S)
        q = self.quantizer.codebook[codes.reshape(-1)]  # (B·N, D)
        return self.decoder(self._grid(q, codes.shape[0]))

    # ---- folders -----------------------------------------------------------------------------------------------

    def config(self) -> dict:
        return {"image_tokenizer_type": self.tokenizer_type, "tokens_per_image": self.tokens_per_image,
                **{key: getattr(self, key) for key in CONFIG_KEYS}}

    @classmethod
    def matches_config(cls, config: dict) -> bool:
        return config.get("image_tokenizer_type") == "tiny-vq"

    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config(), indent=2) + "\n")
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TinyVQ:
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
            raise ValueError(f"{folder} is not a tiny-vq folder (needs config.json and model.safetensors)")
        config = json.loads((folder / "config.json").read_text())
        if not cls.matches_config(config):
            raise ValueError(f"{folder}/config.json is not a tiny-vq config "
                             f"(image_tokenizer_type {config.get('image_tokenizer_type')!r})")
        model = cls(**{key: config[key] for key in CONFIG_KEYS if key in config})
        state = load_file(str(folder / "model.safetensors"))
        expected = model.state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        wrong = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
        if missing or unexpected or wrong:
            raise ValueError(f"{folder}/model.safetensors does not match its config: missing {missing}, "
                             f"unexpected {unexpected}, wrong shape {wrong}")
        model.load_state_dict(state)
        model.quantizer.embed_sum.copy_(model.quantizer.codebook.detach())  # fresh EMA state for further training
        return model
