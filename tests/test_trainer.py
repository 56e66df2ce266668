"""UniGRPOTrainer: the outline's invariants on the micro model, and that a short run learns a trivial reward."""

import copy

import pytest
import torch
from datasets import Dataset

from unigrpo import UniGRPOConfig, UniGRPOTrainer
from unigrpo.likelihood import answer_token_logps
from unigrpo.loss import k3_kl
from unigrpo.models import load_model, load_tokenizer

TARGET = "7"


def count_target_reward(prompts, completions, completion_ids, **kwargs):
    """Dense, trivially learnable: the fraction of answer tokens that are the TARGET character."""
    return [sum(ch == TARGET for ch in c) / 4 for c in completions]


def make_config(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), num_generations=4, per_device_train_batch_size=16, num_iterations=2,
        max_completion_length=4, block_length=4, diffusion_steps=4, temperature=1.0, learning_rate=3e-3,
        max_steps=4, logging_steps=1, seed=0, save_strategy="no", report_to="none", disable_tqdm=True,
    )
    values.update(overrides)
    return UniGRPOConfig(**values)


def prompts_dataset(n=32):
    return Dataset.from_list([{"prompt": f"q{i:02d}=", "answer": str(i)} for i in range(n)])


def make_trainer(model_dir, tmp_path, reward=count_target_reward, **overrides):
    return UniGRPOTrainer(
        model=load_model(model_dir), reward_funcs=[reward], args=make_config(tmp_path, **overrides),
        train_dataset=prompts_dataset(), processing_class=load_tokenizer(model_dir),
    )


def first_rows(trainer, n=4):
    return [trainer.train_dataset[i] for i in range(n)]


@pytest.mark.parametrize("estimator", ["unigrpo", "d1", "coupled"])
def test_ratio_is_one_and_kl_zero_before_the_first_update(micro_model_dir, tmp_path, estimator):
    trainer = make_trainer(micro_model_dir, tmp_path, beta=0.1, likelihood_estimator=estimator)
    (rollouts,) = trainer.make_rollouts(first_rows(trainer)).tasks  # one task (t2t): one group of answers
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, rollouts.views[0], rollouts.completion_ids)
    assert torch.isfinite(logps).all()
    assert torch.equal(logps, rollouts.old_logps[0])
    assert torch.equal(k3_kl(rollouts.ref_logps[0], logps), torch.zeros_like(logps))


def test_views_are_fixed_at_rollout_time_and_scored_by_theta_old(micro_model_dir, tmp_path):
    trainer = make_trainer(micro_model_dir, tmp_path, num_iterations=3, max_steps=3)
    initial = copy.deepcopy(trainer.model).eval()
    trainer.train()
    (rollouts,) = trainer.inner_steps.rollouts_for(0).tasks
    assert len(rollouts.views) == 3
    # the old log-probs of the last view were taken before any update, on that same stored view
    with torch.no_grad():
        expected = answer_token_logps(initial, rollouts.views[2], rollouts.completion_ids)
    assert torch.allclose(expected, rollouts.old_logps[2], atol=1e-6)
    ratios = torch.stack([v.mask_ratio for v in rollouts.views])  # (μ, N): Algorithm 1 sweeps up to 1
    assert (ratios[1:] >= ratios[:-1]).all() and torch.allclose(ratios[-1], torch.ones_like(ratios[-1]))
    n_prompt = rollouts.views[0].input_ids.shape[1] - rollouts.completion_ids.shape[1]
    prompts = [v.input_ids[:, :n_prompt] for v in rollouts.views]
    assert all(torch.equal(prompts[0], p) for p in prompts)  # the prompt is never masked


def test_gradients_reach_only_masked_positions(micro_model_dir, tmp_path):
    trainer = make_trainer(micro_model_dir, tmp_path)
    batch = trainer.make_rollouts(first_rows(trainer))
    # all-equal rewards would give zero advantages and no gradient: force a non-zero advantage per answer
    batch.advantages = torch.linspace(-1, 1, batch.advantages.numel())
    (rollouts,) = batch.tasks
    captured = {}

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, **kwargs):
            out = self.inner(**kwargs)
            out.logits.register_hook(lambda g: captured.setdefault("grad", g))
            return out

    trainer.compute_loss(Spy(trainer.model), batch.inputs_for_step(0)).backward()
    grad = captured["grad"].abs().sum(-1)  # (N, P+L)
    L = rollouts.completion_ids.shape[1]
    assert torch.equal(grad[:, :-L], torch.zeros_like(grad[:, :-L]))  # prompt logits get nothing
    scored = rollouts.views[0].score_mask
    assert (grad[:, -L:][scored] > 0).all()
    assert torch.equal(grad[:, -L:][~scored], torch.zeros_like(grad[:, -L:][~scored]))


