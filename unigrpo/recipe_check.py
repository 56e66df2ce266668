"""Recipe validation before any model is loaded (docs/design.md §8): ``unigrpo check --config X``, and the first thing
``unigrpo train`` / ``unigrpo sft`` do.

Every problem is one line naming where the value was written (the recipe file, or the command line) and the key,
and all of them are reported at once:

    recipes/x.yaml: unknown key 'learning_rat' (did you mean 'learning_rate'?)
    recipes/x.yaml: num_generations='eight' is not an integer
    recipes/x.yaml: reward_funcs: unknown reward 'corectness' (did you mean 'math_correctness'?)
    command line: --kv_cache duel: kv_cache='duel' is not valid; choose one of ['none', 'prefix', 'dual']
    command line: --num_generations 7: per_device_train_batch_size=16 (completions) is not divisible by …

Checked: unknown keys, value types, the configs' own option checks (impossible combinations), reward names, the
model and image-tokenizer paths (a folder with ``config.json``, a shipped name or ``random-<preset>``), the dataset
(built-in or a readable file with a ``prompt`` column, the columns its rewards declare, valid tasks), and that
``output_dir`` is not a file. Nothing is downloaded and no weights are read.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path

import yaml


class RecipeError(ValueError):
    """A recipe with problems; ``str()`` is one line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def argument_classes(config_cls) -> tuple:
    """The dataclasses a recipe fills, as ``TrlParser`` sees them: run arguments, the trainer config, ModelConfig."""
    from trl import ModelConfig

    from .cli import RunArguments

    return (RunArguments, config_cls, ModelConfig)


def field_types(cls) -> dict[str, object]:
    """name → annotated type of every init field of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, object) for f in dataclasses.fields(cls) if f.init}


# ---- values: YAML and command-line strings against the annotated types ---------------------------------------------


def _options(annotation) -> tuple:
    """The alternatives of a union type (``int | None`` → (int, NoneType)); a plain type → (annotation,)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def coerce(value, annotation):
    """``value`` converted to ``annotation`` (strings as argparse would read them); ``ValueError`` if it cannot be."""
    failures = []
    if value is None and type(None) in _options(annotation):
        return None
    for option in _options(annotation):
        try:
            return _coerce_one(value, option)
        except (TypeError, ValueError) as error:
            failures.append(error)
    raise ValueError(failures[0] if failures else "no type")


def _coerce_one(value, option):
    if option is type(None):
        raise ValueError("is not null")
    if option is typing.Any or option is object:
        return value
    origin = typing.get_origin(option)
    if origin in (list, tuple):
        items = value if isinstance(value, (list, tuple)) else [value]
        (item_type, *_) = typing.get_args(option) or (object,)
        return [_coerce_one(item, item_type) for item in items]
    if origin is dict or option is dict:
        if isinstance(value, dict):
            return value
        raise ValueError("is not a mapping")
    if origin is typing.Literal:
        if value in typing.get_args(option):
            return value
        raise ValueError(f"is not one of {list(typing.get_args(option))}")
    if option is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError("is not true/false")
    if option is int:
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError("is not an integer")
        return int(value)
    if option is float:
        if isinstance(value, bool):
            raise ValueError("is not a number")
        return float(value)
    if option is str:
        if isinstance(value, (dict, list)):
            raise ValueError("is not a string")
        return str(value)
    if isinstance(option, type) and issubclass(option, str):  # str-valued enums (IntervalStrategy, …)
        return option(value)
    return value


def _type_words(annotation) -> str:
    words = {int: "an integer", float: "a number", bool: "true/false", str: "a string", type(None): "null"}
    options = [words.get(o, "a list" if typing.get_origin(o) in (list, tuple) else getattr(o, "__name__", str(o)))
               for o in _options(annotation)]
    return " or ".join(dict.fromkeys(options))


# ---- the check -----------------------------------------------------------------------------------------------------


