"""``UniGRPOConfig``: training arguments of UniGRPO, with TRL's names where the concept is shared.

Batch semantics follow TRL: ``per_device_train_batch_size`` counts *completions*; each optimizer step sees
``per_device_train_batch_size / num_generations`` prompts per device and accumulation step, each answered
``num_generations`` times; the global batch is that × ``gradient_accumulation_steps`` × processes
(``unigrpo.data_parallel``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from rollouts.engine import ROLLOUT_BACKENDS
from rollouts.image_sampler import IMAGE_SAMPLERS, ImageSamplerConfig
from rollouts.text_sampler import CACHES, RECIPE_KEYS, REMASKING, STEP_SCHEDULES, THRESHOLD_RULES, SamplerConfig

from .advantages import SCALE_REWARDS
from .data_parallel import check_group_sharding, check_launch
from .estimator_spg import NEGATIVE_BOUNDS
from .likelihood import ESTIMATORS, estimator_options, get_estimator
from .loss import LOSS_TYPES
from .masking import MASK_SCHEDULES
from .rewarding import REWARD_ERRORS

KL_REFERENCES = ("initial", "rollout")


def _help(text: str, choices=None) -> dict:
    """A field's metadata: its help, and its valid values when they are a fixed list (argparse checks them)."""
    return {"help": text} if choices is None else {"help": text, "choices": list(choices)}


@dataclass
class SamplingArguments:
    """Rollout sampler options (docs/design.md §4), shared by the RL and SFT configs.

    The text sampler's options are ``rollouts.SamplerConfig``'s under the names of ``rollouts.RECIPE_KEYS``; their
    checks live there, and ``unigrpo generate`` builds its options from these fields (help, type, choices)."""

    max_completion_length: int = field(default=64, metadata=_help("Answer canvas length L (the sampler's gen_length)."))
    block_length: int = field(default=32, metadata=_help("Semi-autoregressive block length; divides L."))
    diffusion_steps: int = field(
        default=32, metadata=_help("Denoising steps for the whole answer; split evenly over blocks.")
    )
    temperature: float = field(default=1.0, metadata=_help("Gumbel-max sampling temperature of rollouts (0 = argmax)."))
    remasking: str = field(default="low_confidence", metadata=_help(
        "Which masked positions each step commits: LLaDA's low_confidence (most probable) | random; Dream's alg "
        "maskgit_plus (most probable under top_p/top_k/temperature) | topk_margin (top-1 − top-2 gap) | entropy "
        "(lowest entropy) | origin (each with probability 1 − s/t; needs step_schedule: dream).", REMASKING))
    top_p: float | None = field(default=None, metadata=_help(
        "Nucleus filter of the token draw (Dream's top_p), in (0, 1]; Dream's rules also read their confidence from "
        "the filtered distribution. null = off."))
    top_k: int | None = field(default=None, metadata=_help(
        "Draw tokens among the k most probable only (Dream's top_k, after top_p). null = off."))
    alg_temp: float | None = field(default=None, metadata=_help(
        "Dream's alg_temp: null or 0 commits the most confident positions; > 0 draws them with probability "
        "softmax(confidence / alg_temp). Not with confidence_threshold / confidence_factor."))
    step_schedule: str = field(default="llada", metadata=_help(
        "Tokens committed per step of a block: llada (the block's masks split evenly over its steps) | dream "
        "(floor(m (1 − s/t)) of the m still masked, t = linspace(1, schedule_eps, steps + 1); all at the last).",
        STEP_SCHEDULES))
    schedule_eps: float = field(default=1e-3, metadata=_help(
        "Dream's eps, the last time of step_schedule: dream, in [0, 1)."))
    cfg_scale: float = field(default=0.0, metadata=_help("Classifier-free guidance scale s (0 = off)."))
    kv_cache: str = field(
        default="dual",
        metadata=_help("Block KV cache of rollouts and evaluation (Fast-dLLM): none (the reference sampler) | prefix | "
                       "dual (also reuses the masked suffix). Refreshed at each block's start; the loss always runs "
                       "the full forward.", CACHES),
    )
    confidence_threshold: float | None = field(
        default=0.9,
        metadata=_help("Threshold decoding: also commit every masked position of the block whose confidence exceeds "
                       "this; diffusion_steps becomes a maximum (Fast-dLLM: 0.9 with one scheduled token per step). "
                       "null = off."),
    )
    confidence_factor: float | None = field(
        default=None, metadata=_help("Factor-based parallel decoding (Fast-dLLM): n-th best confidence ≥ 1 − f/(n+1).")
    )
    threshold_rule: str = field(default="floor", metadata=_help(
        "How confidence_threshold commits: floor (the plain schedule's count stays a floor, confidence > threshold) | "
        "fast_dllm (Fast-dLLM's rule: every masked position of the block with confidence ≥ threshold, at least one, "
        "no schedule: a block takes up to block_length steps).", THRESHOLD_RULES))
    early_finish: bool = field(default=True, metadata=_help(
        "Stop forwarding finished rows: a row whose answer is decided (first EOS and all before it committed) leaves "
        "the batch and is EOS-padded; with threshold/factor decoding a row whose block is done leaves the block. Same "
        "answers as false, fewer row-forwards (docs/design.md §4)."))
    eval_temperature: float = field(default=0.0, metadata=_help("Sampling temperature for evaluation (0 = greedy)."))
    image_sampler: str = field(
        default="mmada",
        metadata=_help("t2i: 'mmada' = MMaDA's published t2i_generate, token for token (codes at temperature 1, "
                       "compounding choice noise, float32 schedule, strict cut-off); 'maskgit' = the annealed "
                       "variant (codes at image_temperature, exact schedule). rollouts/image_sampler.py.",
                       IMAGE_SAMPLERS),
    )
    image_steps: int = field(default=16, metadata=_help("t2i: MaskGIT steps per image (MMaDA publishes 15–50)."))
    image_temperature: float = field(
        default=1.0, metadata=_help("t2i: scale of the choice noise ('maskgit': also the code sampling temperature).")
    )
    image_cfg_scale: float = field(
        default=0.0, metadata=_help("t2i: guidance w, (1+w)·cond − w·uncond with an empty caption (MMaDA: 3.5).")
    )
    accuracy_reward: str | None = field(
        default=None,
        metadata=_help("Reward whose positive value counts as 'correct' for eval_accuracy (default: the first)."),
    )

    def sampler_config(self, temperature: float | None = None):
        """The text sampler with these options (``temperature`` overrides the rollouts' one, e.g. for evaluation); a
        bad value is one ValueError naming the recipe key."""
        options = {key: getattr(self, key) for key in RECIPE_KEYS.values()}
        if temperature is not None:
            options["temperature"] = temperature
        return SamplerConfig.from_recipe(**options)

    def image_sampler_config(self, temperature: float | None = None) -> ImageSamplerConfig:
        """The image sampler with these options (``temperature`` overrides ``image_temperature``, e.g. for
        evaluation); a bad value is one ValueError naming the recipe key."""
        return ImageSamplerConfig(
            steps=self.image_steps,
            temperature=self.image_temperature if temperature is None else temperature,
            cfg_scale=self.image_cfg_scale,
            mode=self.image_sampler,
        )


