"""benchmarks/rl_vs_rft.py at test size (issue #20 §3): both methods run with the demo's budget per step and the
script ends with the JSON line (before / after per seed, mean gain each, wall time) and writes the plot."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_rl_and_rft_run_and_report_curves_gains_and_the_plot(tmp_path):
    plot = tmp_path / "rl_vs_rft.png"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rl_vs_rft.py"), "--seeds", "0",
                           "--max_steps", "2", "--eval_limit", "8", "--output_dir", str(tmp_path / "runs"),
                           "--plot", str(plot)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "rl_vs_rft" and result["seeds"] == [0] and result["max_steps"] == 2
    # the demo's budget: 16 prompts × G 8 sampled, μ 2 updates per sample
    assert result["completions_per_sample"] == 128 and result["updates_per_sample"] == 2
    for method in ("unigrpo", "rft"):
        s = result[method]
        assert len(s["before"]) == len(s["after"]) == 1
        assert all(math.isfinite(v) for v in (s["gain_mean"], s["wall_s"], s["s_per_step"]))
        assert [step for step, _ in result["curves"][method]["0"]] == [0, 2]  # held-out at the start and the end
        assert s["gain_mean"] == round(s["after"][0] - s["before"][0], 4)
    assert result["unigrpo"]["before"] == result["rft"]["before"]  # the same start model, the same greedy eval
    assert 0.0 < result["rft"]["kept_mean"] < 1.0  # some, not all, of the sampled answers were correct
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
