"""The results of ``unigrpo eval`` as a Markdown table and a JSON file (one entry per model, with the sampler
settings that produced it)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _cell(value) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def markdown_table(results: list[dict]) -> str:
    """One row per model: data set, prompts, samples per prompt, sampling temperature, accuracy, pass@k…, mean
    answer length, reward. pass@k means little without the temperature that drew the k samples: it sits beside."""
    ks = sorted({key for r in results for key in r if key.startswith("pass@")}, key=lambda k: int(k[5:]))
    head = ["model", "dataset", "n", "samples", "temperature", "accuracy", *ks, "mean length", "reward"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        temperature = r.get("temperature")
        cells = [Path(str(r["model"])).name, r.get("dataset", ""), r["n"], r.get("samples_per_prompt", 1),
                 "–" if temperature is None else f"{temperature:g}", r["accuracy"],
                 *(r.get(k, math.nan) for k in ks), r.get("completions/mean_length", math.nan), r["reward"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def write_report(results: list[dict], settings: dict, output_dir: str | Path) -> tuple[Path, Path]:
    """``eval.json`` ({"settings", "results"}) and ``eval.md`` (the table, then the settings) in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "eval.json", output_dir / "eval.md"
    json_path.write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    described = ", ".join(f"{k} {v}" for k, v in settings.items())
    md_path.write_text(markdown_table(results) + f"\n\nSettings: {described}.\n")
    return json_path, md_path
