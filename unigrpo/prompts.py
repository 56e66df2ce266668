"""TRL's dataset conventions for prompts and completions, in one place for the trainers and evaluation."""

from __future__ import annotations

import json
import os

from trl import is_conversational, maybe_apply_chat_template


PROMPT_FORMS = "a prompt is text or a list of {role, content} messages"


def prompt_problem(prompt) -> str | None:
    """What is wrong with one row's prompt under TRL's conventions (plain text, or a chat: a non-empty list of
    ``{"role": ..., "content": ...}`` messages), or None; in words for an error line."""
    if isinstance(prompt, str):
        return None
    if prompt is None:
        return f"is null; {PROMPT_FORMS}"
    if isinstance(prompt, list) and prompt:
        for i, message in enumerate(prompt):
            if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                    and isinstance(message.get("content"), (str, list))):
                return f"message {i} is not a {{role, content}} message: {str(message)[:80]}"
        return None
    kind = {bool: "true/false", int: "a number", float: "a number", dict: "an object", list: "an empty list"}.get(
        type(prompt), type(prompt).__name__)
    return f"is {kind} ({str(prompt)[:80]}); {PROMPT_FORMS}"


def prompt_texts(prompts: list, tokenizer) -> list[str]:
    """Plain prompts as they are; chat prompts (lists of messages) through the tokenizer's chat template."""
    return [maybe_apply_chat_template({"prompt": p}, tokenizer)["prompt"] for p in prompts]


def completions_for_rewards(texts: list[str], example: dict) -> list:
    """Decoded answers in the form rewards expect: text, or assistant messages when the prompts are chats."""
    if example and is_conversational(example):
        return [[{"role": "assistant", "content": t}] for t in texts]
    return texts


def model_context_length(model) -> int | None:
    """``max_sequence_length`` of a model object, or of a model folder's ``config.json`` without loading weights
    (a LoRA adapter folder: its base model's); None if it has none."""
    if not isinstance(model, (str, os.PathLike)):
        return getattr(model.config, "max_sequence_length", None)
    from .models.loading import resolve_model_path

    path = resolve_model_path(model)
    if not (path / "config.json").is_file():  # an adapter folder
        base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        return model_context_length(base) if base else None
    return json.loads((path / "config.json").read_text()).get("max_sequence_length")


def check_prompt_lengths(dataset, tokenizer, max_sequence_length: int | None, completion_length: int,
                         name: str = "dataset") -> None:
    """One ValueError naming the first text row whose prompt + answer canvas exceeds the model's context.

    Text rows only (``task`` absent or ``t2t``); image rows are laid out by ``unigrpo.tasks`` and checked by the
    rollout engine. Nothing is truncated silently."""
    if not max_sequence_length:
        return
    tasks = dataset["task"] if "task" in dataset.column_names else [None] * len(dataset)
    rows = [i for i, task in enumerate(tasks) if task in (None, "", "t2t")]
    if not rows:
        return
    texts = prompt_texts([dataset[i]["prompt"] for i in rows], tokenizer)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    for i, length in zip(rows, lengths):
        if length + completion_length > max_sequence_length:
            longer = sum(n + completion_length > max_sequence_length for n in lengths)
            raise ValueError(
                f"{name} row {i}: the prompt is {length} tokens + max_completion_length {completion_length} > the "
                f"model's max_sequence_length {max_sequence_length} ({longer} row(s) too long); shorten or filter "
                f"them, or lower max_completion_length")
