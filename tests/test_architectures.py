"""Every part of unigrpo on each architecture (issue #19): LLaDA, Dream and LLaDA-MoE behind the same interface.

One micro model per architecture (``init_tiny(..., preset="micro", architecture=...)``), written once per module:
``unigrpo eval`` / ``generate``, LoRA with the model's own default targets, saving and loading through the Auto
classes and the memory plan run on all three; SFT, a short UniGRPO run (plain and fast rollouts), every likelihood
estimator, the Ray engine, data parallel (2 processes) and resume run on Dream and LLaDA-MoE (``NEW_ARCHS``), since
the same tests on the LLaDA micro model are in test_sft.py, test_trainer.py, the estimators' tests,
test_ray_engine.py, test_data_parallel.py and test_resume.py.
"""

import os

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig
from test_resume import run as resume_run
from test_trainer import count_target_reward, first_rows, make_config, make_trainer, prompts_dataset
from transformers import AutoModelForMaskedLM

from unigrpo import UniGRPOTrainer
from unigrpo.cli import main, peft_config_from
from unigrpo.likelihood import ESTIMATORS, answer_token_logps, estimator_class
from unigrpo.memory_measure import saved_activation_bytes
from unigrpo.memory_plan import KNOWN_SHAPES, ModelShape, plan_memory
from unigrpo.models import (DreamConfig, DreamModel, LLaDAMoEConfig, LLaDAMoEModelLM, init_tiny, load_model,
                            load_tokenizer, resolve_mask_token_id, tiny_config)
from unigrpo.models.lora import apply_peft
from unigrpo.models.tiny import ARCHITECTURES
from unigrpo.sft import MaskedSFTConfig, MaskedSFTTrainer

ARCHS = ["llada", "dream", "llada-moe"]
NEW_ARCHS = ["dream", "llada-moe"]  # for the longest tests, whose LLaDA case runs in its module's own tests
assert sorted(ARCHS) == sorted(ARCHITECTURES)  # a new architecture joins this suite


@pytest.fixture(scope="module")
def arch_dirs(tmp_path_factory) -> dict:
    """architecture → folder of its micro model."""
    return {arch: init_tiny(tmp_path_factory.mktemp(arch) / "model", preset="micro", seed=0, architecture=arch)
            for arch in ARCHS}


@pytest.fixture(params=ARCHS)
def arch_dir(request, arch_dirs):
    """(architecture, folder of its micro model)."""
    return request.param, arch_dirs[request.param]


@pytest.fixture(params=NEW_ARCHS)
def new_arch_dir(request, arch_dirs):
    """As ``arch_dir``, for the tests whose LLaDA case already runs on the same micro model elsewhere."""
    return request.param, arch_dirs[request.param]


def test_sft_fits_a_tiny_mapping_and_never_masks_the_prompt(new_arch_dir, tmp_path):
    """As ``test_sft.test_sft_fits_a_tiny_mapping_and_prompt_is_never_masked`` (LLaDA's case), 40 steps."""
    arch, folder = new_arch_dir
    rows = [{"prompt": f"{c}=", "completion": c * 2, "answer": c * 2} for c in "abcd"] * 8
    config = MaskedSFTConfig(output_dir=str(tmp_path / "sft"), per_device_train_batch_size=16, learning_rate=3e-3,
                             max_steps=40, logging_steps=10, max_completion_length=4, block_length=4,
                             diffusion_steps=4, sft_noise="count", report_to="none", disable_tqdm=True,
                             save_strategy="no")
    trainer = MaskedSFTTrainer(load_model(folder), config, Dataset.from_list(rows),
                               processing_class=load_tokenizer(folder))
    prompt_len = trainer.collate(rows[:4])["groups"][0]["prompt_ids"].shape[1]
    seen = []
    original = trainer.model.forward
    trainer.model.forward = lambda input_ids, **kw: (seen.append(input_ids), original(input_ids=input_ids, **kw))[1]
    trainer.train()
    assert seen and all((x[:, :prompt_len] != trainer.mask_token_id).all() for x in seen)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    print(f"\n{arch} sft loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("fast", [{}, dict(kv_cache="dual", confidence_threshold=0.9, max_completion_length=8,
                                            block_length=4, diffusion_steps=8)], ids=["plain", "fast"])
