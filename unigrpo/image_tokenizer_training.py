"""Training the TinyVQ image tokenizer (VQ-VAE, van den Oord et al. 2017) on the synthetic shapes domain.

The tokenizer of the tests and the CPU text-to-image demo (``unigrpo.models.tiny_vq``) learns from pictures that
``unigrpo.data.shapes.render_shape`` draws afresh for every batch, from all 90 captions' (colour, shape, background)
triples: the tokenizer may see the held-out combinations, it is not the generative model. The loss is pixel MSE +
the commitment loss; AdamW on the conv weights, the codebook follows EMA cluster means, and codes unused for a while
restart at random encoder outputs. The summary reports MSE on a fixed validation set (2 pictures per caption, drawn
from a seed of its own), the codes it uses and their perplexity.

The shipped checkpoint ``unigrpo/assets/tiny-shapes-vq`` was produced with the defaults, single-threaded:

    .venv/bin/python -m unigrpo.image_tokenizer_training --output unigrpo/assets/tiny-shapes-vq

(``--steps 2500 --batch-size 32 --lr 4e-3 --seed 0 --size 32 --codebook-size 256 --embed-dim 16 --channels
32,48,48,48 --threads 1``): 255 s, about 4¼ minutes, on one core of the shared 2-core dev machine (load ≈ 1 from
other jobs); validation MSE 0.0081, 253/256 codes used, perplexity 198. The run is deterministic: rerunning the
command rewrites a byte-identical ``model.safetensors``. ``--grid /tmp/tiny_vq_recon.png`` also writes a PNG of
validation pictures, each above its reconstruction.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from .data.shapes import all_triples, render_shape
from .models.tiny_vq import TinyVQ

VALIDATION_SEED = 1234


def render_batch(triples: list[tuple[str, str, str]], size: int, rng: random.Random) -> torch.Tensor:
    """One picture per (colour, shape, background) → (B, 3, size, size) float in [−1, 1]."""
    arrays = np.stack([np.asarray(render_shape(c, s, b, size, rng)) for c, s, b in triples])  # (B, S, S, 3) uint8
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def validation_images(size: int = 32, per_caption: int = 2) -> torch.Tensor:
    """The fixed validation set: ``per_caption`` pictures of each of the 90 captions → (90·per_caption, 3, S, S)."""
    rng = random.Random(VALIDATION_SEED)
    return render_batch([t for t in all_triples() for _ in range(per_caption)], size, rng)


@torch.no_grad()
def evaluate(model: TinyVQ, pixels: torch.Tensor) -> dict:
    """Reconstruction MSE (in [−1, 1] units), codes used and the perplexity of their distribution on ``pixels``."""
    was_training = model.training
    model.eval()
    codes = model.encode_pixels(pixels)  # (B, N)
    recon = model.decode_codes(codes).clamp(-1, 1)  # (B, 3, S, S)
    model.train(was_training)
    counts = torch.bincount(codes.reshape(-1), minlength=model.codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    return {"mse": F.mse_loss(recon, pixels).item(), "codes_used": int((counts > 0).sum()),
            "perplexity": math.exp(-(p * p.log()).sum().item())}


def train_tiny_vq(output_dir: str | Path | None = None, steps: int = 2500, batch_size: int = 32, lr: float = 4e-3,
                  seed: int = 0, size: int = 32, channels: tuple[int, ...] = (32, 48, 48, 48), embed_dim: int = 16,
                  codebook_size: int = 256, beta: float = 0.25, warmup: int = 50, restart_every: int = 50,
                  restart_fraction: float = 0.03, progress: bool = True, verbose: bool = True) -> dict:
    """Train a TinyVQ on freshly rendered shapes; save it to ``output_dir`` (unless None).

    Returns ``{"model", "losses" (per step: MSE + commitment), "summary" (``evaluate`` on the validation set plus
    ``seconds``)}``. Deterministic given ``seed`` (on one thread). A code is dead when its EMA count falls below
    ``restart_fraction`` of the mean count; dead codes restart every ``restart_every`` steps.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    triples = all_triples()
    model = TinyVQ(size, channels, embed_dim, codebook_size, beta)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(step, steps) / steps))))
    val = validation_images(size)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="tiny-vq", disable=not progress)
    for step in bar:
        pixels = render_batch([rng.choice(triples) for _ in range(batch_size)], size, rng)  # (B, 3, S, S)
        if step == 0 or step % restart_every == 0:
            with torch.no_grad():
                flat = model.encoder(pixels).permute(0, 2, 3, 1).reshape(-1, embed_dim)  # (B·N, D)
            if step == 0:
                model.quantizer.init_from(flat.repeat(-(-codebook_size // flat.shape[0]), 1), generator)
            else:
                mean = model.quantizer.cluster_size.mean()
                model.quantizer.restart_dead(flat, restart_fraction * mean.item(), generator)
        recon, commit, _ = model(pixels)
        mse = F.mse_loss(recon, pixels)
        loss = mse + commit
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(mse=f"{mse.item():.4f}", commit=f"{commit.item():.4f}")
    model.eval()
    summary = {**evaluate(model, val), "seconds": round(time.perf_counter() - start, 1)}
    if output_dir is not None:
        model.save_pretrained(output_dir)
    if verbose:
        print(f"tiny-vq: {steps} steps in {summary['seconds']} s; validation MSE {summary['mse']:.5f}, "
              f"{summary['codes_used']}/{codebook_size} codes used (perplexity {summary['perplexity']:.1f}), "
              f"{model.tokens_per_image} tokens per image" + (f"; saved to {output_dir}" if output_dir else ""))
    return {"model": model, "losses": losses, "summary": summary}


@torch.no_grad()
def write_recon_grid(model: TinyVQ, path: str | Path, columns: int = 15, rows: int = 6, scale: int = 3) -> Path:
    """A PNG: ``rows`` pairs of lines, originals (validation pictures) above their reconstructions."""
    from PIL import Image

    pixels = validation_images(model.image_size, per_caption=1)[: columns * rows]  # (columns·rows, 3, S, S)
    recon = model.decode_codes(model.encode_pixels(pixels)).clamp(-1, 1)
    s = model.image_size
    sheet = Image.new("RGB", (columns * s, 2 * rows * s), (128, 128, 128))
    for i, (a, b) in enumerate(zip(pixels, recon)):
        r, c = divmod(i, columns)
        for j, x in enumerate((a, b)):
            tile = ((x + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
            sheet.paste(Image.fromarray(tile), (c * s, (2 * r + j) * s))
    path = Path(path)
    sheet.resize((sheet.width * scale, sheet.height * scale), Image.NEAREST).save(path)
    return path


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m unigrpo.image_tokenizer_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder to save the tokenizer to")
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--embed-dim", type=int, default=16)
    parser.add_argument("--channels", default="32,48,48,48",
                        help="conv widths per resolution, full size first; L+1 widths give 2^L downsampling")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--grid", default=None, help="also write a PNG of originals vs reconstructions here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = train_tiny_vq(args.output, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                           size=args.size, channels=tuple(int(c) for c in args.channels.split(",")),
                           embed_dim=args.embed_dim, codebook_size=args.codebook_size)
    if args.grid:
        print(f"reconstruction grid: {write_recon_grid(result['model'], args.grid)}")
    return result


if __name__ == "__main__":
    main()
