"""One LoRA UniGRPO step at real size on one GPU: peak memory, seconds per phase, tokens/s, MFU (issue #9).

    python benchmarks/gpu_smoke.py                      # CUDA: random-init LLaDA-8B shape, bf16 (< 2 minutes)
    python benchmarks/gpu_smoke.py --shape micro        # CPU, seconds: the same code path at test size

The step is composed from the library's pieces exactly as the trainer's outline runs them, without the ``Trainer``
(so it needs neither TRL nor datasets on the GPU machine): rollout (the default fast sampler: dual KV cache +
threshold 0.9; gen 256, block 32, 128 steps max) → a stand-in reward → group advantages → one noised view per
answer (Algorithm 1's first ratio) → θ_old log-probs (no grad) → policy log-probs with grad → clipped surrogate
(``grpo`` normalisation) → backward → AdamW on the LoRA tensors. G = 4 answers to one 64-token prompt.
MFU of the training forward + backward: LoRA computes no gradient for the frozen weights, so its model FLOPs are
≈ 4 · N · tokens (2 forward + 2 for the input gradients; attention's own FLOPs left out), against the card's dense
bf16 peak (H100 / H200 SXM: 989 TFLOPS). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rollouts import SamplerConfig, generate_text
from unigrpo.advantages import group_advantages
from unigrpo.likelihood import UniGRPOEstimator, answer_token_logps
from unigrpo.loss import grpo_normalise, per_token_loss
from unigrpo.masking import loss_eligible_positions
from unigrpo.models import LORA_TARGET_MODULES, LLaDAConfig, LLaDAModelLM

SHAPES = {
    "llada-8b": dict(mask_token_id=126336, eos_token_id=126081, pad_token_id=126081),  # LLaDAConfig's defaults
    "micro": dict(d_model=32, n_heads=2, n_kv_heads=2, n_layers=2, mlp_hidden_size=64, vocab_size=128,
                  embedding_size=128, mask_token_id=127, eos_token_id=2, pad_token_id=2),
}
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}


class Phases:
    """Wall seconds per named phase, synchronised on CUDA."""

    def __init__(self, device):
        self.device, self.seconds = device, {}

    def __call__(self, name):
        phases = self

        class Timer:
            def __enter__(self):
                phases.sync()
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                phases.sync()
                phases.seconds[name] = round(time.perf_counter() - self.start, 3)

        return Timer()

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def build_policy(shape: str, device: torch.device):
    from peft import LoraConfig

    from unigrpo.models.lora import apply_peft

    config = LLaDAConfig(**SHAPES[shape])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with device:
        model = LLaDAModelLM(config)
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    model = apply_peft(model, LoraConfig(r=16, lora_alpha=32, target_modules=LORA_TARGET_MODULES))
    return model, config, params


def smoke(shape: str = "llada-8b", device: str = "cuda", G: int = 4, gen: int = 256, seed: int = 0) -> dict:
    device = torch.device(device)
    torch.manual_seed(seed)
    start = time.perf_counter()
    model, config, params = build_policy(shape, device)
    build_s = time.perf_counter() - start
    timer, mask_id = Phases(device), config.mask_token_id
    low = min(100, config.vocab_size // 4)
    prompt = torch.randint(low, config.vocab_size - low, (1, 64), generator=torch.Generator().manual_seed(seed))
    prompt = prompt.to(device).repeat(G, 1)  # (G, 64): one prompt, G answers
    sampler = SamplerConfig(gen_length=gen, block_length=32, steps=gen // 2, temperature=1.0, cache="dual",
                            threshold=0.9)
    generator = torch.Generator(device=device).manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    model.eval()
    with timer("rollout"):
        out = generate_text(model, prompt, None, mask_token_id=mask_id, eos_token_id=config.eos_token_id,
                            config=sampler, generator=generator)
    completion = out.completion_ids  # (G, L)
    rewards = (completion % 7 == 0).float().mean(dim=1)  # a stand-in reward with spread within the group
    advantages, _ = group_advantages(rewards.cpu(), G)
    advantages = advantages.to(device)
    eligible = loss_eligible_positions(completion, config.eos_token_id)
    view = UniGRPOEstimator().noise(prompt, None, completion, eligible, torch.full((G,), 0.5), mask_id,
                                    torch.Generator().manual_seed(seed + 1))
    with timer("old_logps"), torch.no_grad():
        old_logps = answer_token_logps(model, view, completion).float()

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    with timer("policy_forward"):
        logps = answer_token_logps(model, view, completion).float()
    loss_tokens, _, _ = per_token_loss(logps, old_logps, None, advantages[view.answer_index][:, None], 0.2, 0.2,
                                       0.0)
    loss = grpo_normalise(loss_tokens, view.score_mask, view.answer_index, G, completion.shape[1])
    with timer("backward"):
        loss.backward()
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with timer("optimizer_step"):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    moved = max((p.detach() - lora[n]).abs().max().item() for n, p in model.named_parameters() if n in lora)
    frozen_grads = [n for n, p in model.named_parameters() if not p.requires_grad and p.grad is not None]

    tokens = view.input_ids.numel()
    train_s = timer.seconds["policy_forward"] + timer.seconds["backward"]
    result = {
        "shape": shape, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "params": params, "build_s": round(build_s, 2), "G": G, "gen_length": gen, "seconds": timer.seconds,
        "rollout_forwards": out.forwards, "rollout_tokens_per_s": round(G * gen / timer.seconds["rollout"], 1),
        "train_tokens": tokens, "loss": loss.item(), "old_logp_mean": old_logps[view.score_mask].mean().item(),
        "ratio_at_start": float((logps - old_logps).detach()[view.score_mask].abs().max().exp()),
        "lora_tensors": len(lora), "lora_max_update": moved, "frozen_params_with_grad": len(frozen_grads),
    }
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in result["device"]), None)
    if peak:
        result["mfu_train"] = round(4 * params * tokens / train_s / peak, 4)
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="llada-8b", choices=sorted(SHAPES))
    parser.add_argument("--device", default=None, help="default: cuda for llada-8b, cpu for micro")
    parser.add_argument("--G", type=int, default=4)
    parser.add_argument("--gen", type=int, default=256)
    args = parser.parse_args()
    device = args.device or ("cuda" if args.shape == "llada-8b" else "cpu")
    smoke(args.shape, device, args.G, args.gen)  # warm-up (CUDA kernels, allocator)
    print(json.dumps(smoke(args.shape, device, args.G, args.gen)))


if __name__ == "__main__":
    main()
