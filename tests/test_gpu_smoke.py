"""benchmarks/gpu_smoke.py at test size on CPU: the composed LoRA UniGRPO step runs and behaves (issue #9)."""

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_smoke.py"


def test_the_gpu_smoke_step_runs_at_test_size_on_cpu():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.smoke("micro", "cpu", G=4, gen=32)
    assert set(result["seconds"]) == {"rollout", "old_logps", "policy_forward", "backward", "optimizer_step"}
    assert 1 <= result["rollout_forwards"] <= 16  # 16 steps at most (threshold decoding may end blocks early)
    assert result["train_tokens"] == 4 * (64 + 32)
    assert math.isfinite(result["loss"]) and result["old_logp_mean"] < 0
    assert result["ratio_at_start"] == 1.0  # θ_old = θ before the update
    assert result["lora_tensors"] > 0 and result["lora_max_update"] > 0 and result["frozen_params_with_grad"] == 0