def read_recipe(path) -> dict:
    """The recipe's mapping; ``RecipeError`` for a missing, unreadable or non-mapping file."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except OSError as error:
        raise RecipeError([f"{path}: cannot read the recipe ({error.strerror or error})"]) from None
    except yaml.YAMLError as error:
        raise RecipeError([f"{path}: {_yaml_problem(error)}"]) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError([f"{path}: a recipe is a mapping of keys to values, got {type(values).__name__}"])
    return values


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's own words, with its line and column (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context:
        what += f" ({context}" + (f" at line {context_mark.line + 1}, column {context_mark.column + 1})"
                                  if context_mark else ")")
    return f"not valid YAML{where}: {what}"


def check_recipe(path, config_cls, overrides: dict | None = None, check_paths: bool = True) -> list[str]:
    """Every problem of the recipe at ``path`` (None: no recipe file) plus command-line ``overrides`` for
    ``config_cls``; [] if none. Each line names where the value was written: the recipe file, or ``command line:
    --key value``.

    All problems at once: a value that is unknown, mistyped or rejected is left out (its default stands in) and the
    other checks still run; only a check that depends on a rejected value is skipped. ``check_paths=False`` skips
    what lives only on the training machine: the model, image tokenizer and dataset files (built-in names and
    rewards are still checked)."""
    overrides = overrides or {}
    try:
        values = {**(read_recipe(path) if path is not None else {}), **overrides}
    except RecipeError as error:
        return error.problems
    classes = argument_classes(config_cls)
    typed, problems = _typed_values(values, classes)
    bad = {key for keys, _ in problems for key in keys}
    built = _build_arguments(classes, typed, bad, problems)
    if built is not None:
        for line in dict.fromkeys(_resource_problems(*built, check_paths)):
            key = line.partition(": ")[0]
            if not _DEPENDS.get(key, {key}) & bad:
                problems.append(((key,), line))
    return [_located(keys, message, path, overrides) for keys, message in problems]


def _typed_values(values: dict, classes) -> tuple[dict, list]:
    """The values converted to their fields' types, and a (keys, message) problem for each unknown or mistyped one."""
    known = {}
    for cls in classes:
        known.update(field_types(cls))
    typed, problems = {}, []
    for key, value in values.items():
        if key not in known:
            problems.append(((key,), f"unknown key {key!r}{_did_you_mean(key, known)}"))
            continue
        try:
            typed[key] = coerce(value, known[key])
        except ValueError:
            problems.append(((key,), f"{key}={value!r} is not {_type_words(known[key])}"))
    return typed, problems


def _did_you_mean(key: str, known) -> str:
    """The nearest known key, from the key's own family first (``lora_rank`` → ``lora_r``, not ``local_rank``)."""
    family = [k for k in known if "_" in key and k.split("_")[0] == key.split("_")[0]]
    close = (difflib.get_close_matches(key, family, n=1, cutoff=0.6)
             or difflib.get_close_matches(key, list(known), n=1, cutoff=0.75))
    return f" (did you mean {close[0]!r}?)" if close else ""


def _build_arguments(classes, typed: dict, bad: set, problems: list) -> tuple | None:
    """The argument objects (run arguments, config, ModelConfig) from the well-typed values; None if a class fails
    even with its defaults.

    The classes' own checks stop at the first bad value, so each rejected value is recorded, left out (its default
    stands in) and the class built again, until it builds. A problem that names a value already rejected is not
    reported: it follows from the first."""
    values = _without_hardware_checks(typed)
    built = []
    for cls in classes:
        own = {k: v for k, v in values.items() if k in field_types(cls)}
        while True:
            try:
                built.append(cls(**own))
                break
            except (ValueError, TypeError) as error:
                message = _user_words(str(error))
                named = _keys_named(message)
                given = [k for k in named if k in own]
                if not set(named) & bad:
                    problems.append((tuple(given), message))
                if not own:
                    return None
                bad.update(given or own)
                own = {k: v for k, v in own.items() if k not in bad}
    return tuple(built)


def _keys_named(message: str) -> list[str]:
    """The keys an option check's message names (``num_generations=7``, ``--load_best_model_at_end``), in order."""
    return list(dict.fromkeys(a or b for a, b in re.findall(r"--([a-z]\w*)|\b([a-z]\w*)=", message)))


def _user_words(message: str) -> str:
    """An option check's message with the recipe's key names (the image sampler says ``image steps=``)."""
    return re.sub(r"\bimage (steps|temperature|cfg_scale)=", r"image_\1=", message)


# a resource check (the line's leading key) → the keys whose values it reads; skipped when one of them was rejected
_DEPENDS = {
    "dataset_name": {"dataset_name", "dataset_adapter", "dataset_train_split", "dataset_test_split", "train_limit",
                     "eval_limit", "reward_funcs", "prompt_format", "thinking_prompt", "image_tokenizer"},
    "reward_funcs": {"reward_funcs", "dataset_name", "dataset_adapter"},
    "reward_kwargs": {"reward_kwargs", "reward_funcs"},
}


def _located(keys: tuple, message: str, path, overrides: dict) -> str:
    """One problem line, prefixed with where its value was written: the recipe file, or the command line."""
    on_command_line = [key for key in keys if key in overrides]
    if on_command_line or path is None:
        if not on_command_line:
            return f"command line: {message}"
        key = on_command_line[0]
        value = overrides[key]
        shown = " ".join(map(str, value)) if isinstance(value, list) else value
        return f"command line: --{key} {shown}: {message.removeprefix(f'{key}: ')}"
    return f"{path}: {message}"


def _without_hardware_checks(values: dict) -> dict:
    """``bf16`` / ``fp16`` are checked by ``TrainingArguments`` against *this* machine; a recipe written for a GPU
    machine is still a valid recipe, so they are switched off for the check when there is no GPU here."""
    import torch

    if torch.cuda.is_available():
        return values
    return {**values, **{key: False for key in ("bf16", "fp16") if values.get(key)}}


