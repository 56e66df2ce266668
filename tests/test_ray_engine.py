"""RayEngine (docs/design.md §7): same answers as LocalEngine, order kept, weight sync, recovery, loopback-only Ray."""

import os
import signal
import threading

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

ray = pytest.importorskip("ray")

from rollouts import LocalEngine, SamplerConfig
from rollouts.ray_engine import RayEngine, StaleWeightsError, split_prompts, worker_seed
from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id

CONFIG = SamplerConfig(gen_length=4, block_length=4, steps=4, temperature=1.0)
FAST = SamplerConfig(gen_length=8, block_length=4, steps=8, temperature=1.0, cache="dual", threshold=0.5)  # issue #7
PROMPTS = [f"q{i:02d}=" for i in range(5)]
G = 3


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def policy(micro_model_dir):
    model, tokenizer = load_model(micro_model_dir).eval(), load_tokenizer(micro_model_dir)
    return model, tokenizer, resolve_mask_token_id(model, tokenizer)


@pytest.fixture(scope="module")
def two_workers(ray_session, policy):
    engine = RayEngine(*policy, num_workers=2, num_cpus_per_worker=0.5)
    yield engine
    engine.close()


def local(policy, prompts, seed):
    return LocalEngine(*policy).generate(prompts, CONFIG, G, seed=seed)


def test_split_keeps_prompts_whole():
    assert split_prompts(5, 2) == [slice(0, 3), slice(3, 5)]
    assert split_prompts(1, 3) == [slice(0, 1)]
    assert worker_seed(7, 0) == 7 and worker_seed(7, 1) != 7


