"""``unigrpo train --help`` and ``unigrpo sft --help``: how a recipe works, then every key it may set, grouped.

Built from the dataclass fields a recipe fills (``unigrpo.recipe_check.argument_classes``: the run arguments, the
trainer's config and TRL's ``ModelConfig``) and their ``help`` metadata, so it lists what the parser accepts.
Groups, in order: the trainer's own keys, sampling, rewards, model / LoRA, data, then the Trainer's.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import textwrap

WIDTH = 110

INTRO = {
    "train": ("UniGRPO (MMaDA §2.3, Algorithm 1; docs/design.md) on a recipe.", "recipes/tiny-arith.yaml"),
    "sft": ("Masked-diffusion SFT (the cold start before RL; docs/design.md §5) on a recipe.",
            "recipes/tiny-arith-sft.yaml"),
}

RECIPES = """\
A recipe is a YAML file of the keys below; a key it leaves out takes the default shown. For example:

    model_name_or_path: tiny-arith-sft          # a model folder, a shipped checkpoint or a hub id
    dataset_name: arith
    reward_funcs: [math_correctness, boxed_format]
    max_completion_length: 6
    learning_rate: 4.0e-5

recipes/ has one per model and task (recipes/README.md lists them). Any key can be overridden on the command line
as --key value (a list: --reward_funcs a b; a switch: --use_peft true); the command line wins over the file.
Every problem of the recipe and of the command line is reported at once, before any model loads;
`unigrpo check --config RECIPE` only checks.

    unigrpo {command} --config {example}
    unigrpo {command} --config {example} --seed 1 --max_steps 100 --output_dir outputs/run1
"""


def key_groups(config_cls, own_title: str) -> dict[str, list[dataclasses.Field]]:
    """Title → the fields of that group, in declaration order; every init field of the recipe's classes once."""
    from transformers import TrainingArguments

    from .config import SamplingArguments
    from .recipe_check import argument_classes

    run_cls, _, model_cls = argument_classes(config_cls)
    sampling = {f.name for f in dataclasses.fields(SamplingArguments)}
    trainer = {f.name for f in dataclasses.fields(TrainingArguments)}
    titles = [f"{own_title} keys", "sampling keys (rollouts and evaluation; docs/design.md §4)", "reward keys",
              "model and LoRA keys (TRL's ModelConfig)", "data keys",
              "Trainer keys (transformers' TrainingArguments; see its documentation for details)"]
    groups: dict[str, list] = {title: [] for title in titles}

    def title_of(cls, name: str) -> str:
        if name.startswith("reward") or name == "accuracy_reward":
            return titles[2]
        if cls is run_cls:
            return titles[4]
        if cls is model_cls:
            return titles[3]
        if name in sampling:
            return titles[1]
        return titles[5] if name in trainer else titles[0]

    for cls in (run_cls, config_cls, model_cls):  # reward_funcs before the reward options
        for f in dataclasses.fields(cls):
            if f.init:
                groups[title_of(cls, f.name)].append(f)
    return {title: fields for title, fields in groups.items() if fields}


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    value = value.value if isinstance(value, enum.Enum) else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"  # as YAML writes a list
    return "null" if value is None else str(value)


def first_sentence(text: str) -> str:
    """The help up to its first full stop."""
    return re.split(r"(?<=\.)\s", text.strip(), maxsplit=1)[0]


def key_lines(f: dataclasses.Field, brief: bool) -> list[str]:
    text = " ".join(f.metadata.get("help", "").split())
    text = first_sentence(text) if brief else text
    lines = [f"  --{f.name}  (default {default_text(f)})"]
    if text:
        lines += textwrap.wrap(text, WIDTH, initial_indent="      ", subsequent_indent="      ")
    return lines


def recipe_help(command: str, config_cls, own_title: str) -> str:
    """The whole help text of ``unigrpo train`` / ``unigrpo sft``."""
    what, example = INTRO[command]
    lines = [f"usage: unigrpo {command} --config RECIPE [--key value ...]", "", what, "",
             RECIPES.format(command=command, example=example)]
    for title, fields in key_groups(config_cls, own_title).items():
        lines += [f"{title}:"]
        for f in fields:
            lines += key_lines(f, brief=title.startswith(("Trainer", "model")))  # their helps run to paragraphs
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def print_recipe_help(command: str, config_cls, own_title: str) -> int:
    print(recipe_help(command, config_cls, own_title), end="")
    return 0
