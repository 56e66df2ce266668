"""The 8B path end to end on one GPU (issue #17 part 3): the real ``UniGRPOTrainer`` on 8B / 1.5B shapes, one JSON line
per part and a summary, in ≤ 6 minutes on one H100 / H200.

    python benchmarks/gpu_e2e.py                  # CUDA: 8B-shaped LLaDA (random init, bf16) and a 1.5B shape
    python benchmarks/gpu_e2e.py --size test      # CPU, about a minute: the same code at test size (the test runs it)

Parts, each in its own process (its peak memory is its own; a failure stops only that part):
    lora    (a) UniGRPO steps with LoRA (r 128, α 64, dropout 0.05: the 8B LoRA recipes') on the 8B shape
    fsdp2   (b) full fine-tuning of the 1.5B shape under FSDP2, launched by ``accelerate launch --config_file
            recipes/accelerate/fsdp.yaml --num_processes 1`` (on CPU with ACCELERATE_USE_CPU=1 over gloo)
    zero3   (b) the same under DeepSpeed ZeRO-3 (recipes/accelerate/deepspeed_zero3.yaml): GPU and deepspeed only
    ray     (c) LoRA steps with ``rollout_backend: ray``, one worker with ``ray_num_gpus_per_worker: 1`` (0 on CPU)
A part that cannot run here prints ``"status": "skipped"`` and why; one that fails prints ``"status": "error"`` and
its last error line. Every part reports (d): seconds per phase and step from the trainer's ``timing/*`` metrics
(rollout, θ_old = ``logps``, policy forward and backward = ``update``, plus the optimizer step), tokens/s, MFU of the
update (model FLOPs / second / the card's dense bf16 peak: 6·N per token for full fine-tuning; 4·N with LoRA, whose
frozen weights get no weight gradient — ``mfu_update_6n`` gives the 6·N reading too), peak GPU memory
(``torch.cuda.max_memory_allocated``) against ``unigrpo.memory_plan.plan_memory`` when it is importable, and the
ten kernels that took longest in the last (profiled) step. Step 1 warms up (CUDA kernels, allocator); the figures
are means over the steps between it and the profiled last step. The summary line checks the update's MFU against
the goal of 35 %.

On the device machine (no network: the trainer's packages that its image lacks travel as wheels; torch,
transformers, accelerate and peft are there):
    bash benchmarks/gpu_e2e_pack.sh            # here, once: .whl/ (41 MB; with the repo 53 of the 64 MiB a call carries)
    device run, carry [".whl"]:  bash benchmarks/gpu_e2e_pack.sh --install && export PYTHONPATH=/tmp/site:$PWD &&
        PYTHONUNBUFFERED=1 python3 benchmarks/gpu_e2e.py | tee $OUT/gpu_e2e.jsonl     # not yet run on a GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("lora", "fsdp2", "zero3", "ray")
ACCELERATE_CONFIGS = {"fsdp2": "recipes/accelerate/fsdp.yaml", "zero3": "recipes/accelerate/deepspeed_zero3.yaml"}
STRATEGIES = {"lora": "ddp", "ray": "ddp", "fsdp2": "fsdp2", "zero3": "zero3"}  # memory plan's sharding strategy
SHAPES = {  # LLaDA architecture sizes; ids and the 113 real tokens come from the offline char tokenizer
    "8b": dict(d_model=4096, n_heads=32, n_layers=32, mlp_hidden_size=12288, vocab_size=126464,
               embedding_size=126464, max_sequence_length=4096, rope_theta=500000.0),  # LLaDA-8B
    "1.5b": dict(d_model=2048, n_heads=16, n_layers=20, mlp_hidden_size=5632, vocab_size=126464,
                 embedding_size=126464, max_sequence_length=4096, rope_theta=500000.0),  # 1.55 B parameters
    "test": {},  # the micro preset (d 32, 2 layers)
}
PART_SHAPES = {"gpu": {"lora": "8b", "ray": "8b", "fsdp2": "1.5b", "zero3": "1.5b"},
               "test": dict.fromkeys(PARTS, "test")}
SETTINGS = {  # per size: answers, canvas and sampler; μ = 2, four optimizer steps (rollouts at steps 1 and 3)
    "gpu": dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=256, block_length=32,
                diffusion_steps=128),  # the 8B recipes' canvas; 2 prompts × G 4 per step
    "test": dict(num_generations=4, per_device_train_batch_size=8, max_completion_length=8, block_length=8,
                 diffusion_steps=8),
}
LORA = dict(r=128, lora_alpha=64, lora_dropout=0.05)  # recipes/llada-8b-*-lora.yaml
STEPS = 4
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12}  # dense bf16, SXM
MFU_GOAL = 0.35


# ---------------------------------------------------------------- one part (a child process)
def synchronize() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build_model(shape: str, device):
    """A random-init LLaDA of ``shape``: bf16 built on the GPU (seconds for 8B), fp32 on CPU."""
    import torch

    from unigrpo.models import LLaDAModelLM, build_char_tokenizer, tiny_config

    tokenizer = build_char_tokenizer()
    config = tiny_config("micro", tokenizer, **SHAPES[shape])
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16 if device.type == "cuda" else torch.float32)
    with device:
        model = LLaDAModelLM(config)
    torch.set_default_dtype(torch.float32)
    return model, tokenizer


def prompts_dataset(n: int = 64):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": f"Question {i}: what is {17 * i % 97} + {31 * i % 89}? Answer:"}
                              for i in range(n)])


def stand_in_reward(completion_ids, **kwargs) -> list[float]:
    """Random weights write no words: the share of answer ids divisible by 7 gives each group a spread."""
    return [sum(i % 7 == 0 for i in ids) / max(len(ids), 1) for ids in completion_ids]


def trainer_class():
    """``UniGRPOTrainer`` with its phase timers synchronised on CUDA (kernels run asynchronously: unsynchronised, a
    timer measures the launches) and the policy forward timed apart, so backward = update − forward."""
    from contextlib import contextmanager

    from unigrpo import UniGRPOTrainer

    class TimedTrainer(UniGRPOTrainer):
        @contextmanager
        def timer(self, name: str):
            synchronize()
            with super().timer(name):
                yield
                synchronize()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            with self.timer("policy_forward"):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return TimedTrainer


def step_recorder(embedding, profile_step: int):
    """A callback that times each optimizer step (synchronised), counts the tokens of the policy passes with grad
    (a hook on the input embedding: the rollouts and the θ_old pass run without grad) and profiles one step."""
    import torch
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self):
            self.optimizer_s, self.tokens, self.counted, self.profile = [], [], 0, None
            embedding.register_forward_hook(self.count)

        def count(self, module, args, output):
            if torch.is_grad_enabled():
                self.counted += args[0].numel()

        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step + 1 == profile_step:
                activities = [torch.profiler.ProfilerActivity.CPU]
                if torch.cuda.is_available():
                    activities.append(torch.profiler.ProfilerActivity.CUDA)
                self.profile = torch.profiler.profile(activities=activities)
                self.profile.start()

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            synchronize()
            self.started = time.perf_counter()

        def on_optimizer_step(self, args, state, control, **kwargs):
            synchronize()
            self.optimizer_s.append(time.perf_counter() - self.started)

        def on_step_end(self, args, state, control, **kwargs):
            self.tokens.append(self.counted)
            self.counted = 0
            if self.profile is not None and state.global_step == profile_step:
                synchronize()
                self.profile.stop()

    return StepRecorder()


def top_kernels(profile, n: int = 10) -> list[dict]:
    """The ``n`` operators / kernels with the most self time on the device (CPU when there is no GPU)."""
    if profile is None:
        return []
    events = profile.key_averages()
    device = any(getattr(e, "self_device_time_total", 0) for e in events)
    key = (lambda e: e.self_device_time_total) if device else (lambda e: e.self_cpu_time_total)
    total = sum(key(e) for e in events) or 1.0
    return [{"name": e.key[:80], "ms": round(key(e) / 1000, 3), "share": round(key(e) / total, 3)}
            for e in sorted(events, key=key, reverse=True)[:n]]


def trainable_checksum(model) -> float:
    """Σ|p| over the trainable parameters this process holds (its local shard under FSDP2 / ZeRO-3)."""
    total = 0.0
    for p in model.parameters():
        if p.requires_grad:
            local = getattr(p, "ds_tensor", None)
            if local is None:
                local = p.to_local() if hasattr(p, "to_local") else p
            total += local.detach().double().abs().sum().item()
    return total


def is_sharded(model) -> bool:
    """Whether the parameters are shards (FSDP2 DTensors, ZeRO-3 partitions), i.e. the sharding really ran."""
    return any(hasattr(p, "to_local") or hasattr(p, "ds_tensor") for p in model.parameters())


def config_for(part: str, size: str, output_dir: str, gradient_checkpointing: bool):
    import torch

    from unigrpo import UniGRPOConfig

    cuda = torch.cuda.is_available()
    ray = dict(rollout_backend="ray", ray_num_workers=1, ray_num_cpus_per_worker=1,
               ray_num_gpus_per_worker=1 if cuda else 0) if part == "ray" else {}
    return UniGRPOConfig(
        output_dir=output_dir, **SETTINGS[size], **ray, num_iterations=2, max_steps=STEPS, learning_rate=1e-5,
        temperature=1.0, kv_cache="dual", confidence_threshold=0.9, beta=0.0, logging_steps=1, save_strategy="no",
        report_to="none", disable_tqdm=True, seed=0, bf16=cuda, use_cpu=not cuda,
        gradient_checkpointing=gradient_checkpointing,
    )


def memory_plan(model_config, args, strategy: str, use_peft: bool, gradient_checkpointing: bool, prompt_length: int):
    """``unigrpo.memory_plan.plan_memory`` (issue #17 part 2) for this run, or why there is none."""
    try:
        from unigrpo.memory_plan import plan_memory
    except ImportError as error:
        return None, f"not available ({error})"
    import torch

    try:
        gpu_bytes = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None
        plan = plan_memory(model_config, args, num_processes=1, strategy=strategy, use_peft=use_peft,
                           lora_r=LORA["r"] if use_peft else None, lora_targets=None,  # None: every projection
                           gradient_checkpointing=gradient_checkpointing, gpu_memory_bytes=gpu_bytes,
                           prompt_length=prompt_length, lora_dropout=LORA["lora_dropout"] if use_peft else 0.0)
        return plan, None
    except Exception as error:  # a new API meeting an 8B shape for the first time: report, don't stop the part
        return None, f"error: {type(error).__name__}: {error}"


def run_part(part: str, size: str, gradient_checkpointing: bool) -> dict:
    """Train ``STEPS`` optimizer steps of ``part`` and measure them (module docstring)."""
    import torch
    from peft import LoraConfig

    from unigrpo.models import LORA_TARGET_MODULES

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    use_peft = part in ("lora", "ray")
    shape = PART_SHAPES[size][part]
    start = time.perf_counter()
    model, tokenizer = build_model(shape, device)
    params = sum(p.numel() for p in model.parameters())
    args = config_for(part, size, tempfile.mkdtemp(prefix=f"gpu_e2e_{part}_"), gradient_checkpointing)
    dataset = prompts_dataset()
    prompt_length = max(len(tokenizer(row["prompt"]).input_ids) for row in dataset)
    plan, plan_note = memory_plan(model.config, args, STRATEGIES[part], use_peft, gradient_checkpointing,
                                  prompt_length)
    peft_config = LoraConfig(target_modules=LORA_TARGET_MODULES, **LORA) if use_peft else None
    trainer = trainer_class()(model=model, reward_funcs=[stand_in_reward], args=args,
                              train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    recorder = step_recorder(trainer.unwrapped_model.get_input_embeddings(), profile_step=STEPS)
    trainer.add_callback(recorder)
    before = trainable_checksum(trainer.model)
    trainer.train()
    moved = trainable_checksum(trainer.model) != before

    result = {"part": part, "status": "ok", "device": torch.cuda.get_device_name() if cuda else "cpu",
              "shape": shape, "params": params,
              "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
              "strategy": STRATEGIES[part], "distributed_type": str(trainer.accelerator.distributed_type),
              "sharded": is_sharded(trainer.model), "rollout_backend": args.rollout_backend,
              "settings": {**SETTINGS[size], "num_iterations": args.num_iterations, "steps": STEPS,
                           "lora_r": LORA["r"] if use_peft else None, "gradient_checkpointing": gradient_checkpointing,
                           "bf16": args.bf16, "optim": str(args.optim)}}
    result.update(step_figures(trainer.state.log_history, recorder, args, params, use_peft, result["device"]))
    peak = torch.cuda.max_memory_allocated() if cuda else None
    result["peak_memory_bytes"] = peak
    result["plan"] = plan_note or plan_summary(plan, peak)
    result["weights_moved"] = moved
    result["profile_top"] = top_kernels(recorder.profile)
    if part == "ray":
        engine = trainer.engine
        result["ray"] = {"startup_s": round(engine.startup_seconds, 2), "workers": args.ray_num_workers,
                         "num_gpus_per_worker": args.ray_num_gpus_per_worker, "sync_bytes": engine.last_sync.bytes,
                         "sync_is_lora": engine.last_sync.is_peft}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def step_figures(log_history: list[dict], recorder, args, params: int, use_peft: bool, device: str) -> dict:
    """Per-step phase seconds from the trainer's logs, their means over the timed steps, tokens/s and MFU."""
    logs = [entry for entry in log_history if "loss" in entry and "step" in entry]
    steps = []
    for entry, optimizer_s, tokens in zip(logs, recorder.optimizer_s, recorder.tokens):
        update, forward = entry.get("timing/update", 0.0), entry.get("timing/policy_forward", 0.0)
        seconds = {"rollout": entry.get("timing/rollout"), "rewards": entry.get("timing/rewards"),
                   "theta_old": entry.get("timing/logps"), "weight_sync": entry.get("timing/weight_sync"),
                   "policy_forward": forward, "policy_backward": update - forward, "update": update,
                   "optimizer": optimizer_s}
        steps.append({"step": entry["step"], **{k: _round(v) for k, v in seconds.items()}, "update_tokens": tokens,
                      "loss": entry["loss"], "grad_norm": entry.get("grad_norm")})
    timed = steps[1:-1] or steps  # after the warm-up step, before the profiled one
    mean = lambda key: _mean([s[key] for s in timed if s[key] is not None])  # noqa: E731
    breakdown = {key: mean(key) for key in ("rollout", "theta_old", "policy_forward", "policy_backward", "optimizer",
                                            "weight_sync")}
    update_s, tokens = mean("update"), mean("update_tokens")
    answers = args.per_device_train_batch_size
    figures = {"steps": steps, "breakdown_s": breakdown,
               "rollout_tokens_per_s": _ratio(answers * args.max_completion_length, breakdown["rollout"]),
               "update_tokens": tokens, "update_tokens_per_s": _ratio(tokens, update_s),
               "flops_per_token": "4N" if use_peft else "6N", "mfu_update": None, "mfu_update_6n": None,
               "losses": [s["loss"] for s in steps]}
    peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in device), None)
    if peak and update_s:
        factor = 4 if use_peft else 6
        figures["mfu_update"] = round(factor * params * tokens / update_s / peak, 4)
        figures["mfu_update_6n"] = round(6 * params * tokens / update_s / peak, 4)
    return figures


