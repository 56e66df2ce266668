"""Masked-diffusion SFT: the loss's noise laws, the collator's canvas, and that training fits a tiny task."""

import pytest
import torch
from datasets import Dataset

from unigrpo.models import load_model, load_tokenizer
from unigrpo.sft import MaskedSFTConfig, MaskedSFTTrainer, continuous_mask, count_mask, masked_diffusion_sft_loss


def test_continuous_mask_probability_and_weight():
    g = torch.Generator().manual_seed(0)
    mask, weight = continuous_mask(torch.zeros(20000, 8, dtype=torch.long), g)
    # E[p] = (1 − 1e-3)/2 + 1e-3 ≈ 0.5005, and weight = 1/p is constant along a row
    assert abs(mask.float().mean().item() - 0.5005) < 0.01
    assert torch.equal(weight[:, :1].expand_as(weight), weight) and weight.max() <= 1000.0 + 1e-3


def test_count_mask_masks_k_tokens_with_weight_l_over_k():
    mask, weight = count_mask(torch.zeros(5000, 6, dtype=torch.long), torch.Generator().manual_seed(0))
    k = mask.sum(1)
    assert k.min() == 1 and k.max() == 6
    assert torch.allclose(weight[:, 0], 6.0 / k.float())
    assert abs(k.float().mean().item() - 3.5) < 0.1  # k ~ U{1..6}


def test_sft_loss_golden_value():
    logits = torch.zeros(1, 2, 4)
    logits[0, 0, 1] = 2.0
    targets = torch.tensor([[1, 3]])
    mask = torch.tensor([[True, False]])
    weight = torch.full((1, 2), 4.0)
    ce0 = -torch.log_softmax(logits[0, 0], -1)[1]
    assert torch.allclose(masked_diffusion_sft_loss(logits, targets, mask, weight), ce0 * 4.0 / 2)


def _config(tmp_path, **kw):
    values = dict(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=16, learning_rate=3e-3,
                  max_steps=60, logging_steps=10, max_completion_length=4, block_length=4, diffusion_steps=4,
                  sft_noise="count", report_to="none", disable_tqdm=True, save_strategy="no")
    values.update(kw)
    return MaskedSFTConfig(**values)


def test_sft_fits_a_tiny_mapping_and_prompt_is_never_masked(micro_model_dir, tmp_path):
    rows = [{"prompt": f"{c}=", "completion": c * 2, "answer": c * 2} for c in "abcd"] * 8
    trainer = MaskedSFTTrainer(load_model(micro_model_dir), _config(tmp_path), Dataset.from_list(rows),
                               processing_class=load_tokenizer(micro_model_dir))
    (batch,) = trainer.collate(rows[:4])["groups"]  # one task (t2t): one group
    eos = trainer.processing_class.eos_token_id
    assert batch["completion_ids"].shape == (4, 4) and (batch["completion_ids"][:, 2:] == eos).all()
    seen = []
    original = trainer.model.forward
    trainer.model.forward = lambda input_ids, **kw: (seen.append(input_ids), original(input_ids=input_ids, **kw))[1]
    trainer.train()
    prompt_len = batch["prompt_ids"].shape[1]
    assert all((x[:, :prompt_len] != trainer.mask_token_id).all() for x in seen)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    assert losses[-1] < 0.5 * losses[0], losses


def test_sft_bad_input(micro_model_dir, tmp_path):
    tok = load_tokenizer(micro_model_dir)
    with pytest.raises(ValueError, match="completion"):
        MaskedSFTTrainer(load_model(micro_model_dir), _config(tmp_path), Dataset.from_list([{"prompt": "x"}]),
                         processing_class=tok)
    with pytest.raises(ValueError, match="sft_noise"):
        _config(tmp_path, sft_noise="cosine")
    trainer = MaskedSFTTrainer(load_model(micro_model_dir), _config(tmp_path),
                               Dataset.from_list([{"prompt": "x", "completion": "toolong"}]), processing_class=tok)
    with pytest.raises(ValueError, match="max_completion_length=4"):
        trainer.collate([{"prompt": "x", "completion": "toolong"}])
