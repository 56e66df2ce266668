"""MAGVIT-v2 (MMaDA's ``showlab/magvitv2``): published key structure, LFQ golden values, shapes, bad input.

The published state dict is rebuilt here independently of ``unigrpo.models.magvit2`` from the published
checkpoint's key layout (small widths, same keys) so a loader that drifts from the checkpoint fails.
"""

import json

import pytest
import torch
from PIL import Image

import unigrpo.models.magvit2  # noqa: F401  (registers "magvitv2")
from unigrpo.models.image_tokenizer import IMAGE_TOKENIZERS, load_image_tokenizer
from unigrpo.models.magvit2 import LookupFreeQuantizer, Magvit2, Magvit2Config

SMALL = {"ch": 16, "num_groups": 8, "image_size": 32}  # widths 16…64, 2×2 = 4 tokens per image
PUBLISHED_CONFIG = {"_class_name": "MAGVITv2", "_diffusers_version": "0.25.0"}  # no architecture keys


def published_state(ch: int, z: int = 13) -> dict[str, torch.Tensor]:
    """The published checkpoint's tensors (names and shapes), random values, at base width ``ch``."""
    state: dict[str, torch.Tensor] = {}

    def conv(name, c_out, c_in, k):
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.randn(c_out, c_in, k, k) * 0.05, torch.zeros(c_out)

    def norm(name, c):
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.ones(c), torch.zeros(c)

    def resnet(name, c_in, c_out):
        norm(f"{name}.norm1", c_in), conv(f"{name}.conv1", c_out, c_in, 3)
        norm(f"{name}.norm2", c_out), conv(f"{name}.conv2", c_out, c_out, 3)
        if c_in != c_out:
            conv(f"{name}.nin_shortcut", c_out, c_in, 1)

    def mid(name, c):
        resnet(f"{name}.block_1", c, c), resnet(f"{name}.block_2", c, c), norm(f"{name}.attn_1.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.attn_1.{p}", c, c, 1)

    conv("encoder.conv_in", ch, 3, 3)
    c = ch
    for l, (mult, n) in enumerate(zip((1, 2, 2, 4, 4), (4, 3, 4, 3, 4))):
        for j in range(n):
            resnet(f"encoder.down.{l}.block.{j}", c, ch * mult)
            c = ch * mult
        if l < 4:
            conv(f"encoder.down.{l}.downsample.conv", c, c, 3)
    mid("encoder.mid", c), norm("encoder.norm_out", c)
    conv("encoder.conv_out", z, c, 3), conv("encoder.quant_conv", z, z, 1)

    conv("decoder.post_quant_conv", z, z, 1), conv("decoder.conv_in", 4 * ch, z, 3), mid("decoder.mid", 4 * ch)
    c = 4 * ch
    for l, mult, n in ((4, 4, 3), (3, 2, 4), (2, 2, 3), (1, 1, 4), (0, 1, 4)):
        for j in range(n):
            resnet(f"decoder.up.{l}.block.{j}", c, ch * mult)
            c = ch * mult
        if l > 0:
            conv(f"decoder.up.{l}.upsample.conv", c, c, 3)
    norm("decoder.norm_out", c), conv("decoder.conv_out", 3, c, 3)

    bits = (torch.arange(2 ** z)[:, None] >> torch.arange(z - 1, -1, -1)) & 1
    state["quantize.embedding"] = bits.float() * 2 - 1
    state["quantize.power_vals"] = 2 ** torch.arange(z - 1, -1, -1)
    return state


def write_checkpoint(folder, state, config):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    return Magvit2(**SMALL).eval()


# ---- (1) the published key structure ------------------------------------------------------------------------


def test_published_layout_loads_through_load_image_tokenizer(tmp_path):
    state = published_state(SMALL["ch"])
    folder = write_checkpoint(tmp_path / "ckpt", state, {**PUBLISHED_CONFIG, **SMALL})
    tokenizer = load_image_tokenizer(folder)
    assert type(tokenizer) is Magvit2 and IMAGE_TOKENIZERS["magvitv2"] is Magvit2
    loaded = tokenizer.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("damage, named", [
    (lambda s: s.pop("decoder.up.3.block.0.nin_shortcut.weight"), "decoder.up.3.block.0.nin_shortcut.weight"),
    (lambda s: s.__setitem__("encoder.down.0.attn.0.q.weight", torch.zeros(1)), "encoder.down.0.attn.0.q.weight"),
    (lambda s: s.__setitem__("encoder.conv_out.weight", torch.zeros(12, 64, 3, 3)), "encoder.conv_out.weight"),
], ids=["missing", "unexpected", "mis-shaped"])
def test_bad_checkpoint_is_refused_naming_the_key(tmp_path, damage, named):
    state = published_state(SMALL["ch"])
    damage(state)
    folder = write_checkpoint(tmp_path / "bad", state, {**PUBLISHED_CONFIG, **SMALL})
    with pytest.raises(ValueError, match="do not match") as err:
        Magvit2.from_pretrained(folder)
    assert named in str(err.value)


