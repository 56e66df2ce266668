import pytest
import torch

from unigrpo.models import build_char_tokenizer
from unigrpo.models.layouts import (
    image_suffix,
    left_pad,
    mmu_prompts,
    multimodal_ids,
    parse_mmu,
    parse_t2i,
    t2i_prompts,
    t2i_unconditional_prompts,
)


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def ids(tok):
    return multimodal_ids(tok, codebook_size=8, vocab_rows=128)


def test_ids_come_from_the_tokenizer_and_codes_follow_the_text_vocabulary(tok, ids):
    assert ids.t2i == tok.convert_tokens_to_ids("<|t2i|>") and ids.soi == tok.convert_tokens_to_ids("<|soi|>")
    assert ids.image_offset == len(tok)  # MMaDA: code c is token len(tokenizer) + c
    codes = torch.tensor([[0, 7, 3]])
    assert torch.equal(ids.code_ids(codes), codes + len(tok))
    assert torch.equal(ids.codes(ids.code_ids(codes)), codes)
    with pytest.raises(ValueError, match="image token ids"):
        ids.codes(torch.tensor([len(tok) + 8]))


def test_t2i_round_trip(tok, ids):
    prompt_ids, mask = t2i_prompts(["a red circle on blue", "a cat"], tok, ids)
    codes = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    sequences = torch.cat([prompt_ids, ids.code_ids(codes), image_suffix(2, ids)], dim=1)
    for row, caption in zip(range(2), ["a red circle on blue", "a cat"]):
        parsed_caption, parsed_codes = parse_t2i(sequences[row].tolist(), ids, tok)
        assert parsed_caption == caption and torch.equal(parsed_codes, codes[row])
    # left padding: the shorter caption is padded at the far left, before <|t2i|>, and masked out
    assert mask[1, 0] == 0 and prompt_ids[1, (mask[1] == 0).sum()] == ids.t2i
    assert (prompt_ids[:, -1] == ids.soi).all()


def test_unconditional_prompt_is_the_empty_caption_at_the_same_width(tok, ids):
    prompt_ids, _ = t2i_prompts(["a red circle on blue"], tok, ids)
    uncond, mask = t2i_unconditional_prompts(3, prompt_ids.shape[1], ids)
    assert uncond.shape == (3, prompt_ids.shape[1])
    assert uncond[0, -4:].tolist() == [ids.t2i, ids.bos, ids.eos, ids.soi] and mask[0, -4:].all()


def test_mmu_round_trip(tok, ids):
    codes = torch.tensor([[1, 2, 3, 4], [0, 0, 7, 7]])
    prompt_ids, mask = mmu_prompts(codes, ["What colour?", "Shape?"], tok, ids)
    for row, question in enumerate(["What colour?", "Shape?"]):
        parsed_codes, parsed_question = parse_mmu(prompt_ids[row][mask[row].bool()].tolist(), ids, tok)
        assert torch.equal(parsed_codes, codes[row]) and parsed_question == question


def test_bad_input_gets_one_clear_error(tok, ids):
    with pytest.raises(ValueError, match="no room for 300 image codes"):
        multimodal_ids(tok, codebook_size=300, vocab_rows=128)
    with pytest.raises(ValueError, match="t2i row 1 has no caption"):
        t2i_prompts(["ok", ""], tok, ids)
    with pytest.raises(ValueError, match="2 images for 1 questions"):
        mmu_prompts(torch.zeros(2, 4, dtype=torch.long), ["q"], tok, ids)
    with pytest.raises(ValueError, match="does not fit"):
        left_pad([[1, 2, 3]], 0, width=2)


def test_a_tokenizer_without_image_tokens_is_refused():
    tok = build_char_tokenizer()
    real = tok.convert_tokens_to_ids
    tok.convert_tokens_to_ids = lambda token: tok.unk_token_id if token == "<|soi|>" else real(token)
    with pytest.raises(ValueError, match="no <\\|soi\\|> token"):
        multimodal_ids(tok, 8)
