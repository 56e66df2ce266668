"""The ImageReward scoring process. It runs in the ``image-reward`` environment (``unigrpo rewards setup
image-reward``), never in the trainer's: it imports only the standard library, torch, PIL and the ``ImageReward``
package — nothing from unigrpo — and is started as a script by ``rewards.image_reward.ImageRewardWorker``.

Protocol: one JSON object per line. The worker's stdout carries only the protocol (whatever libraries print goes
to stderr).
  worker → client, once loaded:  {"ready": true, "device": "cpu", "parameters": 471234567}
                    or, failing:  {"ready": false, "error": "…"}  and exit status 1
  client → worker:  {"id": 3, "prompts": ["a red circle", …], "images": ["<base64 PNG>", …], "batch_size": 8}
  worker → client:  {"id": 3, "scores": [0.41, …]}   or   {"id": 3, "error": "…"}
  client → worker:  {"shutdown": true}  (or end of input) → exit status 0

The score is ImageReward's (THUDM/ImageReward v1.0): BLIP ViT-L/16 image features cross-attended by the prompt's
BERT encoding (``padding="max_length"``, 35 tokens), the [CLS] feature through the MLP head, then standardised with
the published mean and std — ``ImageReward.score`` computed for a batch of (prompt, image) pairs at once.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import traceback

# The head's input is the [CLS] feature; these parts of the model must come from the checkpoint.
SCORING_PREFIXES = ("blip.visual_encoder.", "blip.text_encoder.", "mlp.")
MAX_TEXT_TOKENS = 35  # ImageReward.score's tokenizer max_length


def bert_tokenizer(source: str):
    """BLIP's text tokenizer (``init_tokenizer``) read from ``source``: a local folder with vocab.txt, or a name in
    the Hugging Face cache such as ``bert-base-uncased``."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(source)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    tokenizer.enc_token_id = tokenizer.additional_special_tokens_ids[0]
    return tokenizer


def load_image_reward(checkpoint: str, med_config: str, tokenizer: str, device: str):
    """ImageReward with its weights from ``checkpoint``; refuses a checkpoint missing any tensor that scoring uses."""
    import torch
    import ImageReward.models.BLIP.blip_pretrain as blip_pretrain

    # BLIP_Pretrain builds its tokenizer with a hub download of bert-base-uncased; give it the local one instead.
    blip_pretrain.init_tokenizer = lambda: bert_tokenizer(tokenizer)
    from ImageReward.ImageReward import ImageReward

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{checkpoint} is not a state dict of tensors (ImageReward.pt)")
    model = ImageReward(med_config=med_config, device=device)
    missing, unexpected = model.load_state_dict(state, strict=False)
    needed = [key for key in missing if key.startswith(SCORING_PREFIXES)]
    if needed:
        raise ValueError(f"{checkpoint} lacks {len(needed)} ImageReward tensors, e.g. {', '.join(needed[:5])}")
    if unexpected:
        raise ValueError(f"{checkpoint} has tensors ImageReward does not: {', '.join(unexpected[:5])}")
    return model.to(device).eval().requires_grad_(False)


def score_pairs(model, prompts: list[str], images: list, batch_size: int) -> list[float]:
    """ImageReward score of each (prompt, PIL image) pair, ``batch_size`` pairs per forward pass."""
    import torch

    scores = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            texts, pils = prompts[start : start + batch_size], images[start : start + batch_size]
            text = model.blip.tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_TEXT_TOKENS,
                                        return_tensors="pt").to(model.device)
            pixels = torch.stack([model.preprocess(im) for im in pils]).to(model.device)
            image_embeds = model.blip.visual_encoder(pixels)
            image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            hidden = model.blip.text_encoder(text.input_ids, attention_mask=text.attention_mask,
                                             encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts,
                                             return_dict=True).last_hidden_state
            rewards = model.mlp(hidden[:, 0, :].float()).squeeze(-1)
            scores.extend(((rewards - model.mean) / model.std).cpu().tolist())
    return scores


def decode_image(data: str):
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
    image.load()
    return image


def serve(model, requests, replies) -> None:
    """Answer scoring requests read from ``requests`` (lines) on ``replies`` until shutdown or end of input."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("shutdown"):
            return
        try:
            prompts, images = request["prompts"], [decode_image(d) for d in request["images"]]
            if len(prompts) != len(images):
                raise ValueError(f"{len(prompts)} prompts for {len(images)} images")
            batch_size = int(request.get("batch_size", 8))
            if batch_size < 1:
                raise ValueError(f"batch_size must be positive, got {batch_size}")
            reply = {"id": request.get("id"), "scores": score_pairs(model, prompts, images, batch_size)}
        except Exception as error:  # one bad request fails that request, not the worker
            reply = {"id": request.get("id"), "error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="ImageReward.pt (a state dict)")
    parser.add_argument("--med-config", required=True, help="BLIP text encoder config (med_config.json)")
    parser.add_argument("--tokenizer", required=True, help="folder with vocab.txt, or a cached hub name")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints go to stderr, not into the protocol
    try:
        model = load_image_reward(args.checkpoint, args.med_config, args.tokenizer, args.device)
    except Exception as error:
        traceback.print_exc()
        replies.write(json.dumps({"ready": False, "error": f"{type(error).__name__}: {error}"}) + "\n")
        replies.flush()
        return 1
    parameters = sum(p.numel() for p in model.parameters())
    replies.write(json.dumps({"ready": True, "device": args.device, "parameters": parameters}) + "\n")
    replies.flush()
    serve(model, sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
