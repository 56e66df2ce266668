"""MMaDA's multimodal sequence layouts (docs/design.md §4), shared by rollouts, the likelihood and SFT.

    t2i:  [pad…] <|t2i|> BOS caption EOS <|soi|>   code_1 … code_N   <|eoi|>
          └──────────── prompt (left-padded) ───┘  └─ answer (N) ─┘  └ suffix ┘
    mmu:  [pad…] <|mmu|> <|soi|> code_1 … code_N <|eoi|> question (chat-formatted)   answer text …
          └──────────────────────────── prompt (left-padded) ──────────────────────┘

An image code c is the token id ``len(text tokenizer) + c`` (MMaDA-8B: 126349 + c), so the model's embedding rows
must reach ``len(tokenizer) + codebook_size``. Every special id is read from the tokenizer, never written here.
The prompt (caption, or image and question in ``mmu``) is never masked: it is the prompt of the UniGRPO view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SPECIAL_TOKENS = {"t2i": "<|t2i|>", "mmu": "<|mmu|>", "soi": "<|soi|>", "eoi": "<|eoi|>"}


@dataclass(frozen=True)
class MultimodalIds:
    """The ids a layout needs: task and image delimiters, BOS/EOS/pad, and where image codes start."""

    t2i: int
    mmu: int
    soi: int
    eoi: int
    bos: int
    eos: int
    pad: int
    image_offset: int  # token id of code 0 = len(text tokenizer)
    codebook_size: int

    def code_ids(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes in [0, codebook) → token ids."""
        return codes + self.image_offset

    def codes(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids of image codes → codes; any id outside the codebook's range is an error."""
        codes = token_ids - self.image_offset
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"image token ids must lie in [{self.image_offset}, "
                             f"{self.image_offset + self.codebook_size}); got [{token_ids.min().item()}, "
                             f"{token_ids.max().item()}]")
        return codes


def multimodal_ids(tokenizer, codebook_size: int, vocab_rows: int | None = None) -> MultimodalIds:
    """Read the layout ids from ``tokenizer``; check that ``vocab_rows`` (the model's embedding rows) leave room
    for ``codebook_size`` codes after the text vocabulary. One ValueError naming what is missing."""
    ids = {}
    for name, token in SPECIAL_TOKENS.items():
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {token} token; multimodal layouts need "
                             f"{', '.join(SPECIAL_TOKENS.values())} (MMaDA's tokenizer has them)")
        ids[name] = token_id
    for name in ("bos_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"the tokenizer has no {name}; the t2i layout needs BOS and EOS")
    offset = len(tokenizer)
    if vocab_rows is not None and offset + codebook_size > vocab_rows:
        raise ValueError(f"the model's vocabulary has {vocab_rows} rows, no room for {codebook_size} image codes "
                         f"after the {offset} text tokens (needs ≥ {offset + codebook_size}); use an MMaDA "
                         "checkpoint or a model initialised with the image tokenizer's codebook")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return MultimodalIds(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=pad, image_offset=offset,
                         codebook_size=codebook_size, **ids)


def left_pad(rows: list[list[int]], pad_id: int, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ids → (B, P) left-padded ids and their (B, P) mask (1 = token)."""
    width = max(map(len, rows)) if width is None else width
    if any(len(r) > width for r in rows):
        raise ValueError(f"a row of {max(map(len, rows))} tokens does not fit in {width}")
    ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def t2i_prompt_rows(captions: list[str], tokenizer, ids: MultimodalIds) -> list[list[int]]:
    """``<|t2i|> BOS caption EOS <|soi|>`` per caption (unpadded)."""
    rows = []
    for i, caption in enumerate(captions):
        if not isinstance(caption, str) or not caption.strip():
            raise ValueError(f"t2i row {i} has no caption (prompt={caption!r})")
        text = tokenizer(caption, add_special_tokens=False)["input_ids"]
        rows.append([ids.t2i, ids.bos, *text, ids.eos, ids.soi])
    return rows


def t2i_prompts(captions: list[str], tokenizer, ids: MultimodalIds) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded t2i prompts (B, P) and mask; the answer (N codes) and the suffix ``<|eoi|>`` follow."""
    return left_pad(t2i_prompt_rows(captions, tokenizer, ids), ids.pad)


def t2i_unconditional_prompts(batch: int, width: int, ids: MultimodalIds) -> tuple[torch.Tensor, torch.Tensor]:
    """The empty-caption prompt ``<|t2i|> BOS EOS <|soi|>`` left-padded to ``width``: CFG's unconditional branch."""
    return left_pad([[ids.t2i, ids.bos, ids.eos, ids.soi]] * batch, ids.pad, width)


def image_suffix(batch: int, ids: MultimodalIds, device=None) -> torch.Tensor:
    """(B, 1) ``<|eoi|>`` that closes a t2i answer."""
    return torch.full((batch, 1), ids.eoi, dtype=torch.long, device=device)


def mmu_prompts(image_codes: torch.Tensor, questions: list[str], tokenizer,
                ids: MultimodalIds) -> tuple[torch.Tensor, torch.Tensor]:
    """``<|mmu|> <|soi|> codes <|eoi|> question`` per row, left-padded. image_codes (B, N) in [0, codebook);
    questions: chat-formatted text (the tokenizer's chat template already applied)."""
    if image_codes.shape[0] != len(questions):
        raise ValueError(f"{image_codes.shape[0]} images for {len(questions)} questions")
    rows = []
    for codes, question in zip(ids.code_ids(image_codes).tolist(), questions):
        text = tokenizer(question, add_special_tokens=False)["input_ids"]
        rows.append([ids.mmu, ids.soi, *codes, ids.eoi, *text])
    return left_pad(rows, ids.pad)


def parse_t2i(sequence: list[int], ids: MultimodalIds, tokenizer) -> tuple[str, torch.Tensor]:
    """One full t2i sequence (padding allowed) → (caption, codes): the inverse of the layout, for checks."""
    start = sequence.index(ids.t2i)
    soi, eoi = sequence.index(ids.soi, start), len(sequence) - 1 - sequence[::-1].index(ids.eoi)
    if sequence[start + 1] != ids.bos or sequence[soi - 1] != ids.eos:
        raise ValueError("not a t2i sequence: expected <|t2i|> BOS caption EOS <|soi|>")
    caption = tokenizer.decode(sequence[start + 2 : soi - 1])
    return caption, ids.codes(torch.tensor(sequence[soi + 1 : eoi]))


def parse_mmu(sequence: list[int], ids: MultimodalIds, tokenizer) -> tuple[torch.Tensor, str]:
    """One mmu prompt (padding allowed) → (image codes, question text)."""
    start = sequence.index(ids.mmu)
    if sequence[start + 1] != ids.soi:
        raise ValueError("not an mmu sequence: expected <|mmu|> <|soi|>")
    eoi = sequence.index(ids.eoi, start)
    return ids.codes(torch.tensor(sequence[start + 2 : eoi])), tokenizer.decode(sequence[eoi + 1 :])
