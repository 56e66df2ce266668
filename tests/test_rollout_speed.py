"""benchmarks/rollout_speed.py at test size (issue #18 §4): the default part runs on the shipped confident model and
ends with the JSON line the figures are read from; the best setting is chosen by the accuracy rule."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from rollout_speed import best_setting  # noqa: E402


def test_the_default_part_ends_with_speedup_accuracy_delta_and_the_model():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rollout_speed.py"), "--rows", "1", "--batch", "1",
                           "--gen", "16", "--block", "8", "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["model"] == "tiny-copy-sft" and summary["gen"] == 16 and summary["batch"] == 1
    assert summary["speedup"] > 0 and isinstance(summary["accuracy_delta"], float)
    table = [line for line in done.stdout.splitlines() if line.startswith("| ") and "setting" not in line]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in table)}
    assert list(rows)[0] == "plain" and len(rows) == 6
    # early finish and the dual cache at one token a step change no answer: exact match 1.0 with plain
    assert rows["plain + early finish"][5] == "1.0" and rows["dual cache"][5] == "1.0"
    # the plain sampler commits one token per forward; forwards: 2 blocks × 8 steps
    assert rows["plain"][2:5] == ["16", "16", "1.0"]


def test_best_is_the_fastest_setting_within_one_point_of_plain_else_the_fastest():
    rows = [{"setting": "plain", "accuracy": 90.0, "tokens_per_s": 10.0},
            {"setting": "a", "accuracy": 89.5, "tokens_per_s": 50.0},
            {"setting": "b", "accuracy": 80.0, "tokens_per_s": 99.0},
            {"setting": "c", "accuracy": 91.0, "tokens_per_s": 40.0}]
    assert best_setting(rows)["setting"] == "a"
    assert best_setting([rows[0], rows[2]])["setting"] == "b"
