"""Scoring with several rewards: weights, None = not applicable, and the reward_errors policy."""

import math

import pytest
import torch

from unigrpo.rewarding import (
    combine_rewards,
    preflight_rewards,
    resolve_reward_funcs,
    reward_kwargs_problems,
    score_completions,
)


def length_reward(completions, **kwargs):
    return [float(len(c)) for c in completions]


def image_only(completions, task, **kwargs):
    return [1.0 if t == "t2i" else None for t in task]


def fragile(completions, **kwargs):
    if any("boom" in c for c in completions):
        raise ZeroDivisionError("boom")
    return [1.0] * len(completions)


def nan_reward(completions, **kwargs):
    return [math.nan if c == "x" else 0.5 for c in completions]


COMPLETIONS = ["ab", "boom", "x"]
ARGS = dict(prompts=["p"] * 3, completions=COMPLETIONS, completion_ids=[[], [], []], columns={"task": ["t2t", "t2i", "t2t"]})


def test_weights_and_not_applicable():
    scores = score_completions([length_reward, image_only], **ARGS)
    assert scores.values[:, 0].tolist() == [2.0, 4.0, 1.0]
    assert scores.values[1, 1] == 1.0 and scores.values[0, 1].isnan() and scores.values[2, 1].isnan()
    combined = combine_rewards(scores.values, torch.tensor([0.5, 2.0]))
    assert combined.tolist() == [1.0, 4.0, 0.5]


def test_a_raising_reward_names_the_sample_by_default():
    with pytest.raises(RuntimeError, match="reward 'fragile' failed on sample 1"):
        score_completions([length_reward, fragile], **ARGS)


def test_skip_turns_the_failing_samples_into_none_and_counts_them():
    scores = score_completions([length_reward, fragile, nan_reward], **ARGS, reward_errors="skip")
    assert scores.skipped == [0, 1, 1]
    assert scores.values[1, 1].isnan() and scores.values[0, 1] == 1.0 and scores.values[2, 1] == 1.0
    assert scores.values[2, 2].isnan() and scores.values[0, 2] == 0.5
    with pytest.raises(ValueError, match="nan at index 2|returned nan"):
        score_completions([nan_reward], **ARGS)


def test_contract_violations_always_raise():
    with pytest.raises(ValueError, match="returned 1 values for 3"):
        score_completions([lambda **k: [1.0]], **ARGS, reward_errors="skip")
    with pytest.raises(ValueError, match="reward_errors"):
        score_completions([length_reward], **ARGS, reward_errors="ignore")


def test_resolve_by_name_path_and_callable():
    funcs, names = resolve_reward_funcs(["math_correctness", "rewards.format:boxed_format", length_reward])
    assert names == ["math_correctness", "rewards.format:boxed_format", "length_reward"]
    with pytest.raises(ValueError, match="empty"):
        resolve_reward_funcs([])


# ---- reward_timeout (issue #8) -------------------------------------------------------------------------------------


def hangs(completions, **kwargs):
    import time

    time.sleep(30)
    return [1.0] * len(completions)


async def hangs_async(completions, **kwargs):
    import asyncio

    await asyncio.sleep(30)
    return [1.0] * len(completions)


def hangs_on_boom(completions, **kwargs):
    if any("boom" in c for c in completions):
        if len(completions) > 1:
            raise ValueError("batch failed")  # forces the sample-by-sample pass
        hangs(completions)
    return [2.0] * len(completions)


@pytest.mark.parametrize("slow", [hangs, hangs_async])
def test_a_hanging_reward_scores_none_for_the_batch_and_the_run_goes_on(slow, caplog):
    import time

    start = time.perf_counter()
    scores = score_completions([length_reward, slow], **ARGS, timeout=0.3)
    assert time.perf_counter() - start < 5  # one wait, not one per sample
    assert scores.values[:, 0].tolist() == [2.0, 4.0, 1.0]  # the other reward is unaffected
    assert scores.values[:, 1].isnan().all() and scores.skipped == [0, 3]
    assert [r.getMessage() for r in caplog.records] == [
        f"reward '{slow.__name__}' did not return within reward_timeout=0.3 s: it scores None (not applicable) "
        "for this batch of 3"]


