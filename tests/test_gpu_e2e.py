"""benchmarks/gpu_e2e.py at test size on CPU (issue #17 part 3): every part runs through the real trainer, or says
why it is skipped, and each JSON line carries the figures a GPU run records."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP_KEYS = {"step", "rollout", "rewards", "theta_old", "weight_sync", "policy_forward", "policy_backward", "update",
             "optimizer", "update_tokens", "loss", "grad_norm"}
BREAKDOWN_KEYS = {"rollout", "theta_old", "policy_forward", "policy_backward", "optimizer", "weight_sync"}


def check_trained(part: dict, flops: str) -> None:
    assert part["status"] == "ok", part
    assert [s["step"] for s in part["steps"]] == [1, 2, 3, 4] and set(part["steps"][0]) == STEP_KEYS
    assert [s["rollout"] is not None for s in part["steps"]] == [True, False, True, False]  # μ = 2
    assert all(s["theta_old"] is not None for s in part["steps"][::2])  # θ_old pass at each rollout step
    assert all(s["update"] > 0 and s["optimizer"] > 0 for s in part["steps"])
    prompt_and_answer = part["steps"][0]["update_tokens"] / 8  # 8 answers, each prompt + 8-token canvas
    assert prompt_and_answer == int(prompt_and_answer) and prompt_and_answer > 8
    assert set(part["breakdown_s"]) == BREAKDOWN_KEYS and part["breakdown_s"]["rollout"] > 0
    assert part["update_tokens_per_s"] > 0 and part["rollout_tokens_per_s"] > 0
    assert all(math.isfinite(loss) for loss in part["losses"]) and part["weights_moved"]
    assert part["flops_per_token"] == flops and part["mfu_update"] is None  # no card peak on CPU
    assert part["peak_memory_bytes"] is None and part["profile_top"][0]["ms"] > 0
    plan = part["plan"]
    assert plan.startswith("not available") if isinstance(plan, str) else plan["total_bytes"] > 0


def test_every_part_runs_or_says_why_not_at_test_size_on_cpu():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_e2e.py"), "--size", "test"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    parts = {line["part"]: line for line in lines}
    assert list(parts) == ["lora", "fsdp2", "zero3", "ray", "summary"]

    lora = parts["lora"]
    check_trained(lora, "4N")
    assert lora["rollout_backend"] == "local" and lora["settings"]["lora_r"] == 128
    assert 0 < lora["trainable_params"] and lora["strategy"] == "ddp"

    fsdp2 = parts["fsdp2"]
    if fsdp2["status"] == "skipped":
        assert "sharding.py" in fsdp2["reason"] or "fsdp_cpu.py" in fsdp2["reason"]
    else:
        check_trained(fsdp2, "6N")
        assert fsdp2["distributed_type"] == "DistributedType.FSDP" and fsdp2["sharded"]  # really FSDP2
        assert fsdp2["trainable_params"] == fsdp2["params"]

    assert parts["zero3"]["status"] == "skipped" and "DeepSpeed" in parts["zero3"]["reason"]

    ray = parts["ray"]
    check_trained(ray, "4N")
    assert ray["rollout_backend"] == "ray" and ray["ray"]["workers"] == 1 and ray["ray"]["num_gpus_per_worker"] == 0
    assert ray["ray"]["sync_is_lora"] and ray["ray"]["sync_bytes"] > 0
    assert all(s["weight_sync"] is not None for s in ray["steps"][2::2])  # weights sent before the 2nd rollout

    summary = parts["summary"]
    assert summary["card"] == "cpu" and summary["mfu_goal"] == 0.35 and summary["mfu_goal_met"] is None
    assert summary["status"] == {p: parts[p]["status"] for p in ("lora", "fsdp2", "zero3", "ray")}
    assert summary["versions"]["torch"] and "zero3" in summary["reasons"]