def _is_local_path(name) -> bool:
    """A model / tokenizer / dataset name that refers to a file or folder (not a built-in name)."""
    return name is not None and ("/" in str(name) or str(name).startswith("."))


def _resource_problems(run, config, model, check_paths: bool) -> list[str]:
    """Rewards, model and image-tokenizer paths, datasets and output_dir; one line each."""
    from rewards.registry import get_reward, list_rewards

    from .cli import dataset_options
    from .data import load_prompt_dataset
    from .models.loading import resolve_model_path
    from .tasks import check_tasks

    problems, funcs = [], []
    for name in run.reward_funcs:
        try:
            funcs.append(get_reward(name))
        except (ValueError, ImportError, AttributeError) as error:
            close = difflib.get_close_matches(name, list_rewards(), n=1, cutoff=0.75) if ":" not in name else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"reward_funcs: {error}{hint}")
    problems += _reward_kwargs_problems(run, check_paths)
    if (model.model_name_or_path is not None and not str(model.model_name_or_path).startswith("random-")
            and (check_paths or not _is_local_path(model.model_name_or_path))):
        try:
            resolve_model_path(model.model_name_or_path)
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"model_name_or_path: {error}")
    if run.image_tokenizer and (check_paths or not _is_local_path(run.image_tokenizer)):
        from .models.image_tokenizer import resolve_image_tokenizer_path

        try:
            resolve_image_tokenizer_path(run.image_tokenizer)
        except (ValueError, FileNotFoundError) as error:
            problems.append(f"image_tokenizer: {error}")
    splits = [("train", run.dataset_train_split, run.train_limit)]
    if run.dataset_test_split:
        splits.append(("test", run.dataset_test_split, run.eval_limit))
    needed = ["prompt", *dict.fromkeys(c for f in funcs for c in getattr(f, "required_columns", ()))]
    adapter = _adapter_problems(run, needed, problems)
    # a hub data set needs the network, a local one the training machine's disk: both are paths
    offline = not check_paths and (_is_local_path(run.dataset_name) or (adapter and adapter.generate is None))
    for role, split, limit in splits if not offline else ():
        try:
            dataset = load_prompt_dataset(run.dataset_name, split, limit, required=needed, **dataset_options(run))
            check_tasks(dataset, run.image_tokenizer, name=f"dataset {run.dataset_name!r} ({role} split {split!r})")
        except (ValueError, FileNotFoundError, KeyError) as error:
            problems.append(f"dataset_name: {error}")
    if Path(config.output_dir).is_file():
        problems.append(f"output_dir: {config.output_dir!r} is a file, not a folder")
    return problems


def _reward_kwargs_problems(run, check_paths: bool) -> list[str]:
    """``reward_kwargs``: keys that are rewards with factories, argument names the factories take and, unless
    ``check_paths`` is off, what the factories themselves check (weights files; no model is loaded)."""
    from .rewarding import reward_kwargs_problems

    return reward_kwargs_problems(run.reward_funcs, run.reward_kwargs, build=check_paths)


def _adapter_problems(run, needed: list[str], problems: list[str]):
    """The recipe's data set adapter (None if none applies); an unknown one, or rewards that read columns its rows
    will not have, is a problem (found without loading anything)."""
    from .data.adapters import PROMPT_FORMATS, adapter_for

    if run.prompt_format not in PROMPT_FORMATS:
        problems.append(f"prompt_format: {run.prompt_format!r} is not one of {list(PROMPT_FORMATS)}")
    try:
        adapter = adapter_for(run.dataset_name, run.dataset_adapter)
    except ValueError as error:
        problems.append(f"dataset_adapter: {error}")
        return None
    if adapter is not None:
        missing = [c for c in needed if c != "prompt" and c not in adapter.produces]
        if missing:
            problems.append(f"reward_funcs: the rewards read column(s) {missing}, which the {adapter.name!r} "
                            f"adapter's rows do not have (they have {list(adapter.produces)})")
    return adapter


def overrides_from_argv(argv: list[str]) -> tuple[str | None, dict]:
    """(``--config`` path, {key: value}) from a ``train`` / ``sft`` command line: ``--key value``, ``--key=value``,
    ``--key v1 v2`` (a list) or a bare ``--flag`` (true)."""
    values: dict[str, list] = {}
    key = None
    for token in argv:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            key = name.replace("-", "_")
            values[key] = [value] if has_value else []
            key = None if has_value else key
        elif key is not None:
            values[key].append(token)
    flat = {k: ("true" if not v else v[0] if len(v) == 1 else v) for k, v in values.items()}
    return flat.pop("config", None), flat


def check_command_line(argv: list[str], config_cls) -> None:
    """``RecipeError`` listing every problem of a ``train`` / ``sft`` command line (its recipe and its overrides),
    before any model is loaded."""
    if "-h" in argv or "--help" in argv:
        return
    path, overrides = overrides_from_argv(argv)
    problems = check_recipe(path, config_cls, overrides)
    if problems:
        raise RecipeError(problems)
