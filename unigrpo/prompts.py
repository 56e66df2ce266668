"""TRL's dataset conventions for prompts and completions, in one place for the trainers and evaluation."""

from __future__ import annotations

from trl import is_conversational, maybe_apply_chat_template


def prompt_texts(prompts: list, tokenizer) -> list[str]:
    """Plain prompts as they are; chat prompts (lists of messages) through the tokenizer's chat template."""
    return [maybe_apply_chat_template({"prompt": p}, tokenizer)["prompt"] for p in prompts]


def completions_for_rewards(texts: list[str], example: dict) -> list:
    """Decoded answers in the form rewards expect: text, or assistant messages when the prompts are chats."""
    if example and is_conversational(example):
        return [[{"role": "assistant", "content": t}] for t in texts]
    return texts