def test_a_short_run_raises_a_trivially_learnable_reward(new_arch_dir, tmp_path, fast):
    """The reward is the fraction of answer tokens equal to "7" (``test_trainer.count_target_reward``); LLaDA's
    case is ``test_trainer.test_short_run_increases_a_trivially_learnable_reward``."""
    arch, folder = new_arch_dir
    trainer = make_trainer(folder, tmp_path, max_steps=32, learning_rate=1e-2, num_iterations=1, **fast)
    trainer.train()
    rewards = [e["reward"] for e in trainer.state.log_history if "reward" in e]
    before, after = sum(rewards[:8]) / 8, sum(rewards[-8:]) / 8
    print(f"\n{arch} {'fast' if fast else 'plain'}: reward {before:.3f} -> {after:.3f}")  # RESULTS.md figure
    assert len(rewards) == 32 and after > before + 0.15, rewards


@pytest.mark.parametrize("estimator", sorted(ESTIMATORS))
def test_every_estimator_scores_its_views_and_old_equals_new_before_an_update(new_arch_dir, tmp_path, estimator):
    """Estimators with an importance ratio: the θ_old (and reference) log-probs equal the policy's on the same views
    before any update (ratio 1, KL 0). wd1 and SPG form no ratio and take no KL (docs/design.md §3.9): their own
    loss on the views is finite and non-zero. (LLaDA's case: each estimator's own tests.)"""
    _, folder = new_arch_dir
    uses_ratio = getattr(estimator_class(estimator), "uses_ratio", True)
    trainer = make_trainer(folder, tmp_path, beta=0.1 if uses_ratio else 0.0, likelihood_estimator=estimator)
    batch = trainer.make_rollouts(first_rows(trainer))
    (rollouts,) = batch.tasks
    with torch.no_grad():
        logps = answer_token_logps(trainer.model, rollouts.views[0], rollouts.completion_ids)
    assert torch.isfinite(logps).all() and (logps <= 0).all() and (logps < 0).any()  # 0 where not scored
    if uses_ratio:
        assert torch.equal(logps, rollouts.old_logps[0]) and torch.equal(logps, rollouts.ref_logps[0])
    else:
        batch.advantages = torch.linspace(-1, 1, batch.advantages.numel())  # rewards may all tie: force A ≠ 0
        loss = trainer.compute_loss(trainer.model, batch.inputs_for_step(0))
        assert torch.isfinite(loss) and loss != 0


