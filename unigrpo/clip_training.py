"""A tiny CLIP (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"; built
with open_clip, Ilharco et al. 2021) trained on the synthetic shapes domain: the judge of the CPU text-to-image demo.

``shapes_clip_score`` is the demo's ``clip_score`` reward (``rewards.clip``: 100 · cos(image, text)) with the shipped
asset ``unigrpo/assets/tiny-shapes-clip`` (open_clip's ``local-dir`` format: ``open_clip_config.json`` +
``open_clip_model.safetensors``, fp16). A recipe names it as ``unigrpo.clip_training:shapes_clip_score``;
``load_shapes_clip_score(scale=...)`` builds one with other settings.

Architecture (a custom open_clip config, ``model_config``): a ViT on 32×32 pictures (8×8 patches → 16 tokens + CLS,
width 64, 3 layers, 2 heads; 166k parameters) and a causal text transformer (the OpenAI BPE bundled with open_clip,
16-token context, width 24, 2 layers, 2 heads), both projected to a 32-d joint space: 1.37M parameters, of which the
text tower's 49,408 × 24 token embedding holds 1.19M (hence fp16 on disk: 2.6 MiB).

Training: InfoNCE in both directions with a learnable temperature (CLIP's loss), AdamW, warmup + cosine schedule. A
batch holds distinct captions (``batch_size`` of the 90, no false negatives; 90 = every caption, so each one meets
all captions that differ from it in one attribute), each with a picture that ``render_shape`` draws afresh. All 90
captions are used, the 15 held out from the generator's training too: this model is the judge, not the generator.
The summary (``evaluate``, on pictures from a seed of its own) reports, per attribute, how often the matching caption
beats every caption that differs in that attribute alone, the score gap (matching − mean non-matching, 100·cos), and
the mean score by the number of correct attributes (0–3), which should rise with it: partial correctness pays.

The shipped asset was produced single-threaded with the defaults:

    .venv/bin/python -m unigrpo.clip_training --output unigrpo/assets/tiny-shapes-clip

(``--steps 1500 --batch-size 90 --lr 2e-3 --weight-decay 0.1 --seed 0``, towers as above; 121 s of training, 2 min
10 s in all, on one core of the 2-core dev machine; final loss 0.000, temperature 1/34). On 900 fresh pictures
(``evaluate(bundle, 10, seed=99)``): one-off accuracy colour 1.000, shape 0.999, background 1.000; gap 93.8; mean
score by #correct attributes 0: −24.2, 1: 11.3, 2: 47.1, 3: 92.4, rising for every picture.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import random
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from rewards.clip import ClipBundle, clip_scores, make_clip_score

from .data.shapes import all_triples, caption, render_shape

ASSET_DIR = Path(__file__).parent / "assets" / "tiny-shapes-clip"
CONFIG_NAME, WEIGHTS_NAME = "open_clip_config.json", "open_clip_model.safetensors"
EVAL_SEED = 4321
ATTRIBUTES = ("colour", "shape", "background")


def model_config(embed_dim: int = 32, patch_size: int = 8, vision_width: int = 64, vision_layers: int = 3,
                 text_width: int = 24, text_layers: int = 2, text_heads: int = 2, context_length: int = 16,
                 size: int = 32) -> dict:
    """open_clip's ``open_clip_config.json`` dict: ``model_cfg`` (towers) and ``preprocess_cfg`` (pixels → [−1, 1])."""
    return {
        "model_cfg": {
            "embed_dim": embed_dim,
            "vision_cfg": {"image_size": size, "patch_size": patch_size, "width": vision_width,
                           "layers": vision_layers, "head_width": 32},
            "text_cfg": {"context_length": context_length, "vocab_size": 49408, "width": text_width,
                         "heads": text_heads, "layers": text_layers},
        },
        "preprocess_cfg": {"size": size, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                           "interpolation": "bicubic", "resize_mode": "shortest"},
    }