def test_a_time_out_warns_on_every_batch(caplog):
    """Not once per process (what ``warnings.warn`` from one line does): each hung batch is a warning."""
    for _ in range(3):
        score_completions([hangs], **ARGS, timeout=0.2)
    assert sum("did not return within reward_timeout" in r.getMessage() for r in caplog.records) == 3
    assert all(r.levelname == "WARNING" for r in caplog.records)


def test_a_sample_that_hangs_is_skipped_even_when_errors_raise():
    scores = score_completions([hangs_on_boom], **ARGS, timeout=0.3)  # reward_errors="raise" (the default)
    assert scores.values[:, 0].tolist()[0] == 2.0 and math.isnan(scores.values[1, 0]) and scores.skipped == [1]


def test_timeouts_leave_fast_rewards_and_their_errors_alone():
    assert torch.equal(score_completions([length_reward], **ARGS, timeout=5).values,
                       score_completions([length_reward], **ARGS).values)
    with pytest.raises(RuntimeError, match="reward 'fragile' failed on sample 1"):
        score_completions([fragile], **ARGS, timeout=5)


def test_reward_timeout_is_validated(tmp_path):
    from unigrpo import UniGRPOConfig

    base = dict(output_dir=str(tmp_path), num_generations=2, per_device_train_batch_size=4, report_to="none")
    assert UniGRPOConfig(**base).reward_timeout == 600.0 and UniGRPOConfig(reward_timeout=None, **base)
    with pytest.raises(ValueError, match="reward_timeout=0"):
        UniGRPOConfig(reward_timeout=0, **base)


def test_a_nan_or_inf_reward_is_a_clear_error_unless_skipped():
    with pytest.raises(ValueError, match="reward 'nan_reward' returned nan at index 2; use None"):
        score_completions([nan_reward], **ARGS)
    assert score_completions([nan_reward], **ARGS, reward_errors="skip").skipped == [1]


def test_score_completions_calls_rewards_once_when_all_succeed_and_has_no_jump_into_its_own_except():
    """#16 item 16: without a time limit the rewards are called together once; the one-by-one pass only follows a
    failure (no RewardTimeout raised to reach it)."""
    import inspect

    import unigrpo.rewarding as rewarding

    calls = []

    def counted(completions, **kwargs):
        calls.append(len(completions))
        return [0.0] * len(completions)

    score_completions([counted], **ARGS)
    assert calls == [3]
    assert "raise RewardTimeout" not in inspect.getsource(rewarding.score_completions)


def test_a_sample_returning_text_is_a_contract_error_even_under_skip():
    """The sample-by-sample pass checks the contract too: a reward that fails on the batch and returns text for one
    sample is a bug in the reward, not a skipped sample."""

    def text_on_retry(completions, **kwargs):
        if len(completions) > 1:
            raise ValueError("batch failed")
        return ["good"]

    with pytest.raises(ValueError, match="'text_on_retry' returned 'good'"):
        score_completions([text_on_retry], **ARGS, reward_errors="skip")


# ---- the pre-flight follows reward_errors and reward_timeout (#16 item 2) ------------------------------------------


DATASET = [{"prompt": "p0", "task": "t2t"}, {"prompt": "p1", "task": "t2t"}]


def always_raises(completions, **kwargs):
    raise ConnectionError("worker down")


def always_nan(completions, **kwargs):
    return [math.nan] * len(completions)


def test_preflight_follows_the_errors_policy():
    for reward in (always_raises, always_nan):
        preflight_rewards([length_reward, reward], DATASET, reward_errors="skip")  # as step 1 would: skipped
        with pytest.raises((RuntimeError, ValueError), match=reward.__name__):
            preflight_rewards([length_reward, reward], DATASET)  # reward_errors="raise"


