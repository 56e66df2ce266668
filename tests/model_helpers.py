"""Helpers shared by the sampler tests."""

import torch

from unigrpo.models import load_model, load_tokenizer


def sharpened(folder, seed: int = 0):
    """(model, mask id, eos id): the model in ``folder`` with every weight matrix redrawn at std 2/sqrt(fan_in).

    At its init std (0.02) a random model is nearly uniform and gives every masked position almost the same
    confidence (ties at float precision) and the same argmax token, so order and token checks could not fail.
    Sharpened, confidences are well apart and predictions vary with position and prompt.
    """
    model, tok = load_model(folder).eval(), load_tokenizer(folder)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.copy_(torch.randn(weight.shape, generator=generator) * 2 / weight.shape[1] ** 0.5)
    return model, tok.mask_token_id, tok.eos_token_id
