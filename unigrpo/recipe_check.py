"""Recipe validation before any model is loaded (docs/design.md §8): ``unigrpo check --config X``, and the first thing
``unigrpo train`` / ``unigrpo sft`` do.

Every problem is one line naming the file and the key, and all of them are reported at once:

    recipes/x.yaml: unknown key 'learning_rat' (did you mean 'learning_rate'?)
    recipes/x.yaml: num_generations='eight' is not an integer
    recipes/x.yaml: reward_funcs: unknown reward 'corectness' (did you mean 'math_correctness'?)
    recipes/x.yaml: per_device_train_batch_size=10 (completions) is not divisible by num_generations=8

Checked: unknown keys, value types, the configs' own option checks (impossible combinations), reward names, the
model and image-tokenizer paths (a folder with ``config.json``, a shipped name or ``random-<preset>``), the dataset
(built-in or a readable file with a ``prompt`` column, the columns its rewards declare, valid tasks), and that
``output_dir`` is not a file. Nothing is downloaded and no weights are read.
"""

from __future__ import annotations

import dataclasses
import difflib
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
        raise RecipeError([f"{path}: not valid YAML ({str(error).splitlines()[0]})"]) from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RecipeError([f"{path}: a recipe is a mapping of keys to values, got {type(values).__name__}"])
    return values


def check_recipe(path, config_cls, overrides: dict | None = None, check_paths: bool = True) -> list[str]:
    """Every problem of the recipe at ``path`` (plus command-line ``overrides``) for ``config_cls``; [] if none.

    ``check_paths=False`` skips what lives only on the training machine: the model, image tokenizer and dataset
    files (built-in names and rewards are still checked)."""
    try:
        values = {**read_recipe(path), **(overrides or {})}
    except RecipeError as error:
        return error.problems
    where = str(path)
    classes = argument_classes(config_cls)
    known = {}
    for cls in classes:
        known.update(field_types(cls))
    problems, typed = [], {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.75)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{where}: unknown key {key!r}{hint}")
            continue
        try:
            typed[key] = coerce(value, known[key])
        except ValueError:
            problems.append(f"{where}: {key}={value!r} is not {_type_words(known[key])}")
    if problems:
        return problems  # the checks below need well-typed values

    built = {}
    for cls in classes:
        own = {k: v for k, v in _without_hardware_checks(typed).items() if k in field_types(cls)}
        try:
            built[cls] = cls(**own)
        except (ValueError, TypeError) as error:
            problems.append(f"{where}: {error}")
    if problems:
        return problems
    run, config, model = (built[cls] for cls in classes)
    problems += [f"{where}: {p}" for p in dict.fromkeys(_resource_problems(run, config, model, check_paths))]
    return problems


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
    """``RecipeError`` listing every problem of a ``train`` / ``sft`` command line, before any model is loaded."""
    path, overrides = overrides_from_argv(argv)
    if path is None:
        return  # no recipe file: argparse checks the command-line keys and types itself
    problems = check_recipe(path, config_cls, overrides)
    if problems:
        raise RecipeError(problems)
