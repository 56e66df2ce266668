"""Math reward speed (issue #4, "Targets"): throughput on typical completions, and the worst time per completion on
the adversarial file.

    python benchmarks/reward_speed.py      # 4000 typical completions, then tests/data/adversarial_completions.jsonl

Throughput: the registered ``math_correctness`` (1.0 s limit per symbolic comparison) scores ``--n`` typical
completions in batches of ``--batch`` (as TRL calls a reward), one process plus its one math-verify worker child;
the two never run at the same time (the parent waits on the child), so this is one core's worth of work. The worker's
one-off start-up is timed separately and left out of the rate. Every completion has its own numbers (seeded RNG), so
math-verify's parse cache does not flatter the result; each has ~300 characters of reasoning before the answer.

The typical mix (share of completions; about 2/3 of each category carry the right answer):

* 50 % GSM8K-style: ``<think>…</think> … \\boxed{72}`` against a ``#### 72`` reference (integers, some with a
  thousands comma) — judged in-process (identical strings or exact integers), no sympy;
* 10 % decimals: ``\\boxed{3.50}`` against ``3.5`` (exact in-process when equal; math-verify when not);
* 15 % fractions: ``\\boxed{\\frac{3}{4}}`` against ``0.75`` / ``\\frac{6}{8}`` / ``3/4`` — math-verify;
* 15 % LaTeX: ``\\sqrt``, ``\\pi``, powers, simple polynomials — math-verify;
* 5 % percentages: ``\\boxed{25\\%}`` against ``0.25`` — math-verify;
* 5 % no final answer (a truncated completion) — 0 without math-verify.

Worst case: each row of the adversarial file is scored alone (one completion per call) by the registered
``math_correctness`` and by the two format rewards; the slowest single completion is ``worst_adversarial_s``.
A canary file that the injection payloads would create is checked afterwards (``executed`` in the JSON).

Ends with one JSON line: ``math_per_s``, ``worst_adversarial_s`` and the details.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rewards import get_reward  # noqa: E402
from rewards.math_correctness import TIMEOUT_S  # noqa: E402
from rewards.math_worker import shared_worker  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from test_rewards_adversarial import load_rows  # noqa: E402

FILLER = ("First, note the quantities given in the problem. Then we set up the equation step by step, "
          "combine like terms, and check the arithmetic carefully before writing the final answer. ")


def reasoning(rng: random.Random) -> str:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    steps = f"We have {a} and {b}, so {a} + {b} = {a + b} and {a} \\times {b} = {a * b}."
    return f"<think>{FILLER}{steps} {FILLER}</think> "


def typical(rng: random.Random, category: str) -> tuple[str, str]:
    """One (completion, reference) of a category; about 2/3 are right."""
    right = rng.random() < 2 / 3
    head = reasoning(rng)
    if category == "gsm8k":
        value = rng.randint(1, 5000)
        shown = value if right else value + rng.choice([-10, -1, 1, 2, 100])
        text = f"{shown:,}" if shown >= 1000 and rng.random() < 0.3 else str(shown)
        return f"{head}So the total is \\boxed{{{text}}}.", f"steps of the reference solution\n#### {value}"
    if category == "decimal":
        cents = rng.randint(1, 99_999)
        value = f"{cents // 100}.{cents % 100:02d}"
        shown = value if right else f"{cents // 100}.{(cents + 7) % 100:02d}"
        return f"{head}The price is \\boxed{{{shown}}} dollars.", value.rstrip("0").rstrip(".") or "0"
    if category == "fraction":
        p, q = rng.randint(1, 50), rng.randint(51, 99)
        k = rng.randint(2, 5)
        pred = rng.choice([f"\\frac{{{p * k}}}{{{q * k}}}", f"\\dfrac{{{p}}}{{{q}}}", f"{p}/{q}"])
        ref = f"\\frac{{{p}}}{{{q}}}" if right else f"\\frac{{{p + 1}}}{{{q}}}"
        return f"{head}Hence the probability is $\\boxed{{{pred}}}$.", ref
    if category == "latex":
        n = rng.randint(2, 30)
        pairs = [
            (f"{n}\\sqrt{{2}}", f"\\sqrt{{{2 * n * n}}}"),
            (f"{n}\\pi", f"\\pi \\cdot {n}"),
            (f"2^{{{n}}}", str(2**n)),
            (f"x^2 + {2 * n}x + {n * n}", f"(x+{n})^2"),
            (f"\\frac{{\\sqrt{{3}}}}{{{n}}}", f"\\frac{{\\sqrt{{3}}}}{{{n}}}"),
        ]
        pred, ref = rng.choice(pairs)
        if not right:
            ref = f"{ref} + 1"
        return f"{head}Therefore the answer is $\\boxed{{{pred}}}$.", ref
    if category == "percent":
        pct = rng.randint(1, 99)
        ref = f"{pct / 100:g}" if right else f"{(pct + 1) / 100:g}"
        return f"{head}That is an increase of \\boxed{{{pct}\\%}}.", ref
    if category == "none":
        return head[: rng.randint(50, len(head))], str(rng.randint(1, 100))
    raise ValueError(category)


MIX = {"gsm8k": 0.50, "decimal": 0.10, "fraction": 0.15, "latex": 0.15, "percent": 0.05, "none": 0.05}


def make_typical(n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for category, share in MIX.items():
        rows += [(category, *typical(rng, category)) for _ in range(round(n * share))]
    rng.shuffle(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="typical completions")
    parser.add_argument("--batch", type=int, default=64, help="completions per reward call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    math_reward = get_reward("math_correctness")
    start = time.perf_counter()
    shared_worker().equivalent("1", "1", 60.0)
    startup_s = time.perf_counter() - start

    # --- throughput on typical completions
    rows = make_typical(args.n, args.seed)
    per_category = defaultdict(lambda: [0, 0.0, 0])  # count, seconds, correct
    start = time.perf_counter()
    for i in range(0, len(rows), args.batch):
        batch = rows[i : i + args.batch]
        math_reward(prompts=["q"] * len(batch), completions=[c for _, c, _ in batch], answer=[a for *_, a in batch])
    total_s = time.perf_counter() - start
    math_per_s = len(rows) / total_s
    # per category (one call per category, same batches): where the time goes
    for category in MIX:
        subset = [r for r in rows if r[0] == category]
        t = time.perf_counter()
        scores = []
        for i in range(0, len(subset), args.batch):
            batch = subset[i : i + args.batch]
            scores += math_reward(prompts=["q"] * len(batch), completions=[c for _, c, _ in batch],
                                  answer=[a for *_, a in batch])
        per_category[category] = [len(subset), time.perf_counter() - t, sum(s == 2.0 for s in scores)]

    # --- worst case on the adversarial file
    canary = Path(tempfile.mkdtemp(prefix="reward_speed_")) / "pwned_canary"
    adversarial = load_rows(str(canary))  # the test's loader: generator markers expanded, canary path filled in
    worst = {}
    adversarial_total = {}
    timeouts_before = shared_worker().timeouts
    restarts_before = shared_worker().restarts
    for name in ("math_correctness", "think_format", "boxed_format"):
        reward = get_reward(name)
        worst[name] = (0.0, -1, "")
        t_all = time.perf_counter()
        for i, row in enumerate(adversarial):
            t = time.perf_counter()
            reward(prompts=["q"], completions=[row["completion"]], answer=[row["answer"]])
            worst[name] = max(worst[name], (time.perf_counter() - t, i, row["kind"]))
        adversarial_total[name] = time.perf_counter() - t_all
    executed = canary.exists()

    print(f"math_correctness on {len(rows)} typical completions (batches of {args.batch}, unique answers), "
          f"worker start-up {startup_s:.2f} s not counted")
    print(f"{'category':<10} {'share':>6} {'n':>6} {'correct':>8} {'per s':>9} {'ms each':>8}")
    for category, (count, seconds, correct) in per_category.items():
        print(f"{category:<10} {MIX[category]:>6.0%} {count:>6} {correct:>8} {count / seconds:>9.0f} "
              f"{1000 * seconds / count:>8.3f}")
    print(f"{'all':<10} {1:>6.0%} {len(rows):>6} {'':>8} {math_per_s:>9.0f} {1000 * total_s / len(rows):>8.3f}")
    print(f"\nadversarial file: {len(adversarial)} rows, one completion per call")
    print(f"{'reward':<17} {'worst s':>8} {'row':>5} {'kind':<14} {'total s':>8}")
    for name, (seconds, index, kind) in worst.items():
        print(f"{name:<17} {seconds:>8.3f} {index:>5} {kind:<14} {adversarial_total[name]:>8.2f}")
    print(f"math worker: {shared_worker().timeouts - timeouts_before} comparisons hit the {TIMEOUT_S} s limit, "
          f"{shared_worker().restarts - restarts_before} kills; canary created: {executed}")

    result = {
        "benchmark": "reward_speed",
        "math_per_s": round(math_per_s, 1),
        "worst_adversarial_s": round(worst["math_correctness"][0], 3),
        "worst_adversarial_row": worst["math_correctness"][1],
        "worst_adversarial_kind": worst["math_correctness"][2],
        "timeout_s": TIMEOUT_S,
        "worst_format_s": round(max(worst["think_format"][0], worst["boxed_format"][0]), 4),
        "per_category_per_s": {c: round(n / s, 1) for c, (n, s, _) in per_category.items()},
        "n_typical": len(rows),
        "n_adversarial": len(adversarial),
        "adversarial_timeouts": shared_worker().timeouts - timeouts_before,
        "worker_kills": shared_worker().restarts - restarts_before,
        "worker_startup_s": round(startup_s, 2),
        "executed": executed,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