def test_one_worker_equals_local_engine(ray_session, policy, micro_model_dir):
    engine = RayEngine(str(micro_model_dir), None, policy[2], num_workers=1)  # built from the folder
    try:
        got, want = engine.generate(PROMPTS, CONFIG, G, seed=11), local(policy, PROMPTS, 11)
        for name in ("prompt_ids", "prompt_mask", "completion_ids", "commit_step"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert got.completions == want.completions
        assert got.stats == want.stats and got.stats.committed > 0  # the sampler's decode statistics travel too
    finally:
        engine.close()


@pytest.mark.parametrize("config", [CONFIG, FAST], ids=["plain", "fast"])
def test_two_workers_return_the_full_batch_in_order(two_workers, policy, config):
    got = two_workers.generate(PROMPTS, config, G, seed=5)
    assert got.completion_ids.shape == (len(PROMPTS) * G, config.gen_length)
    # worker k ran prompts [k-th share] with seed worker_seed(5, k): reproduce each share in-process
    model, tokenizer, mask_id = policy
    from rollouts import tokenize_prompts

    ids, mask = tokenize_prompts(tokenizer, PROMPTS)
    committed = 0.0
    for rank, share in enumerate(split_prompts(len(PROMPTS), 2)):
        want = LocalEngine(*policy).generate_from_ids(ids[share], mask[share], config, G, seed=worker_seed(5, rank))
        rows = slice(share.start * G, share.stop * G)
        assert torch.equal(got.completion_ids[rows], want.completion_ids)
        assert torch.equal(got.prompt_ids[rows], want.prompt_ids)
        committed += want.stats.committed
    assert got.stats.committed == committed == len(PROMPTS) * G * config.gen_length  # summed over the shares
    assert torch.equal(two_workers.generate(PROMPTS, config, G, seed=5).completion_ids, got.completion_ids)


def test_update_weights_changes_outputs_and_versions_match(ray_session, policy):
    import copy

    model, tokenizer, mask_id = policy
    engine = RayEngine(model, tokenizer, mask_id, num_workers=2)
    try:
        before = engine.generate(PROMPTS, CONFIG, G, seed=1).completion_ids
        changed = copy.deepcopy(model)
        with torch.no_grad():
            changed.get_input_embeddings().weight.mul_(-3.0)
        stats = engine.update_weights(changed, version=4)
        assert stats.version == 4 == engine.weights_version and stats.bytes > 0
        after = engine.generate(PROMPTS, CONFIG, G, seed=1).completion_ids
        assert not torch.equal(before, after)
        want = LocalEngine(changed, tokenizer, mask_id).generate(PROMPTS[:3], CONFIG, G, seed=1).completion_ids
        assert torch.equal(after[: 3 * G], want)

        ray.get(engine.workers[1].update_weights.remote(*engine.weights_ref, 3))  # worker 1 falls behind
        with pytest.raises(StaleWeightsError, match="version 3"):
            engine.generate(PROMPTS, CONFIG, G, seed=1)
    finally:
        engine.close()


def test_killed_worker_is_replaced_and_its_share_rerun(two_workers):
    prompts, long = [f"q{i:02d}=" for i in range(40)], SamplerConfig(gen_length=32, block_length=32, steps=32)
    want = two_workers.generate(prompts, long, G, seed=9).completion_ids  # ≈ 0.5 s per worker's share
    pid = two_workers.worker_pids()[1]
    killer = threading.Timer(0.15, os.kill, (pid, signal.SIGKILL))  # mid-generation
    killer.start()
    got = two_workers.generate(prompts, long, G, seed=9).completion_ids
    killer.join()
    assert two_workers.restarts == 1 and pid not in two_workers.worker_pids()
    assert torch.equal(got, want)  # the share re-run with the same seed: nothing lost, nothing changed


def test_repeated_deaths_raise_a_clear_error(ray_session, policy):
    engine = RayEngine(*policy, num_workers=1, max_worker_restarts=0)
    try:
        ray.kill(engine.workers[0])
        with pytest.raises(RuntimeError, match="rollout worker 0 died 1 times"):
            engine.generate(PROMPTS, CONFIG, G, seed=0)
    finally:
        engine.close()


def test_peft_sync_sends_only_adapters(ray_session, policy):
    from peft import LoraConfig

    from unigrpo.models import LORA_TARGET_MODULES
    from unigrpo.models.lora import apply_peft

    model, tokenizer, mask_id = policy
    import copy

    peft_model = apply_peft(copy.deepcopy(model), LoraConfig(r=2, lora_alpha=4, target_modules=LORA_TARGET_MODULES,
                                                             init_lora_weights=False))
    engine = RayEngine(peft_model, tokenizer, mask_id, num_workers=1)
    try:
        lora = engine.update_weights(peft_model, version=1)
        full = sum(t.numel() * t.element_size() for t in peft_model.state_dict().values())
        assert lora.is_peft and lora.bytes * 5 < full
        want = LocalEngine(peft_model, tokenizer, mask_id).generate(PROMPTS, CONFIG, G, seed=2).completion_ids
        assert torch.equal(engine.generate(PROMPTS, CONFIG, G, seed=2).completion_ids, want)
    finally:
        engine.close()


def is_loopback(ip: str) -> bool:
    import ipaddress

    address = ipaddress.ip_address(ip.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


def test_ray_listens_on_loopback_only(two_workers):
    psutil = pytest.importorskip("psutil")
    me = psutil.Process()
    pids = {p.pid for p in me.children(recursive=True)} | set(two_workers.worker_pids())
    listening = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [(pid, c.laddr) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening, "no Ray listening sockets found"
    exposed = [(pid, a) for pid, a in listening if not is_loopback(a.ip)]
    assert not exposed, exposed


def has_seven(prompts, completions, **kwargs):
    return [float("7" in c) for c in completions]


def test_trainer_runs_with_the_ray_backend(ray_session, micro_model_dir, tmp_path):
    from datasets import Dataset

    from unigrpo import UniGRPOConfig, UniGRPOTrainer

    args = UniGRPOConfig(
        output_dir=str(tmp_path / "out"), num_generations=4, per_device_train_batch_size=8, num_iterations=1,
        max_completion_length=4, block_length=4, diffusion_steps=4, learning_rate=1e-2, max_steps=2,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, rollout_backend="ray",
        ray_num_workers=2,
    )
    trainer = UniGRPOTrainer(
        model=str(micro_model_dir), reward_funcs=[has_seven],
        args=args, train_dataset=Dataset.from_list([{"prompt": f"q{i}="} for i in range(8)]),
    )
    trainer.train()
    assert trainer.engine.weights_version == 1  # synced before step 2's rollout
    assert sum("reward" in e for e in trainer.state.log_history) == 2
    assert not trainer.engine.workers  # closed at the end of training


def test_bad_ray_options_are_rejected(tmp_path):
    from unigrpo import UniGRPOConfig

    with pytest.raises(ValueError, match="rollout_backend"):
        UniGRPOConfig(output_dir=str(tmp_path), rollout_backend="spark")
    with pytest.raises(ValueError, match="ray_num_workers"):
        UniGRPOConfig(output_dir=str(tmp_path), ray_num_workers=0)
