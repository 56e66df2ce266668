"""Fast rollouts against the plain sampler, side by side on the same model and prompts (docs/design.md §4, issue #7).

    .venv/bin/python benchmarks/rollout_speed.py                  # CPU, ≈ 17 minutes: all three parts
    python benchmarks/rollout_speed.py --parts large --large llada-8b --device cuda   # GPU: 8B shape in bf16

Settings: plain, prefix cache, dual cache, threshold 0.9, dual cache + threshold 0.9, dual cache + factor 1.0, and
early finish (issue #18: decided rows leave the batch, rows leave finished blocks) on plain and dual + threshold.
Parts:
  tiny   the shipped ``tiny-arith-sft`` on 500 held-out prompts at its own sampler (L = block = steps = 6,
         temperature 0; ``--tiny-gen`` 24 gives 4 blocks of 6, where early finish has answers to skip): tokens/s
         (median of 5 runs), model forwards, row-forwards, exact match with the plain answers, task accuracy.
  large  a random-init model (``12x768``: 12 layers × d 768, vocab 32768, ≈ 164 M parameters; or ``llada-8b``) at
         gen 256, block 32, 128 steps (LLaDA's 2 tokens/step), batch 4 × 64-token prompts: tokens/s, forwards,
         exact match.
         Random weights are never confident, so threshold decoding cannot fire there; its speed-up is the tiny
         model's.
  rl     seconds per optimizer step of the default recipe's shapes (B 16 × G 8, μ 2), plain vs fast rollouts.
Tokens/s counts answer-canvas positions (B × L per batch). Each setting: one warm-up (tiny) or one warm-up forward
(large), then timed. The last line is one JSON object with ``speedup`` (best setting vs plain on the large model
at gen 256) and ``accuracy_delta`` (that setting's task accuracy minus plain's on the tiny model, in points).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from rollouts import SamplerConfig, generate_text  # noqa: E402

SETTINGS = {  # early finish (on by default since #18) is off except where named, so rows compare with #7's figures
    "plain": dict(early_finish=False),
    "prefix cache": dict(cache="prefix", early_finish=False),
    "dual cache": dict(cache="dual", early_finish=False),
    "threshold 0.9": dict(threshold=0.9, early_finish=False),
    "dual + threshold 0.9": dict(cache="dual", threshold=0.9, early_finish=False),
    "dual + factor 1.0": dict(cache="dual", factor=1.0, early_finish=False),
    "plain + early finish": dict(early_finish=True),
    "dual + threshold 0.9 + early finish": dict(cache="dual", threshold=0.9, early_finish=True),
}
BEST = "dual + threshold 0.9"
LARGE_SHAPES = {
    "12x768": dict(d_model=768, n_layers=12, n_heads=12, n_kv_heads=12, mlp_hidden_size=3072, vocab_size=32768,
                   embedding_size=32768, mask_token_id=32767, eos_token_id=2, pad_token_id=2),
    "llada-8b": dict(mask_token_id=126336, eos_token_id=126081, pad_token_id=126081),  # LLaDAConfig's defaults
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_settings(model, ids, mask, base: dict, mask_id: int, eos_id: int, warm_up: str, repeats: int = 1,
                 settings=tuple(SETTINGS)) -> dict:
    """{setting: (median seconds of ``repeats`` runs, SamplerOutput)}; ``warm_up`` 'run' (one untimed run) or
    'forward' (one model forward)."""
    results = {}
    for name in settings:
        config = SamplerConfig(**base, **SETTINGS[name])
        generate = lambda: generate_text(model, ids, mask, mask_token_id=mask_id, eos_token_id=eos_id,  # noqa: E731
                                         config=config)
        if warm_up == "run":
            generate()
        else:
            with torch.no_grad():
                model(torch.cat([ids, torch.full((ids.shape[0], base["gen_length"]), mask_id, device=ids.device)], 1))
        times = []
        for _ in range(repeats):
            synchronize(ids.device)
            start = time.perf_counter()
            output = generate()
            synchronize(ids.device)
            times.append(time.perf_counter() - start)
        results[name] = (sorted(times)[len(times) // 2], output)
        print(f"  {name}: {results[name][0]:.2f} s, {output.forwards} forwards", flush=True)
    return results


def rows_of(results: dict, tokens: int, accuracy: dict | None = None) -> list[dict]:
    plain_s, plain = results["plain"]
    rows = []
    for name, (seconds, output) in results.items():
        row = {"setting": name, "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
               "speedup": round(plain_s / seconds, 2), "forwards": output.forwards,
               "row_forwards": int(output.stats.row_forwards),
               "exact_match": round((output.completion_ids == plain.completion_ids).all(1).float().mean().item(), 3)}
        if accuracy is not None:
            row["accuracy"] = accuracy[name]
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    keys = list(rows[0])
    print(f"\n{title}\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


def tiny_part(prompts: int, gen: int = 6, settings=tuple(SETTINGS)) -> list[dict]:
    from rewards.math_correctness import math_correctness
    from rollouts import tokenize_prompts
    from unigrpo.data.arith import make_arith_dataset
    from unigrpo.models import load_model, load_tokenizer, resolve_model_path
    from unigrpo.prompts import prompt_texts

    path = resolve_model_path("tiny-arith-sft")
    model, tok = load_model(path).eval(), load_tokenizer(path)
    data = make_arith_dataset("test", limit=prompts)
    ids, mask = tokenize_prompts(tok, prompt_texts([row["prompt"] for row in data], tok))
    base = dict(gen_length=gen, block_length=6, steps=gen, temperature=0.0)
    print(f"tiny-arith-sft, {len(data)} prompts, L = steps = {gen}, block 6, temperature 0")
    results = run_settings(model, ids, mask, base, tok.mask_token_id, tok.eos_token_id, warm_up="run", repeats=5,
                           settings=settings)
    accuracy = {}
    for name, (_, output) in results.items():
        texts = tok.batch_decode(output.completion_ids, skip_special_tokens=True)
        scores = math_correctness(None, texts, answer=[row["answer"] for row in data])
        accuracy[name] = round(100 * sum(s > 0 for s in scores) / len(scores), 1)
    return rows_of(results, ids.shape[0] * base["gen_length"], accuracy)


def large_part(shape: str, device: torch.device, batch: int, steps: int, gen: int, settings) -> list[dict]:
    from unigrpo.models import LLaDAConfig, LLaDAModelLM

    config = LLaDAConfig(**LARGE_SHAPES[shape])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with device:
        model = LLaDAModelLM(config).eval()
    torch.set_default_dtype(torch.float32)
    params = sum(p.numel() for p in model.parameters())
    ids = torch.randint(100, config.vocab_size - 100, (batch, 64), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    base = dict(gen_length=gen, block_length=32, steps=steps, temperature=0.0)
    print(f"\nrandom-init {shape} ({params / 1e6:.0f} M parameters, {dtype}, {device}), batch {batch}, prompt 64, "
          f"gen {gen}, block 32, {steps} steps")
    results = run_settings(model, ids, None, base, config.mask_token_id, config.eos_token_id, warm_up="forward",
                           settings=settings)
    return rows_of(results, batch * gen)


def rl_part(steps: int) -> list[dict]:
    from transformers import PrinterCallback

    from unigrpo.config import UniGRPOConfig
    from unigrpo.data import make_arith_dataset
    from unigrpo.models import resolve_model_path
    from unigrpo.trainer import UniGRPOTrainer

    rows = []
    plain = dict(kv_cache="none", confidence_threshold=None)
    for name, fast in (("plain", plain), (BEST, dict(kv_cache="dual", confidence_threshold=0.9))):
        config = UniGRPOConfig(
            output_dir="outputs/rollout_speed", num_generations=8, per_device_train_batch_size=128,
            num_iterations=2, max_completion_length=6, block_length=6, diffusion_steps=6, learning_rate=4e-5,
            max_steps=steps, logging_steps=1, disable_tqdm=True, report_to="none", seed=0, **fast,
        )
        trainer = UniGRPOTrainer(resolve_model_path("tiny-arith-sft"), ["math_correctness", "boxed_format"], config,
                                 make_arith_dataset("train", limit=steps * 8))
        trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the table below is the summary
        trainer.train()
        rollouts = [e["timing/rollout"] for e in trainer.state.log_history if "timing/rollout" in e]
        rows.append({"setting": name, "s_per_optimizer_step": round(trainer.state.log_history[-1]["train_runtime"]
                                                                     / steps, 3),
                     "rollout_s": round(sum(rollouts) / len(rollouts), 3)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="tiny,large,rl", help="comma-separated: tiny, large, rl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--large", default="12x768", choices=sorted(LARGE_SHAPES))
    parser.add_argument("--large-batch", type=int, default=4)
    parser.add_argument("--large-steps", type=int, default=128)
    parser.add_argument("--large-gen", type=int, default=256)
    parser.add_argument("--large-settings", default=",".join(n for n in SETTINGS if n != "plain + early finish"),
                        help=f"comma-separated subset of: {', '.join(SETTINGS)} (plain and the best are always run)")
    parser.add_argument("--tiny-prompts", type=int, default=500)
    parser.add_argument("--tiny-gen", type=int, default=6, help="answer canvas of the tiny part (a multiple of 6)")
    parser.add_argument("--tiny-settings", default=",".join(SETTINGS),
                        help="comma-separated subset of the settings (plain and the best are always run)")
    parser.add_argument("--rl-steps", type=int, default=20)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    torch.set_num_threads(2) if args.device == "cpu" else None
    summary = {}
    if "tiny" in parts:
        chosen = [name for name in SETTINGS if name in {"plain", BEST, *args.tiny_settings.split(",")}]
        tiny = tiny_part(args.tiny_prompts, args.tiny_gen, chosen)
        print_table(f"tiny arithmetic model, gen {args.tiny_gen}", tiny)
        by_name = {row["setting"]: row for row in tiny}
        summary["tiny_accuracy_plain"] = by_name["plain"]["accuracy"]
        summary["tiny_accuracy_best"] = by_name[BEST]["accuracy"]
        summary["accuracy_delta"] = round(by_name[BEST]["accuracy"] - by_name["plain"]["accuracy"], 1)
        summary["tiny_speedup_best"] = by_name[BEST]["speedup"]
        summary["tiny_exact_match_best"] = by_name[BEST]["exact_match"]
    if "large" in parts:
        chosen = [name for name in SETTINGS if name in {"plain", BEST, *args.large_settings.split(",")}]
        large = large_part(args.large, torch.device(args.device), args.large_batch, args.large_steps,
                           args.large_gen, chosen)
        print_table(f"random-init {args.large}, gen {args.large_gen}", large)
        by_name = {row["setting"]: row for row in large}
        summary["large_model"], summary["large_gen"] = args.large, args.large_gen
        summary["speedup"] = by_name[BEST]["speedup"]
        summary["large_tokens_per_s_plain"] = by_name["plain"]["tokens_per_s"]
        summary["large_tokens_per_s_best"] = by_name[BEST]["tokens_per_s"]
        summary["large_exact_match_best"] = by_name[BEST]["exact_match"]
        if args.device == "cuda":
            summary["device"] = torch.cuda.get_device_name()
    if "rl" in parts:
        rl = rl_part(args.rl_steps)
        print_table("RL step of the default recipe's shapes (tiny-arith-sft, B 16 × G 8, μ 2)", rl)
        summary["rl_s_per_step_plain"], summary["rl_s_per_step_fast"] = (r["s_per_optimizer_step"] for r in rl)
    print(json.dumps({"best_setting": BEST, **summary}))


if __name__ == "__main__":
    main()