@pytest.mark.parametrize("beta,num_iterations,expect_ref,expect_old", [(0.1, 2, 2, 2), (0.0, 2, 0, 2), (0.1, 1, 1, 0)])
def test_forward_pass_counts(micro_model_dir, tmp_path, beta, num_iterations, expect_ref, expect_old):
    trainer = make_trainer(micro_model_dir, tmp_path, beta=beta, num_iterations=num_iterations,
                           max_steps=num_iterations)
    trainer.train()
    N = 16  # answers per rollout batch
    assert trainer.forward_counts["policy"] == num_iterations * N
    assert trainer.forward_counts["old"] == expect_old * N
    assert trainer.forward_counts["ref"] == expect_ref * N


@pytest.mark.parametrize("fast", [{}, dict(kv_cache="dual", confidence_threshold=0.9, max_completion_length=8,
                                            block_length=4, diffusion_steps=8)])
def test_short_run_increases_a_trivially_learnable_reward(micro_model_dir, tmp_path, fast):
    # fast: rollouts with a dual KV cache and threshold decoding (issue #7); the loss is unchanged
    trainer = make_trainer(micro_model_dir, tmp_path, max_steps=40, learning_rate=1e-2, num_iterations=1, **fast)
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    assert len(rewards) == 40
    assert sum(rewards[-8:]) / 8 > sum(rewards[:8]) / 8 + 0.15, rewards


def test_peft_changes_only_adapters_and_reference_stays_fixed(micro_model_dir, tmp_path):
    from peft import LoraConfig

    from unigrpo.models import LORA_TARGET_MODULES

    trainer = UniGRPOTrainer(
        model=load_model(micro_model_dir), reward_funcs=[count_target_reward],
        args=make_config(tmp_path, beta=0.1, max_steps=4, learning_rate=1e-2),
        train_dataset=prompts_dataset(), processing_class=load_tokenizer(micro_model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET_MODULES, init_lora_weights=False,
                               task_type="CAUSAL_LM"),  # TRL's ModelConfig default task type
    )
    assert trainer.ref_model is None  # no second copy: the reference is the policy with adapters disabled
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    reference = load_model(micro_model_dir).eval()
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all("lora_" in n for n in changed)
    x = torch.randint(10, 100, (2, 9))
    with torch.no_grad(), trainer.model.disable_adapter():
        assert torch.allclose(trainer.model(input_ids=x).logits, reference(x).logits, atol=1e-6)
    assert any(e.get("kl", 0) > 0 for e in trainer.state.log_history)


def test_logged_metrics_and_outputs(micro_model_dir, tmp_path):
    trainer = make_trainer(micro_model_dir, tmp_path, beta=0.05, log_completions=True, max_steps=2)
    trainer.train()
    logged = trainer.state.log_history[0]
    for key in ("reward", "reward_std", "rewards/count_target_reward/mean", "frac_reward_zero_std", "kl",
                "clip_ratio/region_mean", "completions/mean_length", "mask_ratio", "timing/rollout", "loss"):
        assert key in logged, key
    assert 0.0 <= logged["mask_ratio"] <= 1.0
    assert list((tmp_path / "out" / "completions").glob("step_*.jsonl"))
    assert (tmp_path / "out" / "training_curves.png").stat().st_size > 1000


def test_bad_input_fails_before_training(micro_model_dir, tmp_path):
    model, tok = load_model(micro_model_dir), load_tokenizer(micro_model_dir)
    with pytest.raises(ValueError, match="'prompt'"):
        UniGRPOTrainer(model, [count_target_reward], make_config(tmp_path), Dataset.from_list([{"q": "x"}]),
                       processing_class=tok)
    with pytest.raises(ValueError, match="num_generations=1"):
        make_config(tmp_path, num_generations=1)
    with pytest.raises(ValueError, match="not divisible by num_generations"):
        make_config(tmp_path, num_generations=3)
    with pytest.raises(ValueError, match="loss_type='ppo'"):
        make_config(tmp_path, loss_type="ppo")
    with pytest.raises(ValueError, match="mask_schedule='cosine'"):
        make_config(tmp_path, mask_schedule="cosine")
    with pytest.raises(ValueError, match="reward_weights"):
        UniGRPOTrainer(model, [count_target_reward], make_config(tmp_path, reward_weights=[1.0, 2.0]),
                       prompts_dataset(), processing_class=tok)


def test_reward_with_wrong_length_is_a_clear_error(micro_model_dir, tmp_path):
    def short_reward(completions, **kwargs):
        return [1.0]

    with pytest.raises(ValueError, match="short_reward"):  # caught by the pre-flight call, before training
        make_trainer(micro_model_dir, tmp_path, reward=short_reward)

    def text_reward(completions, **kwargs):
        return ["good"] * len(completions)

    with pytest.raises(ValueError, match="text_reward.*'good'"):
        make_trainer(micro_model_dir, tmp_path, reward=text_reward)


