"""unigrpo/training_logs.py: the rollout metrics a short run logs (README "Metrics")."""

import pytest
from datasets import Dataset

from unigrpo import UniGRPOConfig, UniGRPOTrainer
from unigrpo.models import load_model, load_tokenizer


def length_reward(prompts, completions, **kwargs):
    return [len(c) / 4 for c in completions]


def test_rollout_decode_metrics_are_logged(micro_model_dir, tmp_path):
    """The plain sampler with one block commits L / steps tokens per forward in every row (4 / 2); the mean
    probability of the committed tokens is a probability."""
    args = UniGRPOConfig(
        output_dir=str(tmp_path / "out"), num_generations=2, per_device_train_batch_size=4, max_completion_length=4,
        block_length=4, diffusion_steps=2, kv_cache="none", confidence_threshold=None, max_steps=1, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )
    dataset = Dataset.from_list([{"prompt": f"q{i}="} for i in range(4)])
    trainer = UniGRPOTrainer(model=load_model(micro_model_dir), reward_funcs=[length_reward], args=args,
                             train_dataset=dataset, processing_class=load_tokenizer(micro_model_dir))
    trainer.train()
    logged = trainer.state.log_history[0]
    assert logged["rollout/tokens_per_forward"] == pytest.approx(4 / 2)
    assert 0 < logged["rollout/committed_confidence"] <= 1
