"""Fast rollouts against the plain sampler, side by side on the same model and prompts (docs/design.md §4).

    .venv/bin/python benchmarks/rollout_speed.py                  # CPU, ≈ 8 minutes: the confident model (copy part)
    .venv/bin/python benchmarks/rollout_speed.py --parts copy,tiny,large,rl      # every part, ≈ 25 minutes
    python benchmarks/rollout_speed.py --parts large --large llada-8b --device cuda   # GPU: 8B shape in bf16

Parts:
  copy   (default) the shipped confident model ``tiny-copy-sft`` on held-out rows of the built-in ``copy`` task
         (answers of 64–200 digits, then EOS padding) at gen 256, block 32, 256 steps (one token a step for the
         plain sampler), greedy, batches of 8: tokens/s, forwards, row-forwards, tokens committed per forward,
         exact match with the plain answers and task accuracy (exact answer) of plain, plain + early finish, dual
         cache, dual + threshold 0.9 (with and without early finish, both threshold rules).
  tiny   the shipped ``tiny-arith-sft`` on 500 held-out prompts at its own sampler (L = block = steps = 6,
         temperature 0; ``--tiny-gen`` 24 gives 4 blocks of 6): tokens/s (median of 5 runs) and task accuracy.
  large  a random-init model (``12x768``: 12 layers × d 768, vocab 32768, ≈ 164 M parameters; or ``llada-8b``) at
         gen 256, block 32, 128 steps, batch 4 × 64-token prompts. Random weights are never confident, so threshold
         decoding cannot fire there: its speed-up is the cache's (and early finish's never: nothing is decided).
  rl     seconds per optimizer step of the default recipe's shapes (B 16 × G 8, μ 2), plain vs fast rollouts.
Tokens/s counts answer-canvas positions (B × L per batch; early finish fills the skipped ones with EOS, so every
setting returns the same canvas). The last line is one JSON object: ``model``, ``speedup`` (the best setting's
tokens/s ÷ the plain sampler's, on the copy part; best = the fastest whose accuracy is within 1 point of plain's,
else the fastest) and ``accuracy_delta`` (its accuracy minus plain's, in points).
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
    "dual + threshold 0.9 (fast_dllm rule) + early finish": dict(cache="dual", threshold=0.9,
                                                                 threshold_rule="fast_dllm", early_finish=True),
}
COPY_SETTINGS = ("plain", "plain + early finish", "dual cache", "dual + threshold 0.9",
                 "dual + threshold 0.9 + early finish", "dual + threshold 0.9 (fast_dllm rule) + early finish")
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


def copy_part(model_name: str, rows: int, batch: int, gen: int, block: int, settings) -> list[dict]:
    """Every setting on the same held-out copy rows, ``batch`` rows at a time: summed seconds, forwards and
    row-forwards over the batches, exact match with the plain answers, exact-answer accuracy."""
    from rollouts import tokenize_prompts
    from unigrpo.data.long_answers import make_copy_dataset
    from unigrpo.models import load_model, load_tokenizer, resolve_model_path

    path = resolve_model_path(model_name)
    model, tok = load_model(path).eval(), load_tokenizer(path)
    data = make_copy_dataset("test", limit=rows)
    batches = [data.select(range(first, min(first + batch, len(data)))) for first in range(0, len(data), batch)]
    encoded = [tokenize_prompts(tok, list(b["prompt"])) for b in batches]
    base = dict(gen_length=gen, block_length=block, steps=gen, temperature=0.0)
    print(f"{model_name}: {len(data)} held-out copy rows in batches of {batch}, gen {gen}, block {block}, {gen} steps, "
          f"greedy, {torch.get_num_threads()} threads")
    with torch.no_grad():  # warm-up: one forward at the benchmark's shape
        ids = encoded[0][0]
        model(torch.cat([ids, torch.full((ids.shape[0], gen), tok.mask_token_id)], 1))
    rows_out, plain_ids = [], None
    for name in settings:
        config = SamplerConfig(**base, **SETTINGS[name])
        seconds, forwards, row_forwards, committed, completions = 0.0, 0, 0, 0.0, []
        for ids, mask in encoded:
            start = time.perf_counter()
            with torch.no_grad():
                out = generate_text(model, ids, mask, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                                    config=config)
            seconds += time.perf_counter() - start
            forwards += out.forwards
            row_forwards += int(out.stats.row_forwards)
            committed += float(out.stats.committed)
            completions.append(out.completion_ids)
        completions = torch.cat(completions)
        plain_ids = completions if plain_ids is None else plain_ids
        texts = tok.batch_decode(completions, skip_special_tokens=True)
        correct = sum(text.strip() == gold for text, gold in zip(texts, list(data["answer"])))
        rows_out.append({"setting": name, "seconds": round(seconds, 2), "tokens_per_s": round(len(data) * gen / seconds, 1),
                         "forwards": forwards, "row_forwards": row_forwards,
                         "tokens_per_forward": round(committed / max(row_forwards, 1), 2),
                         "exact_match": round((completions == plain_ids).all(1).float().mean().item(), 3),
                         "accuracy": round(100 * correct / len(data), 1)})
        print(f"  {name}: {seconds:.2f} s, {forwards} forwards, accuracy {rows_out[-1]['accuracy']}%", flush=True)
    for row in rows_out:
        row["speedup"] = round(rows_out[0]["seconds"] / row["seconds"], 2)
    return rows_out


def best_setting(rows: list[dict], max_loss_points: float = 1.0) -> dict:
    """The fastest setting whose accuracy is within ``max_loss_points`` of plain's (the first row), else the
    fastest."""
    fast = rows[1:]
    within = [r for r in fast if r["accuracy"] >= rows[0]["accuracy"] - max_loss_points]
    return max(within or fast, key=lambda r: r["tokens_per_s"])


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
    parser.add_argument("--parts", default="copy", help="comma-separated: copy, tiny, large, rl")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="tiny-copy-sft", help="the copy part's model (folder or shipped name)")
    parser.add_argument("--rows", type=int, default=32, help="held-out copy rows (the copy part)")
    parser.add_argument("--batch", type=int, default=8, help="rows per sampler call (the copy part)")
    parser.add_argument("--gen", type=int, default=256, help="answer canvas of the copy part")
    parser.add_argument("--block", type=int, default=32, help="block length of the copy part")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on CPU")
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
    torch.set_num_threads(args.threads) if args.device == "cpu" else None
    summary = {}
    if "copy" in parts:
        copy = copy_part(args.model, args.rows, args.batch, args.gen, args.block, COPY_SETTINGS)
        print_table(f"confident model {args.model}, {args.rows} rows, batch {args.batch}, gen {args.gen}", copy)
        best = best_setting(copy)
        summary.update(model=args.model, rows=args.rows, batch=args.batch, gen=args.gen, threads=args.threads,
                       best_setting=best["setting"], speedup=best["speedup"],
                       accuracy_plain=copy[0]["accuracy"], accuracy_best=best["accuracy"],
                       accuracy_delta=round(best["accuracy"] - copy[0]["accuracy"], 1),
                       tokens_per_s_plain=copy[0]["tokens_per_s"], tokens_per_s_best=best["tokens_per_s"],
                       tokens_per_forward_best=best["tokens_per_forward"], exact_match_best=best["exact_match"])
    if "tiny" in parts:
        chosen = [name for name in SETTINGS if name in {"plain", BEST, *args.tiny_settings.split(",")}]
        tiny = tiny_part(args.tiny_prompts, args.tiny_gen, chosen)
        print_table(f"tiny arithmetic model, gen {args.tiny_gen}", tiny)
        by_name = {row["setting"]: row for row in tiny}
        summary["tiny_accuracy_plain"] = by_name["plain"]["accuracy"]
        summary["tiny_accuracy_best"] = by_name[BEST]["accuracy"]
        summary["tiny_accuracy_delta"] = round(by_name[BEST]["accuracy"] - by_name["plain"]["accuracy"], 1)
        summary["tiny_speedup_best"] = by_name[BEST]["speedup"]
        summary["tiny_exact_match_best"] = by_name[BEST]["exact_match"]
    if "large" in parts:
        chosen = [name for name in SETTINGS if name in {"plain", BEST, *args.large_settings.split(",")}]
        large = large_part(args.large, torch.device(args.device), args.large_batch, args.large_steps,
                           args.large_gen, chosen)
        print_table(f"random-init {args.large}, gen {args.large_gen}", large)
        by_name = {row["setting"]: row for row in large}
        summary["large_model"], summary["large_gen"] = args.large, args.large_gen
        summary["large_speedup"] = by_name[BEST]["speedup"]
        summary["large_tokens_per_s_plain"] = by_name["plain"]["tokens_per_s"]
        summary["large_tokens_per_s_best"] = by_name[BEST]["tokens_per_s"]
        summary["large_exact_match_best"] = by_name[BEST]["exact_match"]
        if args.device == "cuda":
            summary["device"] = torch.cuda.get_device_name()
    if "rl" in parts:
        rl = rl_part(args.rl_steps)
        print_table("RL step of the default recipe's shapes (tiny-arith-sft, B 16 × G 8, μ 2)", rl)
        summary["rl_s_per_step_plain"], summary["rl_s_per_step_fast"] = (r["s_per_optimizer_step"] for r in rl)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