def test_model_given_as_a_path_or_a_shipped_checkpoint_name(micro_model_dir, tmp_path):
    by_path = UniGRPOTrainer(str(micro_model_dir), [count_target_reward], make_config(tmp_path), prompts_dataset())
    assert by_path.mask_token_id == by_path.processing_class.mask_token_id
    by_name = UniGRPOTrainer("tiny-arith-sft", ["math_correctness"], make_config(tmp_path), prompts_dataset())
    assert by_name.model.config.d_model == 128
    with pytest.raises(FileNotFoundError, match="not a built-in checkpoint"):
        UniGRPOTrainer("no-such-model", [count_target_reward], make_config(tmp_path), prompts_dataset())


def test_a_prompt_longer_than_the_context_is_a_clear_error(micro_model_dir, tmp_path):
    rows = [{"prompt": "q1="}, {"prompt": "1" * 600}, {"prompt": "2" * 700}]  # micro: max_sequence_length 512
    with pytest.raises(ValueError, match=r"train_dataset row 1: the prompt is 600 tokens \+ max_completion_length 4 "
                                         r"> the model's max_sequence_length 512 \(2 row\(s\) too long\)"):
        UniGRPOTrainer(model=load_model(micro_model_dir), reward_funcs=[count_target_reward],
                       args=make_config(tmp_path), train_dataset=Dataset.from_list(rows),
                       processing_class=load_tokenizer(micro_model_dir))


def test_a_too_long_prompt_is_found_before_the_weights_load(micro_model_dir, tmp_path, monkeypatch):
    """Given a model folder, the context length comes from its config.json: an 8B load never precedes the error."""
    import unigrpo.trainer

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were loaded before the prompt lengths were checked")

    monkeypatch.setattr(unigrpo.trainer, "load_model", no_loading)
    rows = [{"prompt": "q1="}, {"prompt": "1" * 600}]
    with pytest.raises(ValueError, match="train_dataset row 1: the prompt is 600 tokens"):
        UniGRPOTrainer(model=str(micro_model_dir), reward_funcs=[count_target_reward], args=make_config(tmp_path),
                       train_dataset=Dataset.from_list(rows))


def test_each_epoch_draws_a_new_prompt_order(micro_model_dir, tmp_path):
    """The Trainer's per-epoch ``set_epoch`` reaches the prompt sampler: epoch 2 is a new shuffle of the same
    prompts, not a replay of epoch 1."""
    seen = []

    def recording_reward(prompts, completions, **kwargs):
        seen.extend(prompts[::4])  # one entry per prompt (its G = 4 answers are consecutive)
        return [0.0] * len(completions)

    trainer = make_trainer(micro_model_dir, tmp_path, reward=recording_reward, num_iterations=1,
                           per_device_train_batch_size=32, max_steps=8)  # 8 prompts a step, 4 steps an epoch
    trainer.train()
    first, second = seen[-64:-32], seen[-32:]  # (before them: the reward's pre-flight call on one sample)
    assert len(seen) in (64, 65) and sorted(first) == sorted(second) == sorted(prompts_dataset()["prompt"])
    assert first != second


def test_clip_regions_are_logged_from_the_masks_the_loss_returns():
    """``clip_ratio/*`` come from ``per_token_loss``'s ``clipped`` (split by the sign of A), not recomputed from the
    ratio with the config's ε (the holder below has no ``args``: nothing else could be read)."""
    from collections import defaultdict
    from types import SimpleNamespace

    from unigrpo.likelihood import NoisedView
    from unigrpo.loss import per_token_loss
    from unigrpo.training_logs import TrainingLogsMixin

    log = torch.log
    logps = log(torch.tensor([[0.5, 0.9, 0.3], [0.2, 0.3, 0.5]]))
    old = log(torch.tensor([[0.25, 0.9, 0.3], [0.4, 0.3, 0.1]]))  # ρ: [[2, 1, 1], [0.5, 1, 5]]
    advantages = torch.tensor([[1.0], [-2.0]])
    _, kl, clipped = per_token_loss(logps, old, old, advantages, 0.2, 0.28, beta=0.0)
    score_mask = torch.tensor([[True, True, False], [True, True, True]])  # 5 scored tokens
    view = NoisedView(torch.zeros(2, 3), None, score_mask, torch.arange(2), torch.tensor([0.5, 0.5]))
    holder = SimpleNamespace(_metrics=defaultdict(list))
    TrainingLogsMixin.log_loss_metrics(holder, logps, kl, clipped, advantages, view)
    m = holder._metrics
    # clipped: ρ = 2 with A > 0 (high), ρ = 0.5 with A < 0 (low); ρ = 5 with A < 0 takes the unclipped term
    assert m["clip_ratio/high_mean"] == [pytest.approx(1 / 5)] and m["clip_ratio/low_mean"] == [pytest.approx(1 / 5)]
    assert m["clip_ratio/region_mean"] == [pytest.approx(2 / 5)] and "kl" not in m
