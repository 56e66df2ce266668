"""An offline character-level tokenizer with the LLaDA/MMaDA special tokens and chat template.

Real checkpoints ship their own tokenizer and use it as is. The tiny models of the tests and the demo need one that
can be built with no download: every printable ASCII character and newline is a token, plus LLaDA's special tokens
(``<|startoftext|>``, ``<|endoftext|>``, ``<|mdm_mask|>``, the chat headers, ``<|eot_id|>``), MMaDA's multimodal
ones (``<|soi|>``, ``<|eoi|>``, ``<|sov|>``, ``<|eov|>``, ``<|t2i|>``, ``<|mmu|>``, ``[iPAD]``) and a few multi-
character words that reasoning rewards look for (``<think>``, ``</think>``, ``\\boxed{``) so that tiny answers stay
short. Saved with ``save_pretrained`` it loads with ``AutoTokenizer.from_pretrained(path)``.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

BOS, EOS, MASK, UNK = "<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", "<|unk|>"
START_HEADER, END_HEADER, EOT = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
MULTIMODAL_SPECIALS = ["<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "[iPAD]"]
SPECIAL_TOKENS = [BOS, EOS, MASK, UNK, START_HEADER, END_HEADER, EOT, *MULTIMODAL_SPECIALS]
WORD_TOKENS = ["<think>", "</think>", "\\boxed{"]

# MMaDA / LLaDA-Instruct chat format (docs/design.md §4): BOS, then per message
# <|start_header_id|>role<|end_header_id|>\n\n content <|eot_id|>, then the assistant header when generating.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level ``PreTrainedTokenizerFast`` with mask, pad (= EOS, as in LLaDA), BOS, EOS and chat template."""
    chars = list(string.printable[:-5]) + ["\n"]  # printable ASCII without \t\r\x0b\x0c, plus newline
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=UNK,
        mask_token=MASK,
        additional_special_tokens=[START_HEADER, END_HEADER, EOT, *MULTIMODAL_SPECIALS],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens(WORD_TOKENS)
    return tokenizer
