"""A deterministic 8-code image tokenizer for tests that need images but not a trained VQ model."""

import torch

from unigrpo.models.image_tokenizer import ImageTokenizer


class PatchColourTokenizer(ImageTokenizer):
    """8×8 images as 2×2 patches; a patch's code is 3 bits: whether its mean R, G, B are above the middle."""

    codebook_size = 8
    tokens_per_image = 4
    image_size = 8

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)  # gives the module a device

    def encode_pixels(self, pixels):  # (B, 3, 8, 8) → (B, 4)
        patches = torch.nn.functional.avg_pool2d(pixels, 4)  # (B, 3, 2, 2)
        bits = (patches > 0).long()
        return (bits[:, 0] * 4 + bits[:, 1] * 2 + bits[:, 2]).flatten(1)

    def decode_codes(self, codes):  # (B, 4) → (B, 3, 8, 8)
        bits = torch.stack([(codes // 4) % 2, (codes // 2) % 2, codes % 2], dim=1).float() * 2 - 1  # (B, 3, 4)
        return torch.nn.functional.interpolate(bits.view(-1, 3, 2, 2), scale_factor=4)