@dataclass
class UniGRPOConfig(SamplingArguments, TrainingArguments):
    """UniGRPO (MMaDA §2.3, Algorithm 1). Defaults as in the paper or TRL unless noted."""

    # ---- GRPO (TRL names and meanings) ----
    num_generations: int = field(default=8, metadata=_help("G: answers sampled per prompt (≥ 2)."))
    num_iterations: int = field(
        default=2,
        metadata=_help("μ: gradient steps per batch of rollouts; the mask schedule sweeps over them (Algorithm 1)."),
    )
    beta: float = field(default=0.0, metadata=_help("β: weight of the k3 KL to the reference (0 loads no reference)."))
    epsilon: float = field(default=0.2, metadata=_help("ε_low of the clipped surrogate."))
    epsilon_high: float | None = field(default=None, metadata=_help("ε_high (DAPO clip-higher); default = epsilon."))
    loss_type: str = field(default="grpo", metadata=_help(f"Loss normalisation: {sorted(LOSS_TYPES)}."))
    scale_rewards: str = field(default="group", metadata=_help(f"Advantage scaling: {SCALE_REWARDS}."))
    reward_weights: list[float] | None = field(default=None, metadata=_help("Weight per reward function (default 1)."))
    reward_errors: str = field(
        default="raise",
        metadata=_help("A reward that raises on a sample: 'raise' (fail, naming reward and sample) or 'skip' "
                       "(that reward becomes None for the sample; counted in rewards/<name>/skipped)."),
    )
    reward_timeout: float | None = field(
        default=600.0,
        metadata=_help("Seconds each reward call may take; a reward that hangs (worker, judge server) scores None for "
                       "the batch, counted in rewards/<name>/skipped, and the run goes on. null = no limit."),
    )
    log_completions: bool = field(
        default=False, metadata=_help("Write prompts, completions, rewards and advantages to completions/*.jsonl.")
    )
    # ---- diffusion likelihood (docs/design.md §3.2–3.8) ----
    likelihood_estimator: str = field(default="unigrpo", metadata=_help(f"One of {sorted(ESTIMATORS)}."))
    p_mask_prompt: float = field(
        default=0.15, metadata=_help("d1 estimator: probability of masking each prompt token (d1: 0.15).")
    )
    trajectory_shrink: int = field(
        default=8,
        metadata=_help("trajectory estimator: s, the sampler's distinct commit steps grouped into one scored view "
                       "(TraceRL's shrinkage; 8 for LLaDA/Dream, 1 for block models). An answer costs ⌈steps / s⌉ "
                       "forward rows per inner step; s ≥ diffusion_steps scores the whole answer fully masked."),
    )
    wd1_psi: float = field(default=1.0, metadata=_help(
        "wd1: ψ, the temperature of its group weights w± = softmax(±ψ·A) (> 0; the published code uses 1)."))
    vrpo_num_masks: int = field(default=2, metadata=_help(
        "vrpo: K, noised rows per answer, each at its own mask ratio frac(p + k/K) (K forward rows per answer; "
        "1 = unigrpo)."))
    spg_num_masks: int = field(default=2, metadata=_help(
        "spg: K, block-wise masks per answer per inner step (K forward rows per answer; SPG's scripts: 2)."))
    spg_eubo_beta: float = field(default=1.5, metadata=_help(
        "spg: β ≥ 1, the exponent of the evidence upper bound (SPG: 1.5 for GSM8K/MATH/Countdown, 1.0 Sudoku)."))
    spg_negative_bound: str = field(default="mix", metadata=_help(
        "spg: the bound of log π for answers with A ≤ 0: mix (ω·EUBO + (1 − ω)·ELBO, SPG's best) | eubo | elbo.",
        NEGATIVE_BOUNDS))
    spg_mix_weight: float = field(default=0.5, metadata=_help(
        "spg: ω in [0, 1], the EUBO's share of spg_negative_bound: mix (SPG: 0.5)."))
    mask_schedule: str = field(
        default="spaced", metadata=_help("spaced = Algorithm 1 sweep from a random light mask to a full one; uniform.")
    )
    mask_ratio_min: float | None = field(default=None, metadata=_help("Lower clip p_low of the mask ratio."))
    mask_ratio_max: float | None = field(default=None, metadata=_help("Upper clip p_high of the mask ratio."))
    num_mask_levels: int = field(default=1000, metadata=_help("T: discrete mask levels (1000 in the paper)."))
    eos_in_loss: int = field(default=1, metadata=_help("EOS tokens of the padded canvas kept in the loss."))
    kl_reference: str = field(
        default="initial", metadata=_help("KL against the frozen 'initial' policy (paper) or the 'rollout' policy.")
    )
    # ---- rollout workers (docs/design.md §7) ----
    rollout_backend: str = field(
        default="local", metadata=_help("Who generates: 'local' (in-process) or 'ray' (a pool of Ray actors).")
    )
    ray_address: str | None = field(
        default=None, metadata=_help("Ray cluster to join ('auto' = the running one); None starts a local Ray.")
    )
    ray_num_workers: int = field(default=2, metadata=_help("Ray: rollout worker actors, each with a policy copy."))
    ray_num_cpus_per_worker: float = field(default=0.5, metadata=_help("Ray: CPUs reserved per worker (fractional)."))
    ray_num_gpus_per_worker: float = field(default=0, metadata=_help("Ray: GPUs per worker (1 = one per GPU)."))
    ray_max_worker_restarts: int = field(
        default=3, metadata=_help("Ray: consecutive restarts of a dead worker before the run stops with an error.")
    )
    # ---- Trainer defaults that differ for RL ----
    remove_unused_columns: bool = field(default=False, metadata=_help("Keep dataset columns for the rewards."))
    logging_steps: float = field(default=10, metadata=_help("Log every N optimizer steps."))
    save_strategy: str = field(default="no", metadata=_help("Checkpointing strategy (Trainer's)."))

    def __post_init__(self):
        super().__post_init__()
        if self.epsilon_high is None:
            self.epsilon_high = self.epsilon
        self.validate_unigrpo()

    def validate_unigrpo(self) -> None:
        """One clear ValueError per impossible option, before any model is loaded."""
        choices = {
            "loss_type": (self.loss_type, sorted(LOSS_TYPES)),
            "scale_rewards": (self.scale_rewards, list(SCALE_REWARDS)),
            "mask_schedule": (self.mask_schedule, sorted(MASK_SCHEDULES)),
            "likelihood_estimator": (self.likelihood_estimator, sorted(ESTIMATORS)),
            "kl_reference": (self.kl_reference, list(KL_REFERENCES)),
            "reward_errors": (self.reward_errors, list(REWARD_ERRORS)),
            "rollout_backend": (self.rollout_backend, list(ROLLOUT_BACKENDS)),
        }
        for key, (value, valid) in choices.items():
            if value not in valid:
                raise ValueError(f"{key}={value!r} is not valid; choose one of {valid}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations}: group advantages need at least 2 answers")
        check_launch(self.world_size)
        check_group_sharding(self.per_device_train_batch_size, self.num_generations,
                             self.gradient_accumulation_steps, self.world_size)
        if self.num_iterations < 1:
            raise ValueError(f"num_iterations={self.num_iterations} must be ≥ 1")
        if self.num_mask_levels < 1:
            raise ValueError(f"num_mask_levels={self.num_mask_levels} must be ≥ 1")
        for key in ("mask_ratio_min", "mask_ratio_max"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{key}={value} must lie in [0, 1]")
        if self.mask_ratio_min is not None and self.mask_ratio_max is not None:
            if self.mask_ratio_min > self.mask_ratio_max:
                raise ValueError(f"mask_ratio_min={self.mask_ratio_min} > mask_ratio_max={self.mask_ratio_max}")
        if self.epsilon < 0 or self.epsilon_high < 0:
            raise ValueError(f"epsilon={self.epsilon}, epsilon_high={self.epsilon_high} must be ≥ 0")
        if self.beta < 0:
            raise ValueError(f"beta={self.beta} must be ≥ 0")
        if not 0.0 <= self.p_mask_prompt < 1.0:
            raise ValueError(f"p_mask_prompt={self.p_mask_prompt} must lie in [0, 1)")
        if self.trajectory_shrink < 1:
            raise ValueError(f"trajectory_shrink={self.trajectory_shrink} must be ≥ 1 (sampler steps per scored view)")
        if self.eos_in_loss < 0:
            raise ValueError(f"eos_in_loss={self.eos_in_loss} must be ≥ 0")
        if self.reward_timeout is not None and not self.reward_timeout > 0:
            raise ValueError(f"reward_timeout={self.reward_timeout} must be > 0 seconds (or null: no limit)")
        if self.ray_num_workers < 1:
            raise ValueError(f"ray_num_workers={self.ray_num_workers} must be ≥ 1")
        if self.ray_num_cpus_per_worker <= 0 or self.ray_num_gpus_per_worker < 0:
            raise ValueError(f"ray_num_cpus_per_worker={self.ray_num_cpus_per_worker} must be > 0 and "
                             f"ray_num_gpus_per_worker={self.ray_num_gpus_per_worker} ≥ 0")
        if self.ray_max_worker_restarts < 0:
            raise ValueError(f"ray_max_worker_restarts={self.ray_max_worker_restarts} must be ≥ 0")
        algorithm = get_estimator(self.likelihood_estimator, **estimator_options(self.likelihood_estimator, self))
        if hasattr(algorithm, "policy_loss") and (self.beta != 0.0 or self.loss_type != "grpo"):
            raise ValueError(f"likelihood_estimator={self.likelihood_estimator!r} brings its own ratio-free objective "
                             f"(docs/design.md §3.9), with no KL term and one loss per answer: set beta: 0 and "
                             f"loss_type: grpo (got beta={self.beta}, loss_type={self.loss_type!r})")
        self.sampler_config()  # validates the sampler options (max_completion_length, block_length, kv_cache, …)
        self.image_sampler_config()

    @property
    def prompts_per_device_step(self) -> int:
        return self.per_device_train_batch_size // self.num_generations
