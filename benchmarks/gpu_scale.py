"""Real-size costs on one GPU: the samplers on a random-init MMaDA-8B-shaped model (bf16) and MAGVIT-v2 at 512 px.

    python benchmarks/gpu_scale.py          # needs a CUDA GPU with ~40 GB free; ~3 minutes

Random weights: speed does not depend on them (the samplers run a fixed number of steps). Figures: text sampler
(gen 256, block 32, 128 steps = 2 tokens/step, batch 8, LLaDA's published settings), t2i image sampler (1024 codes,
16 MaskGIT steps, CFG w = 3.5 → 2 × batch per forward, batch 8), MAGVIT-v2 encode / decode of 512 px images.
One warm-up, then timed runs synchronised with ``torch.cuda.synchronize``; one JSON line at the end.
"""

from __future__ import annotations

import json
import time

import torch

from rollouts import ImageSamplerConfig, SamplerConfig, generate_image_codes, generate_text
from unigrpo.models import MMadaConfig, MMadaModelLM
from unigrpo.models.magvit2 import Magvit2

TEXT_VOCAB, MASK, EOS = 126349, 126336, 126081  # MMaDA-8B: len(tokenizer), <|mdm_mask|>, <|endoftext|>


def timed(fn, repeats: int = 1) -> float:
    fn()  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def time_samplers(device, B: int) -> tuple[int, float, float, float]:
    """(parameters, build seconds, text batch seconds, t2i batch seconds) of the 8B-shaped model, freed on return."""
    start = time.perf_counter()
    torch.set_default_dtype(torch.bfloat16)
    with device:
        model = MMadaModelLM(MMadaConfig(mask_token_id=MASK, eos_token_id=EOS, pad_token_id=EOS)).eval()
    torch.set_default_dtype(torch.float32)
    build_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator(device=device).manual_seed(0)
    prompt = torch.randint(1000, 100000, (B, 64), device=device)
    text_cfg = SamplerConfig(gen_length=256, block_length=32, steps=128, temperature=1.0)
    text_s = timed(lambda: generate_text(model, prompt, None, mask_token_id=MASK, eos_token_id=EOS,
                                         config=text_cfg, generator=g))

    caption = torch.randint(1000, 100000, (B, 40), device=device)
    uncond = torch.randint(1000, 100000, (B, 40), device=device)
    suffix = torch.full((B, 1), 126085, device=device)
    image_cfg = ImageSamplerConfig(steps=16, temperature=1.0, cfg_scale=3.5, mode="maskgit")  # as RESULTS measured
    image_s = timed(lambda: generate_image_codes(model, caption, None, suffix, num_codes=1024,
                                                 code_offset=TEXT_VOCAB, codebook_size=8192, mask_token_id=MASK,
                                                 config=image_cfg, unconditional_ids=uncond, generator=g))
    return params, build_s, text_s, image_s


def main() -> None:
    device = torch.device("cuda")
    torch.manual_seed(0)
    B = 8
    params, build_s, text_s, image_s = time_samplers(device, B)
    torch.cuda.empty_cache()

    with device:
        vq = Magvit2().eval()
    pixels = torch.rand(B, 3, 512, 512, device=device) * 2 - 1
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        encode_s = timed(lambda: vq.encode_pixels(pixels), repeats=3)
        codes = vq.encode_pixels(pixels)
        decode_s = timed(lambda: vq.decode_codes(codes), repeats=3)

    result = {
        "device": torch.cuda.get_device_name(), "params": params, "build_s": round(build_s, 1),
        "text_batch_s": round(text_s, 2), "text_tokens_per_s": round(B * 256 / text_s, 1),
        "t2i_batch_s": round(image_s, 2), "t2i_s_per_image": round(image_s / B, 3),
        "magvit_encode_ms_per_image": round(1000 * encode_s / B, 2),
        "magvit_decode_ms_per_image": round(1000 * decode_s / B, 2),
        "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
