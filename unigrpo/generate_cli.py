"""``unigrpo generate``: sample answers for a few prompts from a model folder.

Its sampler options are the recipe's (``unigrpo.config.SamplingArguments``: names, types, help and choices), built
from those fields rather than declared again; ``--gen_length`` and ``--steps`` stay as aliases of
``--max_completion_length`` and ``--diffusion_steps``. A value not given on the command line comes from the model
folder's ``unigrpo_sampler.json`` (what ``unigrpo sft`` / ``train`` evaluated the model with), else from
``rollouts.SamplerConfig``'s defaults: the reference LLaDA sampler (no cache, no threshold, greedy).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

ALIASES = {"max_completion_length": ["--gen_length"], "diffusion_steps": ["--steps"]}  # the README's older names


def optional_float(text: str) -> float | None:
    """A float, or None for ``none`` / ``null`` (switches off a recorded confidence_threshold, for instance)."""
    return None if text.lower() in ("none", "null") else float(text)


def optional_int(text: str) -> int | None:
    """An integer, or None for ``none`` / ``null`` (``top_k``)."""
    return None if text.lower() in ("none", "null") else int(text)


def true_or_false(text: str) -> bool:
    """``true`` / ``false`` (also 1/0, yes/no): ``type=bool`` would take any non-empty text, ``false`` too, as True."""
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1", "yes")


def reference_defaults() -> dict:
    """``SamplerConfig``'s defaults under their recipe keys."""
    from rollouts import RECIPE_KEYS, SamplerConfig

    return {RECIPE_KEYS[f.name]: f.default for f in dataclasses.fields(SamplerConfig)}


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """One option per sampler key of ``SamplingArguments``; an option not given stays out of the namespace."""
    from rollouts import RECIPE_KEYS

    from .config import SamplingArguments
    from .sampler_settings import SETTINGS_FILE

    fields = {f.name: f for f in dataclasses.fields(SamplingArguments)}
    hints = typing.get_type_hints(SamplingArguments)
    defaults = reference_defaults()
    shown = {"diffusion_steps": "max_completion_length / 2", "confidence_threshold": "none",
             "confidence_factor": "none"}
    group = parser.add_argument_group(
        "sampler options", f"the recipe keys of the same names; default: the model folder's {SETTINGS_FILE}, "
                           f"else the value shown (the reference LLaDA sampler)")
    for key in RECIPE_KEYS.values():
        meta = fields[key].metadata
        optional = type(None) in typing.get_args(hints[key])  # float | None, int | None
        integer = optional and int in typing.get_args(hints[key])
        convert = ((optional_int if integer else optional_float) if optional
                   else true_or_false if hints[key] is bool else hints[key])
        metavar = (None if meta.get("choices") else ("INT|none" if integer else "FLOAT|none") if optional
                   else hints[key].__name__.upper())
        default = shown.get(key, "none" if defaults[key] is None else defaults[key])
        group.add_argument(f"--{key}", *ALIASES.get(key, []), dest=key, type=convert, choices=meta.get("choices"),
                           default=argparse.SUPPRESS, metavar=metavar,
                           help=f"{meta['help']} [{default}]".replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unigrpo generate", description=(
        "Sample answers from a diffusion LM, one line per --prompt. With no sampler option, the model folder's "
        "recorded settings (unigrpo sft/train write them) are used."))
    parser.add_argument("--model", "--model_name_or_path", dest="model", required=True,
                        help="model or LoRA adapter folder, or a built-in checkpoint name (--model_name_or_path: "
                             "the recipes' name for it)")
    parser.add_argument("--prompt", required=True, action="append", help="prompt text (repeat for a batch)")
    parser.add_argument("--chat", action="store_true", help="wrap the prompt as a user message (chat template)")
    parser.add_argument("--seed", type=int, default=0)
    add_sampler_options(parser)
    return parser


def default_steps(max_completion_length: int, block_length: int) -> int:
    """LLaDA's published pace, two tokens per step, rounded down to a whole number of steps per block (≥ 1)."""
    blocks = max(max_completion_length // block_length, 1)
    return max(max_completion_length // 2 // blocks, 1) * blocks


def sampler_options(given: dict, recorded: dict) -> dict:
    """The command line's options over the model folder's recorded ones over SamplerConfig's defaults. When the
    canvas is set but the steps are not, the steps follow the canvas (``default_steps``)."""
    options = {**reference_defaults(), **recorded, **given}
    if "diffusion_steps" not in {**recorded, **given}:
        options["diffusion_steps"] = default_steps(options["max_completion_length"], options["block_length"])
    return options


def cmd_generate(argv) -> int:
    args = build_parser().parse_args(argv)

    from datasets import Dataset

    from rollouts import RECIPE_KEYS, LocalEngine, SamplerConfig

    from .models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
    from .prompts import check_prompt_lengths, model_context_length
    from .sampler_settings import read_sampler_settings

    model_path = resolve_model_path(args.model)
    given = {key: getattr(args, key) for key in RECIPE_KEYS.values() if hasattr(args, key)}
    sampler = SamplerConfig.from_recipe(**sampler_options(given, read_sampler_settings(model_path)))
    tokenizer = load_tokenizer(model_path)
    prompts = args.prompt
    if args.chat:
        prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                 add_generation_prompt=True) for p in prompts]
    check_prompt_lengths(Dataset.from_dict({"prompt": prompts}), tokenizer, model_context_length(model_path),
                         sampler.gen_length, name="--prompt")  # before the weights load
    model = load_model(model_path)
    engine = LocalEngine(model, tokenizer, resolve_mask_token_id(model, tokenizer))
    batch = engine.generate(prompts, sampler, seed=args.seed)
    for completion in batch.completions:
        print(completion)
    return 0