def test_the_ray_engine_with_one_worker_equals_the_local_engine(arch_dirs):
    """One local Ray (as tests/test_ray_engine.py's: no dashboard, 2 CPUs, a worker at 0.5) for the new
    architectures (LLaDA's case: tests/test_ray_engine.py)."""
    ray = pytest.importorskip("ray")
    from rollouts import LocalEngine, SamplerConfig
    from rollouts.ray_engine import RayEngine

    prompts = [f"q{i:02d}=" for i in range(3)]
    config = SamplerConfig(gen_length=8, block_length=4, steps=8, temperature=1.0, cache="dual", threshold=0.5)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        for arch in NEW_ARCHS:
            folder = arch_dirs[arch]
            model, tokenizer = load_model(folder).eval(), load_tokenizer(folder)
            mask_id = resolve_mask_token_id(model, tokenizer)
            engine = RayEngine(str(folder), None, mask_id, num_workers=1, num_cpus_per_worker=0.5)  # from the folder
            try:
                got = engine.generate(prompts, config, 2, seed=11)
            finally:
                engine.close()
            want = LocalEngine(model, tokenizer, mask_id).generate(prompts, config, 2, seed=11)
            for name in ("prompt_ids", "completion_ids", "commit_step"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (arch, name)
            assert got.completions == want.completions, arch
            assert (got.stats.committed, got.stats.row_forwards) == (want.stats.committed, want.stats.row_forwards)
            # the worker runs one thread: the MoE's per-expert sums may round differently in the last float bit
            assert got.stats.confidence_sum == pytest.approx(want.stats.confidence_sum, rel=1e-6), arch
    finally:
        ray.shutdown()


def test_a_resumed_run_logs_what_the_uninterrupted_run_logs(new_arch_dir, tmp_path):
    """Stopped after 2 steps and resumed: bitwise the uninterrupted run (LLaDA's case: ``test_resume.py``)."""
    _, folder = new_arch_dir
    full = resume_run(folder, tmp_path / "a", 3)
    resume_run(folder, tmp_path / "b", 2)
    assert resume_run(folder, tmp_path / "b", 3, resume="auto") == full and len(full) == 3


def test_two_processes_train_as_one_process_with_accumulation(new_arch_dir, tmp_path):
    """Data parallel (LLaDA's case: test_data_parallel.py): ``accelerate launch --num_processes 2 -m unigrpo.cli
    train`` on the micro model logs the losses, gradient norms and rewards of 1 process with accumulation 2."""
    from test_data_parallel import accelerate_launch, assert_same_steps, train_log

    arch, folder = new_arch_dir
    common = ["-m", "unigrpo.cli", "train", "--config", "recipes/tiny-arith.yaml", "--model_name_or_path",
              str(folder), "--reward_funcs", "tests.dense_rewards:answer_length",  # varies on random weights
              "--max_steps", "2", "--per_device_train_batch_size", "16", "--train_limit", "128",
              "--eval_strategy", "no", "--load_best_model_at_end", "false", "--save_strategy", "no",
              "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true"]
    accelerate_launch(2, common + ["--output_dir", str(tmp_path / "two")])
    accelerate_launch(1, common + ["--output_dir", str(tmp_path / "one"), "--gradient_accumulation_steps", "2"])
    two, one = train_log(tmp_path / "two"), train_log(tmp_path / "one")
    assert len(two) == 2 and all(e["grad_norm"] > 0 for e in two), arch
    assert_same_steps(two, one, keys=("loss", "grad_norm", "reward"))


def test_eval_and_generate_take_the_folder(arch_dir, tmp_path, capsys):
    _, folder = arch_dir
    assert main(["eval", "--config", "recipes/tiny-arith.yaml", "--model", str(folder), "--limit", "4",
                 "--samples", "1", "--k", "1"]) == 0
    table = capsys.readouterr().out
    assert "| model | dataset | n | samples | temperature | accuracy |" in table
    assert "| model | arith | 4 | 1 |" in table  # the folder's row (it is named "model")
    assert main(["generate", "--model_name_or_path", str(folder), "--prompt", "1+2=", "--prompt", "3+4=",
                 "--gen_length", "8", "--block_length", "4", "--steps", "8", "--kv_cache", "dual"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_lora_without_targets_trains_only_the_models_default_adapters(arch_dir, tmp_path):
    """``use_peft: true`` and no ``lora_target_modules``: the model class's own targets, and only adapters move."""
    from trl import ModelConfig

    arch, folder = arch_dir
    peft_config = peft_config_from(ModelConfig(use_peft=True, lora_r=4, lora_alpha=8))
    assert peft_config.target_modules is None  # resolved once the model is loaded
    trainer = UniGRPOTrainer(model=load_model(folder), reward_funcs=[count_target_reward],
                             args=make_config(tmp_path, max_steps=2, num_iterations=1, learning_rate=1e-2),
                             train_dataset=prompts_dataset(), processing_class=load_tokenizer(folder),
                             peft_config=peft_config)
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    adapted = {k.split(".lora_A")[0] for k in before if ".lora_A" in k}
    assert adapted and all(".blocks." in k or ".layers." in k for k in adapted)  # never the LM head
    if arch == "llada-moe":  # attention only on this preset: no routed expert, no router
        assert all(".self_attn." in k for k in adapted)
    trainer.train()
    changed = {k for k, v in trainer.model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed), sorted(changed)


def test_a_saved_model_loads_with_the_auto_class_and_gives_the_same_logits(arch_dir, tmp_path):
    _, folder = arch_dir
    model = load_model(folder).eval()
    model.save_pretrained(tmp_path / "saved")
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path / "saved").eval()
    assert type(loaded) is type(model)
    ids = torch.randint(0, 40, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    with torch.no_grad():
        assert torch.equal(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)


# ---- the memory plan reads each architecture's config ----------------------------------------------------------

PLAN_RECIPE = dict(bf16=False, fp16=False, activation_checkpointing=False, gradient_checkpointing=False,
                   likelihood_estimator="unigrpo", eval_strategy="no", per_device_train_batch_size=2,
                   per_device_eval_batch_size=2, gradient_accumulation_steps=1, num_generations=2,
                   max_completion_length=32, block_length=32, kv_cache="dual", cfg_scale=0.0, num_iterations=1,
                   beta=0.0, kl_reference="initial")


def numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch,overrides", [
    ("llada", {}), ("dream", {}), ("llada-moe", {}),
    # LLaDA-MoE's other branches: a dense first layer, a shared expert, attention biases, grouped-query attention
    ("llada-moe", dict(n_layers=2, moe_layer_freq=[0, 1], shared_expert_intermediate_size=48, attention_bias=True,
                       n_kv_heads=2, qk_layernorm=False)),
])
def test_the_memory_plan_counts_every_parameter_and_adapter_of_the_tiny_model(arch, overrides):
    config = tiny_config("tiny", architecture=arch, **overrides)
    model = ARCHITECTURES[arch][1](config)
    shape = ModelShape.from_config(config)
    assert shape.params == ModelShape.from_config(config.to_dict()).params == numel(model)
    adapters = apply_peft(ARCHITECTURES[arch][1](config), LoraConfig(r=4, lora_alpha=8))  # the model's own targets
    lora = sum(p.numel() for name, p in adapters.named_parameters() if "lora_" in name)
    assert shape.lora_params(4, shape.lora_names) == lora > 0


def test_the_memory_plan_counts_the_published_7b_shapes():
    """Dream-v0-Instruct-7B (the published config.json's sizes) and LLaDA-MoE-7B-A1B (this class's defaults),
    instantiated on the meta device."""
    with torch.device("meta"):
        dream, moe = DreamModel(DreamConfig()), LLaDAMoEModelLM(LLaDAMoEConfig())
    published = ModelShape.from_config(KNOWN_SHAPES["Dream-org/Dream-v0-Instruct-7B"])
    assert published.params == ModelShape.from_config(DreamConfig()).params == numel(dream) == 7_615_616_512
    assert published.dtype_bytes == 2 and published.n_kv_heads == 4 and not published.weight_tying
    moe_shape = ModelShape.from_config(KNOWN_SHAPES["inclusionAI/LLaDA-MoE-7B-A1B-Instruct"])  # model_type llada
    assert moe_shape.params == ModelShape.from_config(LLaDAMoEConfig()).params == numel(moe)
    assert moe_shape.architecture == "llada-moe" and moe_shape.dtype_bytes == 2
    assert moe_shape.active_mlp_hidden_size == 8 * 1024  # top-8 of 64 experts of width 1024


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("use_peft", [False, True], ids=["full", "lora"])
def test_the_planned_activations_match_the_saved_tensors(arch, use_peft):
    """Within 15 % of what autograd saves (``memory_measure``), MoE routing and q/k norms included."""
    model = ARCHITECTURES[arch][1](tiny_config("micro", architecture=arch))
    if use_peft:
        model = apply_peft(model, LoraConfig(r=8, lora_alpha=16))
    measured = saved_activation_bytes(model, 2, 24, 32, checkpointing=False)
    planned = plan_memory(model.config, PLAN_RECIPE, use_peft=use_peft, lora_r=8,
                          prompt_length=24).details["saved_full"]
    assert abs(planned - measured) / measured < 0.15, (planned, measured)
