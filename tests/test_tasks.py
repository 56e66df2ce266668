"""Mixed-task UniGRPO (t2t + mmu + t2i in one batch) on a micro MMaDA model with an 8-code test tokenizer."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from image_helpers import PatchColourTokenizer
from PIL import Image

from unigrpo import UniGRPOConfig, UniGRPOTrainer
from unigrpo.models import init_tiny, load_model, load_tokenizer


def target_text(prompts, completions, **kwargs):
    """Text tasks: fraction of '7' characters; None for image answers."""
    return [None if isinstance(c, Image.Image) else sum(ch == "7" for ch in c) / 4 for c in completions]


def redness(prompts, completions, **kwargs):
    """t2i: mean red minus mean blue in [−1, 1]; None for text answers."""
    def score(image):
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32)) / 255  # (8, 8, 3)
        return (pixels[..., 0].mean() - pixels[..., 2].mean()).item()

    return [score(c) if isinstance(c, Image.Image) else None for c in completions]


@pytest.fixture(scope="module")
def mmada_dir(tmp_path_factory):
    return init_tiny(tmp_path_factory.mktemp("mmada") / "m", preset="micro", mmada=True, codebook_size=8,
                     num_vq_tokens=4)


def config(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "out"), num_generations=4, per_device_train_batch_size=24,
                  num_iterations=2, max_completion_length=4, block_length=4, diffusion_steps=4, image_steps=4,
                  learning_rate=3e-3, max_steps=2, logging_steps=1, report_to=[], seed=0, beta=0.0,
                  use_cpu=True, save_strategy="no", disable_tqdm=True)
    values.update(overrides)
    return UniGRPOConfig(**values)


def mixed_dataset(n=6):
    image = Image.new("RGB", (8, 8), (200, 30, 30))
    rows = []
    for i in range(n):
        rows.append({"prompt": f"q{i}=", "task": "t2t", "image": None})
        rows.append({"prompt": "colour?", "task": "mmu", "image": image})
        rows.append({"prompt": f"a red square {i}", "task": "t2i", "image": None})
    return Dataset.from_list(rows)


def make_trainer(model_dir, tmp_path, dataset, rewards, eval_dataset=None, **overrides):
    return UniGRPOTrainer(model=load_model(model_dir), reward_funcs=rewards, args=config(tmp_path, **overrides),
                          train_dataset=dataset, eval_dataset=eval_dataset, processing_class=load_tokenizer(model_dir),
                          image_tokenizer=PatchColourTokenizer())


def test_a_mixed_batch_has_one_group_per_task_and_per_task_rewards(mmada_dir, tmp_path):
    trainer = make_trainer(mmada_dir, tmp_path, mixed_dataset(), [target_text, redness])
    rows = [trainer.train_dataset[i] for i in range(6)]  # 2 × (t2t, mmu, t2i)
    groups = [trainer.task_runner.rollout(t, [r for r in rows if r["task"] == t], 4, seed=0)
              for t in ("t2t", "mmu", "t2i")]
    t2t, mmu, t2i = groups
    assert all(isinstance(c, str) for c in t2t.completions + mmu.completions)
    assert all(isinstance(c, Image.Image) and c.size == (8, 8) for c in t2i.completions)
    ids = trainer.task_runner.ids
    codes = t2i.completion_ids - ids.image_offset
    assert ((codes >= 0) & (codes < 8)).all() and (t2i.suffix_ids == ids.eoi).all() and t2i.eligible.all()
    assert (mmu.prompt_ids == ids.mmu).any(dim=1).all() and (t2i.prompt_ids[:, -1] == ids.soi).all()

    batch = trainer.make_rollouts(rows)
    assert [t.completion_ids.shape for t in batch.tasks] == [(8, 4), (8, 4), (8, 4)]
    for task in batch.tasks:
        for view in task.views:  # the prompt (caption, image codes, question) and <|eoi|> are never masked
            P = view.input_ids.shape[1] - task.completion_ids.shape[1] - view.suffix_length
            unmasked = view.input_ids[:, :P]
            assert not (unmasked == trainer.mask_token_id).any()
            if view.suffix_length:
                assert (view.input_ids[:, -1] == ids.eoi).all()
    logged = trainer._metrics
    assert {"tasks/t2t/reward", "tasks/mmu/reward", "tasks/t2i/reward"} <= set(logged)
    assert not math.isnan(logged["rewards/redness/mean"][0]) and not math.isnan(logged["rewards/target_text/mean"][0])


def test_mixed_training_runs_and_logs_per_task(mmada_dir, tmp_path):
    trainer = make_trainer(mmada_dir, tmp_path, mixed_dataset(), [target_text, redness])
    trainer.train()
    logs = [e for e in trainer.state.log_history if "loss" in e]  # step 2 reuses step 1's rollouts (μ = 2)
    assert len(logs) == 2 and all(math.isfinite(e["loss"]) for e in logs)
    assert all(f"tasks/{t}/reward" in logs[0] for t in ("t2t", "mmu", "t2i"))


def test_t2i_training_raises_an_image_reward(mmada_dir, tmp_path):
    captions = Dataset.from_list([{"prompt": f"a picture {i}", "task": "t2i"} for i in range(32)])
    held_out = Dataset.from_list([{"prompt": f"another one {i}", "task": "t2i"} for i in range(3)])
    trainer = make_trainer(mmada_dir, tmp_path, captions, [redness], eval_dataset=held_out,
                           per_device_train_batch_size=16, max_steps=30, learning_rate=1e-2, num_iterations=1)
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    assert sum(rewards[-6:]) / 6 > sum(rewards[:6]) / 6 + 0.2, rewards
    grid = Image.open(tmp_path / "out" / "image_grid.png")  # before / after on the held-out captions
    assert grid.size[1] == 20 + 3 * 96 and grid.size[0] > 2 * 96
    assert trainer.evaluate()["eval_rewards/redness/mean"] > 0.3


def test_image_tasks_need_an_image_tokenizer_and_known_task_names(mmada_dir, tmp_path):
    with pytest.raises(ValueError, match="need an image tokenizer"):
        UniGRPOTrainer(model=load_model(mmada_dir), reward_funcs=[redness], args=config(tmp_path),
                       train_dataset=mixed_dataset(), processing_class=load_tokenizer(mmada_dir))
    bad = Dataset.from_list([{"prompt": "x", "task": "video"}] * 8)
    with pytest.raises(ValueError, match="task\\(s\\) \\['video'\\]"):
        make_trainer(mmada_dir, tmp_path, bad, [redness])
    small = init_tiny(tmp_path / "text-only", preset="micro", mmada=True, vocab_size=116,
                      embedding_size=116)  # 113 text tokens: no rows for 8 image codes
    with pytest.raises(ValueError, match="no room for 8 image codes"):
        make_trainer(small, tmp_path, mixed_dataset(), [target_text, redness])


def test_sft_learns_caption_to_image_and_mixes_tasks(mmada_dir, tmp_path):
    from unigrpo.evaluation import evaluate_accuracy
    from unigrpo.sft import MaskedSFTConfig, MaskedSFTTrainer

    red, blue = Image.new("RGB", (8, 8), (230, 20, 20)), Image.new("RGB", (8, 8), (20, 20, 230))
    rows = [{"prompt": "red", "task": "t2i", "image": red, "completion": None},
            {"prompt": "blue", "task": "t2i", "image": blue, "completion": None},
            {"prompt": "colour?", "task": "mmu", "image": red, "completion": "r"}] * 16
    args = MaskedSFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=12, learning_rate=1e-2,
                           max_steps=60, logging_steps=10, max_completion_length=4, block_length=4,
                           diffusion_steps=4, image_steps=4, report_to="none", disable_tqdm=True, use_cpu=True)
    trainer = MaskedSFTTrainer(load_model(mmada_dir), args, Dataset.from_list(rows),
                               processing_class=load_tokenizer(mmada_dir), image_tokenizer=PatchColourTokenizer())
    groups = trainer.collate(rows[:3])["groups"]
    assert [g["is_image"] for g in groups] == [True, False]
    ids = trainer.ids
    assert (groups[0]["suffix_ids"] == ids.eoi).all() and (groups[1]["prompt_ids"] == ids.mmu).any(dim=1).all()
    seen = []
    original = trainer.model.forward
    trainer.model.forward = lambda input_ids, **kw: (seen.append(input_ids), original(input_ids=input_ids, **kw))[1]
    trainer.train()
    trainer.model.forward = original
    images = [x for x in seen if (x == ids.t2i).any()]  # the t2i forwards: caption prompt, codes, <|eoi|>
    assert images and all((x[:, -1] == ids.eoi).all() and not (x[:, :-5] == trainer.mask_token_id).any()
                          for x in images)

    test = Dataset.from_list([{"prompt": "red", "task": "t2i"}, {"prompt": "blue", "task": "t2i"}])
    results = evaluate_accuracy(trainer.model, trainer.processing_class, test, [redness], ["redness"],
                                args.sampler_config(0.0), trainer.mask_token_id, return_completions=True,
                                image_sampler_config=args.image_sampler_config(0.0),
                                image_tokenizer=trainer.image_tokenizer)
    red_score, blue_score = redness(None, results["completions"])
    assert red_score > 0.5 and blue_score < -0.5, (red_score, blue_score)


def test_mmu_rollouts_with_the_fast_sampler(mmada_dir, tmp_path):
    """The image prefix of mmu prompts is part of the cached prompt: one step per block (every forward refreshes
    the cache) with τ = 1 gives the plain answers exactly; a dual cache with threshold decoding leaves no mask."""
    from dataclasses import replace

    trainer = make_trainer(mmada_dir, tmp_path, mixed_dataset(), [target_text, redness],
                           max_completion_length=8, block_length=4, diffusion_steps=2)
    runner, rows = trainer.task_runner, [trainer.train_dataset[i] for i in range(1, 6, 3)]  # the two mmu rows
    assert [r["task"] for r in rows] == ["mmu", "mmu"]
    plain = runner.rollout("mmu", rows, 4, seed=0)
    runner.sampler_config = replace(runner.sampler_config, cache="dual", threshold=1.0)
    exact = runner.rollout("mmu", rows, 4, seed=0)
    assert torch.equal(exact.completion_ids, plain.completion_ids)
    runner.sampler_config = replace(runner.sampler_config, steps=8, threshold=0.5)
    fast = runner.rollout("mmu", rows, 4, seed=0)
    assert fast.completion_ids.shape == (8, 8) and not (fast.completion_ids == trainer.mask_token_id).any()