def build_clip(config: dict, seed: int = 0) -> ClipBundle:
    """A randomly initialised open_clip model of ``config`` with its eval transform and tokenizer (on CPU)."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="unigrpo-clip-") as folder:
        (Path(folder) / CONFIG_NAME).write_text(json.dumps(config))
        model = open_clip.create_model(f"local-dir:{folder}", pretrained_text=False, device="cpu")
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    return ClipBundle(model=model, preprocess=preprocess, tokenizer=tokenizer, device=torch.device("cpu"))


def score_matrix(bundle: ClipBundle, images: list) -> torch.Tensor:
    """100 · cos(image, caption) of every picture with every one of the 90 captions (``all_triples`` order) → (N, 90)."""
    texts = [caption(*t) for t in all_triples()]
    flat = clip_scores(bundle, [im for im in images for _ in texts], texts * len(images), batch_size=256)
    return torch.tensor(flat).view(len(images), len(texts))


def evaluate(bundle: ClipBundle, per_caption: int = 2, seed: int = EVAL_SEED) -> dict:
    """Attribute accuracies, top-1, score gap and mean score by #correct attributes on fresh pictures of all 90.

    ``accuracy_<attribute>``: share of pictures whose caption scores above every caption differing in that attribute
    only; ``accuracy``: above every caption differing in one attribute; ``top1``: above all 89 others.
    """
    triples = all_triples()
    rng = random.Random(seed)
    truth = [t for t in triples for _ in range(per_caption)]
    scores = score_matrix(bundle, [render_shape(*t, rng=rng) for t in truth])  # (N, 90)
    same = torch.tensor([[[a == b for a, b in zip(t, u)] for u in triples] for t in truth])  # (N, 90, 3)
    n_correct = same.sum(-1)  # (N, 90)
    match = n_correct == 3
    own = scores[match]  # (N,)
    result = {}
    one_off = n_correct == 2
    for k, name in enumerate(ATTRIBUTES):
        rivals = scores.masked_fill(~(one_off & ~same[..., k]), -math.inf).amax(-1)  # (N,)
        result[f"accuracy_{name}"] = (own > rivals).float().mean().item()
    result["accuracy"] = (own > scores.masked_fill(~one_off, -math.inf).amax(-1)).float().mean().item()
    result["top1"] = (own > scores.masked_fill(match, -math.inf).amax(-1)).float().mean().item()
    result["gap"] = (own - scores.masked_fill(match, 0).sum(-1) / (~match).sum(-1)).mean().item()
    result["by_correct"] = [scores[n_correct == k].mean().item() for k in range(4)]
    per_image = torch.stack([scores.masked_fill(n_correct != k, 0).sum(-1) / (n_correct == k).sum(-1)
                             for k in range(4)], -1)  # (N, 4): mean score by #correct, per picture
    result["monotonic"] = (per_image.diff(dim=-1) > 0).all(-1).float().mean().item()
    return result


def format_summary(summary: dict) -> str:
    by = ", ".join(f"{k}: {v:.1f}" for k, v in enumerate(summary["by_correct"]))
    return (f"one-off accuracy {summary['accuracy']:.3f} (colour {summary['accuracy_colour']:.3f}, shape "
            f"{summary['accuracy_shape']:.3f}, background {summary['accuracy_background']:.3f}), top-1 "
            f"{summary['top1']:.3f}, gap {summary['gap']:.1f}; mean score by #correct attributes {{{by}}}, rising "
            f"for {summary['monotonic']:.1%} of the pictures")


def train_clip(output_dir: str | Path | None = None, steps: int = 1500, batch_size: int = 90, lr: float = 2e-3,
               weight_decay: float = 0.1, warmup: int = 100, seed: int = 0, config: dict | None = None,
               eval_per_caption: int = 2, progress: bool = True, verbose: bool = True) -> dict:
    """Train the tiny CLIP contrastively on freshly rendered shapes; save it to ``output_dir`` (unless None).

    Returns ``{"bundle" (ClipBundle), "config", "losses" (per step), "summary" (``evaluate`` plus ``seconds``)}``.
    Deterministic given ``seed`` (on one thread).
    """
    from tqdm.auto import tqdm

    triples = all_triples()
    if not 2 <= batch_size <= len(triples):
        raise ValueError(f"batch_size must be in [2, {len(triples)}] (distinct captions), got {batch_size}")
    config = config or model_config()
    bundle = build_clip(config, seed)
    model, preprocess = bundle.model.train().requires_grad_(True), bundle.preprocess
    rng = random.Random(seed)
    tokens = dict(zip(triples, bundle.tokenizer([caption(*t) for t in triples])))  # triple → (context,)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(step, steps) / steps)))
    target = torch.arange(batch_size)
    losses: list[float] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc="tiny-clip", disable=not progress)
    for step in bar:
        batch = rng.sample(triples, batch_size)  # distinct captions
        images = torch.stack([preprocess(render_shape(*t, rng=rng)) for t in batch])  # (B, 3, 32, 32)
        texts = torch.stack([tokens[t] for t in batch])  # (B, context)
        image_emb, text_emb, logit_scale = model(images, texts)  # (B, D), (B, D) unit norm; scalar exp(t)
        logits = logit_scale * image_emb @ text_emb.T  # (B images, B captions)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # CLIP's cap on the inverse temperature
        losses.append(loss.item())
        if step % 25 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{logit_scale.item():.1f}")
    model.eval().requires_grad_(False)
    seconds = round(time.perf_counter() - start, 1)
    summary = {**(evaluate(bundle, eval_per_caption) if eval_per_caption else {}), "seconds": seconds}
    if output_dir is not None:
        save_clip(bundle, config, output_dir)
    if verbose:
        report = format_summary(summary) if eval_per_caption else "not evaluated"
        print(f"tiny-clip: {steps} steps in {seconds} s, final loss {losses[-1]:.3f}; {report}"
              + (f"; saved to {output_dir}" if output_dir else ""))
    return {"bundle": bundle, "config": config, "losses": losses, "summary": summary}


def save_clip(bundle: ClipBundle, config: dict, output_dir: str | Path) -> Path:
    """Write ``open_clip_config.json`` and the fp16 ``open_clip_model.safetensors`` (open_clip's local-dir format)."""
    from safetensors.torch import save_file

    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in bundle.model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_NAME))
    return folder