def test_preflight_catches_contract_violations_under_either_policy():
    def short(completions, **kwargs):
        return [1.0]

    def text(completions, **kwargs):
        return ["good"] * len(completions)

    for policy in ("raise", "skip"):
        with pytest.raises(ValueError, match="'short' returned 1 values for 2"):
            preflight_rewards([short], DATASET, reward_errors=policy)
        with pytest.raises(ValueError, match="'text' returned 'good'"):
            preflight_rewards([text], DATASET, reward_errors=policy, timeout=5)


def test_preflight_of_a_hanging_reward_waits_reward_timeout_only(caplog):
    import time

    start = time.perf_counter()
    preflight_rewards([length_reward, hangs], DATASET, timeout=0.5)
    assert time.perf_counter() - start < 5
    assert any("'hangs' did not return within reward_timeout=0.5 s" in r.getMessage() for r in caplog.records)


def test_preflight_leaves_out_a_judge_and_a_dead_judge_is_skipped_in_the_steps():
    """No request is sent before training (a billed endpoint, or a server that is down); under skip a dead judge's
    samples score None in the steps."""
    from fake_openai_server import FakeOpenAIServer, free_port

    from rewards.judge import make_judge

    with FakeOpenAIServer(lambda body, i: "Score: 5") as server:
        preflight_rewards([make_judge(server.url, model=server.model)], DATASET)
        assert server.requests == []
    dead = make_judge(f"http://127.0.0.1:{free_port()}/v1", model="m", max_retries=0, timeout_s=2)
    preflight_rewards([length_reward, dead], DATASET, reward_errors="skip", timeout=5)
    scores = score_completions([length_reward, dead], **ARGS, reward_errors="skip", timeout=5)
    assert scores.values[:, 1].isnan().all() and scores.skipped == [0, 3]
    from rewards import get_reward

    assert get_reward("judge").preflight is False  # the registered one too (configured by reward_kwargs or env)


def test_training_steps_go_on_under_skip_and_log_skipped_under_raise_too(micro_model_dir, tmp_path, caplog):
    """The issue's scenarios end to end: pre-flight and two steps with a reward that always raises (skip) and one
    that hangs on every call (reward_timeout 0.5 s, reward_errors raise): ``rewards/<name>/skipped`` logged."""
    from datasets import Dataset

    from unigrpo import UniGRPOConfig, UniGRPOTrainer
    from unigrpo.models import load_model, load_tokenizer

    def hung(completions, **kwargs):
        import time

        time.sleep(30)

    base = dict(output_dir=str(tmp_path / "out"), num_generations=2, per_device_train_batch_size=4, num_iterations=1,
                max_completion_length=4, block_length=4, diffusion_steps=2, max_steps=2, logging_steps=1,
                save_strategy="no", report_to="none", disable_tqdm=True)
    rows = Dataset.from_list([{"prompt": f"q{i}="} for i in range(8)])
    model, tokenizer = load_model(micro_model_dir), load_tokenizer(micro_model_dir)
    for reward, policy in ((always_raises, "skip"), (hung, "raise")):
        config = UniGRPOConfig(**base, reward_errors=policy, reward_timeout=0.5)
        trainer = UniGRPOTrainer(model, [length_reward, reward], config, rows, processing_class=tokenizer)
        trainer.train()
        logs = [e for e in trainer.state.log_history if f"rewards/{reward.__name__}/skipped" in e]
        assert len(logs) == 2 and all(e[f"rewards/{reward.__name__}/skipped"] == 4 for e in logs), logs
        assert all(e["rewards/length_reward/skipped"] == 0 for e in logs)
    timeouts = [r for r in caplog.records if "'hung' did not return" in r.getMessage()]
    assert len(timeouts) == 3  # the pre-flight and each of the two steps