def test_published_config_means_published_sizes_and_is_recognised():
    assert Magvit2Config.from_dict(PUBLISHED_CONFIG) == Magvit2Config()
    assert Magvit2.matches_config(PUBLISHED_CONFIG)
    assert not Magvit2.matches_config({"image_tokenizer_type": "tiny-vq"})


def test_save_pretrained_round_trip(tmp_path, small):
    folder = small.save_pretrained(tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "MAGVITv2" and config["ch"] == SMALL["ch"]
    again = load_image_tokenizer(folder)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.equal(again.encode_pixels(x), small.encode_pixels(x))


# ---- (2) shapes -----------------------------------------------------------------------------------------------


def test_encode_decode_shapes(small):
    assert (small.codebook_size, small.tokens_per_image, small.image_size) == (8192, 4, 32)
    with torch.no_grad():
        codes = small.encode_pixels(torch.rand(3, 3, 32, 32) * 2 - 1)
        assert codes.shape == (3, 4) and codes.dtype == torch.long
        assert 0 <= codes.min() and codes.max() < 8192
        assert small.decode_codes(codes).shape == (3, 3, 32, 32)
    images = small.decode(codes)
    assert len(images) == 3 and images[0].size == (32, 32)
    assert small.encode([Image.new("RGB", (48, 40), (200, 30, 30))]).shape == (1, 4)


# ---- (3) LFQ golden values ----------------------------------------------------------------------------------


def test_lfq_indices_follow_the_formula_channel_0_most_significant():
    lfq = LookupFreeQuantizer(13)
    latents = torch.full((4, 13), -0.5)
    latents[1, 0] = 2.0  # only the first channel → 2^12
    latents[2, 12] = 0.1  # only the last → 1
    latents[3] = torch.tensor([1, -1, 1, 0, 3, -2, -1, 1, 1, -1, 0.2, -0.3, 5.0])  # 0 counts as negative
    expected = [0, 4096, 1, 4096 + 1024 + 256 + 32 + 16 + 4 + 1]
    z = latents.T.reshape(1, 13, 2, 2)  # (B, C, h, w): the four vectors row-major
    assert lfq.indices(z).tolist() == [expected]
    assert torch.equal(lfq.power_vals, 2 ** torch.arange(12, -1, -1))


def test_lfq_decode_gives_the_bits_and_round_trips():
    lfq = LookupFreeQuantizer(13)
    z = lfq.dequantize(torch.tensor([[0, 4096, 1, 8191]]), 2, 2)  # (1, 13, 2, 2)
    vectors = z.reshape(13, 4).T
    assert torch.equal(vectors[0], -torch.ones(13)) and torch.equal(vectors[3], torch.ones(13))
    assert vectors[1].tolist() == [1.0] + [-1.0] * 12 and vectors[2].tolist() == [-1.0] * 12 + [1.0]
    codes = torch.randint(0, 8192, (3, 16))
    assert torch.equal(lfq.indices(lfq.dequantize(codes, 4, 4)), codes)
    latent = torch.randn(2, 13, 4, 4)
    assert torch.equal(lfq.dequantize(lfq.indices(latent), 4, 4), lfq.quantize(latent))


# ---- (4) the published size -------------------------------------------------------------------------------------


def test_default_config_has_the_published_tensors():
    with torch.device("meta"):
        model = Magvit2()
    state = model.state_dict()
    assert len(state) == 382 and model.tokens_per_image == 1024 and model.image_size == 512
    shapes = {
        "encoder.conv_in.weight": (128, 3, 3, 3), "encoder.conv_out.weight": (13, 512, 3, 3),
        "encoder.quant_conv.weight": (13, 13, 1, 1), "encoder.down.3.downsample.conv.weight": (512, 512, 3, 3),
        "encoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1), "decoder.conv_in.weight": (512, 13, 3, 3),
        "decoder.up.1.block.0.nin_shortcut.weight": (128, 256, 1, 1), "decoder.conv_out.weight": (3, 128, 3, 3),
        "quantize.embedding": (8192, 13), "quantize.power_vals": (13,),
    }
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    small_keys = set(published_state(8))
    assert set(state) == small_keys  # same structure at any width


# ---- (5) bad input ----------------------------------------------------------------------------------------------


def test_bad_input_is_refused(small):
    with pytest.raises(ValueError, match=r"\[0, 8192\)"):
        small.decode(torch.tensor([[0, 1, 2, 8192]]))
    with pytest.raises(ValueError, match="shape"):
        small.decode(torch.zeros(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        small.encode_pixels(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="RGB"):
        small.encode([Image.new("L", (32, 32))])
    with pytest.raises(ValueError, match="num_groups"):
        Magvit2(ch=12, num_groups=8)