def load_shapes_clip_score(scale: float = 1.0, device: str | None = None, folder: str | Path = ASSET_DIR):
    """The ``clip_score`` reward (``rewards.clip.make_clip_score``) of the tiny shapes CLIP in ``folder``."""
    folder = Path(folder)
    config = json.loads((folder / CONFIG_NAME).read_text())
    return make_clip_score(model_config=config, weights_path=folder / WEIGHTS_NAME, device=device, scale=scale)


@functools.lru_cache(maxsize=1)
def _shipped_reward():
    return load_shapes_clip_score()


def shapes_clip_score(prompts=None, completions=(), **kwargs) -> list[float | None]:
    """100 · cos(image, caption) by the shipped tiny shapes CLIP; None where no image is involved (built on first call)."""
    return _shipped_reward()(prompts=prompts, completions=completions, **kwargs)


shapes_clip_score.factory = load_shapes_clip_score  # reward_kwargs: {unigrpo.clip_training:shapes_clip_score: {scale: 0.1}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m unigrpo.clip_training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder to save the open_clip config and weights to")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=90, help="distinct captions per batch (at most 90)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embed-dim", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--vision-width", type=int, default=64)
    parser.add_argument("--vision-layers", type=int, default=3)
    parser.add_argument("--text-width", type=int, default=24)
    parser.add_argument("--text-layers", type=int, default=2)
    parser.add_argument("--text-heads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = model_config(args.embed_dim, args.patch_size, args.vision_width, args.vision_layers, args.text_width,
                          args.text_layers, args.text_heads)
    result = train_clip(args.output, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                        weight_decay=args.weight_decay, seed=args.seed, config=config)
    shipped = evaluate(load_shapes_clip_score(device="cpu", folder=args.output).load())
    size = sum(f.stat().st_size for f in Path(args.output).iterdir())
    print(f"reloaded through rewards.clip.make_clip_score ({size / 2**20:.2f} MiB): " + format_summary(shipped))
    return {**result, "reloaded": shipped}


if __name__ == "__main__":
    main()