# ---- reward_kwargs: a reward's settings in the recipe (#16 item 15) ------------------------------------------------


def make_offset_reward(offset: float = 0.0, weights_path: str | None = None):
    """A test factory: ``weights_path`` must be a file, as the real factories check theirs."""
    import os

    if weights_path is not None and not os.path.isfile(weights_path):
        raise ValueError(f"weights_path={weights_path!r} is not a file")

    def offset_reward(completions, **kwargs):
        return [offset + len(c) for c in completions]

    return offset_reward


@pytest.fixture
def offset_registered():
    from rewards import register_reward
    from rewards.registry import _REGISTRY

    @register_reward("offset_length", factory=make_offset_reward)
    def offset_length(completions, **kwargs):
        return [float(len(c)) for c in completions]

    yield offset_length
    _REGISTRY.pop("offset_length")


def test_reward_kwargs_build_the_reward_with_its_factory(offset_registered):
    funcs, names = resolve_reward_funcs(["offset_length", "boxed_format"], {"offset_length": {"offset": 10.0}})
    assert names == ["offset_length", "boxed_format"]
    assert score_completions(funcs, **ARGS).values[:, 0].tolist() == [12.0, 14.0, 11.0]
    funcs, _ = resolve_reward_funcs(["offset_length"])  # without kwargs: the registered function itself
    assert funcs == [offset_registered]


def test_reward_kwargs_problems_name_the_reward_and_the_argument(offset_registered, tmp_path):
    rewards = ["offset_length", "boxed_format"]
    assert reward_kwargs_problems(rewards, {"offset_length": {"ofset": 1}}) == [
        "reward_kwargs: offset_length: unknown argument 'ofset' of make_offset_reward (did you mean 'offset'? "
        "valid: offset, weights_path)"]
    assert reward_kwargs_problems(rewards, {"offset_lenght": {}}) == [
        "reward_kwargs: offset_lenght: not one of reward_funcs ['offset_length', 'boxed_format'] "
        "(did you mean 'offset_length'?)"]
    assert reward_kwargs_problems(rewards, {"boxed_format": {"x": 1}}) == [
        "reward_kwargs: boxed_format: this reward takes no arguments (it declares no factory)"]
    missing = str(tmp_path / "nope.pt")
    assert reward_kwargs_problems(rewards, {"offset_length": {"weights_path": missing}}) == [
        f"reward_kwargs: offset_length: weights_path={missing!r} is not a file"]
    assert reward_kwargs_problems(rewards, {"offset_length": {"weights_path": missing}}, build=False) == []
    assert reward_kwargs_problems(rewards, {"offset_length": 3}) == [
        "reward_kwargs: offset_length: give a mapping of argument: value, got 3"]
    with pytest.raises(ValueError, match="unknown argument 'ofset'"):
        resolve_reward_funcs(rewards, {"offset_length": {"ofset": 1}})
    with pytest.raises(ValueError, match="is not a file"):
        resolve_reward_funcs(rewards, {"offset_length": {"weights_path": missing}})


def test_the_builtin_rewards_declare_their_factories():
    from rewards import get_reward
    from rewards.clip import make_clip_score
    from rewards.image_reward import make_image_reward
    from rewards.judge import make_judge

    assert get_reward("clip_score").factory is make_clip_score
    assert get_reward("judge").factory is make_judge
    assert get_reward("image_reward").factory is make_image_reward
    problems = reward_kwargs_problems(["clip_score", "judge"], {"clip_score": {"weight_path": "/x.pt"},
                                                                "judge": {"base_url": "ftp://x"}})
    assert problems[0].startswith("reward_kwargs: clip_score: unknown argument 'weight_path' of make_clip_score "
                                  "(did you mean 'weights_path'?")
    assert problems[1].startswith("reward_kwargs: judge: base_url must be an http(s) URL")