def plan_summary(plan, peak: int | None) -> dict:
    summary = {"total_bytes": int(plan.total), "fits": plan.fits, "bytes": {k: int(v) for k, v in plan.bytes.items()},
               "summary": plan.summary}
    if peak:
        summary["measured_over_plan"] = round(peak / plan.total, 3)
    return summary


def _round(value):
    return None if value is None else round(value, 4)


def _mean(values: list):
    return round(sum(values) / len(values), 4) if values else None


def _ratio(a, b):
    return round(a / b, 1) if a and b else None


# ---------------------------------------------------------------- the driver
def skip_reason(part: str, cuda: bool) -> str | None:
    """Why ``part`` cannot run here, or None."""
    if part == "fsdp2" and not (ROOT / "unigrpo" / "sharding.py").exists():
        return "FSDP2 needs unigrpo/sharding.py (issue #17 part 1), which this checkout does not have"
    if part == "fsdp2" and not cuda and not (ROOT / "tests" / "fsdp_cpu.py").exists():
        return "FSDP2 on CPU runs through tests/fsdp_cpu.py, which this checkout does not have"
    if part == "zero3" and importlib.util.find_spec("deepspeed") is None:
        return "DeepSpeed is not installed (benchmarks/gpu_e2e_pack.sh brings its wheel to a GPU machine)"
    if part == "zero3" and not cuda:
        return "DeepSpeed ZeRO-3 needs a GPU"
    if part == "ray" and importlib.util.find_spec("ray") is None:
        return "Ray is not installed (pip install 'unigrpo[ray]'; benchmarks/gpu_e2e_pack.sh brings a slim wheel)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_command(part: str, size: str, result_file: str, cuda: bool, gradient_checkpointing: bool) -> list[str]:
    """``python gpu_e2e.py --child PART``; the sharded parts under ``accelerate launch`` with their recipe config.
    On CPU, FSDP2 goes through tests/fsdp_cpu.py (accelerate's CPU launcher exports no FSDP settings; that file
    exports recipes/accelerate/fsdp.yaml's and lets the gloo state take the FSDP plugin)."""
    own = [str(Path(__file__).resolve()), "--child", part, "--size", size, "--result", result_file]
    if gradient_checkpointing:
        own.append("--gradient-checkpointing")
    if part not in ACCELERATE_CONFIGS:
        return [sys.executable, *own]
    config = ACCELERATE_CONFIGS[part] if cuda else "recipes/accelerate/ddp.yaml"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "1",
              "--num_machines", "1", "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())]
    if not cuda:
        return [*launch, "--mixed_precision", "no", str(ROOT / "tests" / "fsdp_cpu.py"), *own]
    return [*launch, *own]


