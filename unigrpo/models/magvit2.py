"""MAGVIT-v2 image tokenizer as used by MMaDA (Yang et al. 2025) and Show-o: the checkpoint ``showlab/magvitv2``.

MAGVIT-v2 is from Yu et al. 2023, "Language Model Beats Diffusion — Tokenizer is Key to Visual Generation"; its
lookup-free quantiser (LFQ) replaces the codebook search by the sign of each latent channel. This is the project's
own implementation with the module tree and parameter names of the published checkpoint, so its weights load
key for key (a VQGAN-style conv encoder/decoder around a 13-bit LFQ):

    encoder   conv_in 3→ch; levels l = 0…L−1 of ``num_res_blocks[l]`` ResNet blocks at ch·ch_mult[l] channels,
              a downsample (pad right/bottom 1, 3×3 conv stride 2) after every level but the last; mid = ResNet,
              attention, ResNet; GroupNorm → swish → conv_out → 1×1 quant_conv       (B, 3, S, S) → (B, C, h, w)
    quantize  LFQ: bit c = [z_c > 0]; code = Σ_c bit_c · 2^(C−1−c) (channel 0 is the most significant bit);
              a code decodes to ±1 per bit in the same order                        (B, C, h, w) ↔ (B, h·w)
    decoder   1×1 post_quant_conv; conv_in C→ch·dec_mult[−1]; mid; levels L−1…0 (``up.{l}``) of ResNet blocks
              at ch·dec_mult[l], nearest ×2 + 3×3 conv after every level but 0; GroupNorm → swish → conv_out → 3
              (no tanh)                                                             (B, C, h, w) → (B, 3, S, S)

Legend: B batch, S image side, L levels (5), h = w = S / 2^(L−1) (S/16), C latent channels = bits (13), N = h·w
tokens per image, row-major (h, w); GroupNorm(32, eps 1e-6); swish(x) = x·sigmoid(x); ResNet block =
norm1 → swish → conv1 → norm2 → swish → conv2, plus a 1×1 ``nin_shortcut`` when the channel count changes;
attention = one head over the h·w positions, 1×1 convs q, k, v, proj_out, scale C^−½, residual.

The published ``config.json`` carries no architecture (``{"_class_name": "MAGVITv2", …}``, written by a diffusers
``ConfigMixin``): every size is the default of ``Magvit2Config``. ``save_pretrained`` adds the sizes so small
instances (tests) round-trip. The quantiser's ``embedding`` [2^C, C] (±1 bit table) and ``power_vals`` [C]
(2^(C−1)…1) buffers are part of the state dict; decoding looks codes up in ``embedding`` and encoding weighs bits
by ``power_vals``, as the published code does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .image_tokenizer import ImageTokenizer, register_image_tokenizer

PUBLISHED_CLASS_NAME = "MAGVITv2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.safetensors", "pytorch_model.bin")


@dataclass
class Magvit2Config:
    """Sizes; the defaults are the published checkpoint's (MMaDA feeds it 512 px images: 32×32 = 1024 codes)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)  # encoder levels
    num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # decoder level l (run L−1 → 0)
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)
    z_channels: int = 13  # LFQ bits: codebook 2^13 = 8192
    num_groups: int = 32
    image_size: int = 512

    def __post_init__(self):
        for name in ("ch_mult", "num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks"):
            setattr(self, name, tuple(int(v) for v in getattr(self, name)))
        levels = len(self.ch_mult)
        if not (len(self.num_res_blocks) == len(self.decoder_ch_mult) == len(self.decoder_num_res_blocks) == levels):
            raise ValueError(f"ch_mult, num_res_blocks, decoder_ch_mult, decoder_num_res_blocks need one entry per "
                             f"level ({levels}); got {asdict(self)}")
        widths = {self.ch * m for m in self.ch_mult + self.decoder_ch_mult}
        if any(w % self.num_groups for w in widths):
            raise ValueError(f"num_groups {self.num_groups} must divide every width {sorted(widths)}")
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} must be divisible by {self.downsample}")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_dict(cls, config: dict) -> Magvit2Config:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in names})


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _norm(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """x (or nin_shortcut(x)) + conv2(swish(norm2(conv1(swish(norm1(x))))))."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in, groups), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = _norm(c_out, groups), nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) → (B, c_out, H, W)
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over positions with 1×1 conv projections; residual."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = _norm(c, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c, H, W) → same
        b, c, hh, ww = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).reshape(b, 1, c, hh * ww).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, c), scale c^−½
        return x + self.proj_out(out.transpose(2, 3).reshape(b, c, hh, ww))


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c, H, W) → (B, c, H/2, W/2)
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c, H, W) → (B, c, 2H, 2W)
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(c: int, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1, mid.attn_1, mid.block_2 = ResnetBlock(c, c, groups), AttnBlock(c, groups), ResnetBlock(c, c, groups)
    return mid


def _run_mid(mid: nn.Module, h: torch.Tensor) -> torch.Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


def _level(c_in: int, c_out: int, n_blocks: int, groups: int) -> nn.Module:
    level = nn.Module()
    level.block = nn.ModuleList(ResnetBlock(c_in if j == 0 else c_out, c_out, groups) for j in range(n_blocks))
    return level


class Encoder(nn.Module):
    def __init__(self, cfg: Magvit2Config):
        super().__init__()
        g, widths = cfg.num_groups, [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        for l, (c_in, c_out) in enumerate(zip([cfg.ch] + widths, widths)):
            level = _level(c_in, c_out, cfg.num_res_blocks[l], g)
            if l != len(widths) - 1:
                level.downsample = Downsample(c_out)
            self.down.append(level)
        self.mid = _mid(widths[-1], g)
        self.norm_out = _norm(widths[-1], g)
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, C, S/16, S/16)
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.conv_out(swish(self.norm_out(_run_mid(self.mid, h))))
        return self.quant_conv(h)


class Decoder(nn.Module):
    def __init__(self, cfg: Magvit2Config):
        super().__init__()
        g, widths = cfg.num_groups, [cfg.ch * m for m in cfg.decoder_ch_mult]
        self.post_quant_conv = nn.Conv2d(cfg.z_channels, cfg.z_channels, 1)
        self.conv_in = nn.Conv2d(cfg.z_channels, widths[-1], 3, padding=1)
        self.mid = _mid(widths[-1], g)
        levels = [None] * len(widths)
        for l in reversed(range(len(widths))):  # channels flow from the last level down to level 0
            c_in = widths[min(l + 1, len(widths) - 1)]
            levels[l] = _level(c_in, widths[l], cfg.decoder_num_res_blocks[l], g)
            if l != 0:
                levels[l].upsample = Upsample(widths[l])
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(widths[0], g)
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) → (B, 3, 16h, 16w)
        h = _run_mid(self.mid, self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class LookupFreeQuantizer(nn.Module):
    """C-bit LFQ: sign per channel; channel 0 is the most significant bit of the code."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits, self.codebook_size = bits, 2 ** bits
        powers = 2 ** torch.arange(bits - 1, -1, -1)  # [C] long: 2^(C−1) … 1
        table = (torch.arange(self.codebook_size)[:, None] >> torch.arange(bits - 1, -1, -1)) & 1  # [2^C, C]
        self.register_buffer("embedding", table.float() * 2 - 1)
        self.register_buffer("power_vals", powers)

    def quantize(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) → ±1, same shape
        return torch.where(z > 0, 1.0, -1.0).to(z.dtype)

    def indices(self, z: torch.Tensor) -> torch.Tensor:  # (B, C, h, w) → (B, h·w) long, row-major
        bits = (z > 0).long()
        return (bits * self.power_vals.long().view(1, -1, 1, 1)).sum(1).flatten(1)

    def dequantize(self, codes: torch.Tensor, h: int, w: int) -> torch.Tensor:  # (B, h·w) → (B, C, h, w) ±1
        return self.embedding[codes].view(codes.shape[0], h, w, self.bits).permute(0, 3, 1, 2).contiguous()


@register_image_tokenizer("magvitv2")
class Magvit2(ImageTokenizer):
    """MMaDA's MAGVIT-v2 tokenizer: (B, 3, S, S) in [−1, 1] ↔ (B, (S/16)²) codes in [0, 8192)."""

    def __init__(self, config: Magvit2Config | None = None, **overrides):
        super().__init__()
        cfg = replace(config, **overrides) if config is not None else Magvit2Config(**overrides)
        self.config = cfg
        self.encoder, self.decoder = Encoder(cfg), Decoder(cfg)
        self.quantize = LookupFreeQuantizer(cfg.z_channels)
        self.codebook_size = 2 ** cfg.z_channels
        self.image_size = cfg.image_size
        self.grid = cfg.image_size // cfg.downsample
        self.tokens_per_image = self.grid ** 2

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:  # (B, 3, S, S) → (B, N)
        self.check_pixels(pixels)
        z = self.encoder(pixels.to(self.encoder.conv_in.weight.dtype))  # (B, C, h, w)
        return self.quantize.indices(z)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:  # (B, N) → (B, 3, S, S)
        self.check_codes(codes)
        z = self.quantize.dequantize(codes.long(), self.grid, self.grid)  # (B, C, h, w) ±1
        return self.decoder(z.to(self.decoder.conv_in.weight.dtype))

    # ---- folders -----------------------------------------------------------------------------------------------

    @classmethod
    def matches_config(cls, config: dict) -> bool:
        return config.get("_class_name") == PUBLISHED_CLASS_NAME or config.get("image_tokenizer_type") == "magvitv2"

    def save_pretrained(self, folder: str | Path) -> Path:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"_class_name": PUBLISHED_CLASS_NAME, "image_tokenizer_type": "magvitv2", **asdict(self.config)}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, image_size: int | None = None) -> Magvit2:
        """Load ``config.json`` + weights; ``image_size`` overrides the config's (the network is convolutional)."""
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder} is not a MAGVIT-v2 folder (no config.json)")
        config = json.loads((folder / "config.json").read_text())
        if not cls.matches_config(config):
            raise ValueError(f"{folder}/config.json is not a MAGVIT-v2 config (_class_name "
                             f"{config.get('_class_name')!r}, image_tokenizer_type "
                             f"{config.get('image_tokenizer_type')!r})")
        if image_size is not None:
            config = {**config, "image_size": image_size}
        model = cls(Magvit2Config.from_dict(config))
        state = _read_weights(folder)
        _check_state(state, model.state_dict(), folder)
        model.load_state_dict(state)
        return model


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
    raise ValueError(f"{folder} has no MAGVIT-v2 weights (one of {', '.join(WEIGHT_FILES)})")


def _check_state(state: dict, expected: dict, folder: Path) -> None:
    """One ValueError naming every missing, unexpected and mis-shaped tensor."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
             for k in sorted(set(state) & set(expected)) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{folder} weights do not match the MAGVIT-v2 architecture of its config.json: "
                         f"missing {_listing(missing)}; unexpected {_listing(unexpected)}; "
                         f"wrong shape {_listing(wrong)}")


def _listing(items: list[str], limit: int = 12) -> str:
    if not items:
        return "none"
    more = f" … and {len(items) - limit} more" if len(items) > limit else ""
    return "[" + ", ".join(items[:limit]) + "]" + more