def run_child(part: str, size: str, cuda: bool, timeout: float, gradient_checkpointing: bool) -> dict:
    """Run one part in its own process; its JSON, or an error naming the last line it wrote."""
    with tempfile.TemporaryDirectory() as folder:
        result_file = os.path.join(folder, "result.json")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        if not cuda:
            env["ACCELERATE_USE_CPU"] = "1"
        start = time.perf_counter()
        try:
            done = subprocess.run(child_command(part, size, result_file, cuda, gradient_checkpointing), cwd=ROOT,
                                  env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"part": part, "status": "error", "reason": f"timed out after {timeout:.0f} s"}
        if os.path.exists(result_file):
            with open(result_file) as f:
                return json.load(f)
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "Error" in line or "error:" in line]
        return {"part": part, "status": "error", "reason": (errors or lines or ["no output"])[-1][-400:],
                "exit_code": done.returncode, "wall_s": round(time.perf_counter() - start, 1)}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "ray", "deepspeed"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def summary(results: list[dict], card: str, wall_s: float) -> dict:
    by_part = {r["part"]: r for r in results}
    lora = by_part.get("lora", {})
    mfu = lora.get("mfu_update")
    return {"part": "summary", "card": card, "versions": versions(),
            "status": {r["part"]: r["status"] for r in results},
            "reasons": {r["part"]: r["reason"] for r in results if r.get("reason")},
            "mfu_update_lora": mfu, "mfu_goal": MFU_GOAL, "mfu_goal_met": None if mfu is None else mfu >= MFU_GOAL,
            "breakdown_s": {p: r.get("breakdown_s") for p, r in by_part.items() if r["status"] == "ok"},
            "peak_memory_bytes": {p: r.get("peak_memory_bytes") for p, r in by_part.items() if r["status"] == "ok"},
            "plan": {p: r.get("plan") for p, r in by_part.items() if r["status"] == "ok"},
            "wall_s": round(wall_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SETTINGS), default=None, help="default: gpu with CUDA, else test")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per part")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    size = args.size or ("gpu" if cuda else "test")
    if args.child:
        result = run_part(args.child, size, args.gradient_checkpointing)
        with open(args.result, "w") as f:
            json.dump(result, f)
        return
    start, results = time.perf_counter(), []
    for part in args.parts.split(","):
        reason = skip_reason(part, cuda)
        result = ({"part": part, "status": "skipped", "reason": reason} if reason else
                  run_child(part, size, cuda, args.timeout, args.gradient_checkpointing))
        results.append(result)
        print(json.dumps(result), flush=True)
    card = torch.cuda.get_device_name() if cuda else "cpu"
    print(json.dumps(summary(results, card, time.perf_counter() - start)), flush=True)


if __name__ == "__main__":
    main()
