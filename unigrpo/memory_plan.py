"""Memory plan: the estimated peak memory per GPU of a UniGRPO recipe, before any weight is loaded (issue #17 §2).

``plan_memory(model_config, args, ...)`` adds one small function per category, each named after it:

    weights       the policy's parameters held on this GPU (whole, or a 1/N shard plus the unsharded working set)
    gradients     their gradients (DDP: plus its bucket copy when N > 1)
    optimizer     AdamW's two moments (+ fp32 master weights under DeepSpeed's mixed precision)
    activations   tensors saved for backward by one micro-batch of the policy forward, plus the logits' backward
    rollout       the no-grad phases: the sampler's canvas, logits and block KV cache (train and eval batches), the
                  θ_old / reference log-prob passes, and the whole weights gathered for them under ZeRO-3 / FSDP2
    reference     the frozen copy of the initial policy (β > 0, kl_reference initial, no PEFT)

    peak = weights + gradients + optimizer + reference + max(activations, rollout)

Rollouts and the policy update never run at the same time, so only the larger of the two counts; gradients are
counted in both (conservative: DDP's buckets and ZeRO's partitions persist). Symbols: P parameters, P_t trainable
ones, N ranks, R rows of a micro-batch (completions × rows per answer), T = prompt + answer tokens, L answer tokens,
V vocabulary, d width, m MLP width, h heads, a bytes of the compute dtype (2 under bf16, else 4).

Bytes per parameter (ZeRO, Rajbhandari et al. 2020, §3.1: mixed-precision Adam keeps 2Ψ fp16 weights, 2Ψ fp16
gradients and KΨ = 12Ψ fp32 master weights, momentum and variance, "16Ψ bytes"):

    strategy  weights                    gradients              optimizer
    ddp       P·w                        P_t·g (×2 if N > 1)    2·P_t·g    torch AdamW: moments in the param dtype
    zero2     P·c                        P_t·c / N              12·P_t / N (8 without bf16)
    zero3     P·c / N + working set      P_t·c / N              12·P_t / N
    fsdp2     4·P / N + working set      4·P_t / N              8·P_t / N  accelerate upcasts shards to fp32

w = the checkpoint's dtype (``dtype`` / ``torch_dtype`` of config.json; transformers loads it as stored: LLaDA-8B is
bf16), c = the compute dtype, g = w for full fine-tuning and 4 for LoRA adapters (PEFT keeps them fp32,
``autocast_adapter_dtype``). DDP's second gradient copy is its reducer's buckets (``gradient_as_bucket_view=False``,
PyTorch's default: "the saved memory size will be equal to the total gradients size" when it is on). The working
set of ZeRO-3 / FSDP2 is the unsharded root (embedding, head, final norm) and two blocks (the current one and the
prefetched next) in c. Not modelled: CUDA context and NCCL buffers (outside ``max_memory_allocated``), allocator
fragmentation, DeepSpeed's bucket buffers; ``fits`` keeps ``HEADROOM`` of the card free for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .model_shape import KNOWN_SHAPES, LORA_MODULES  # noqa: F401  (re-exported: the plan's public names)
from .model_shape import DTYPE_BYTES, PROJECTIONS, ModelShape

GIB = 2**30
HEADROOM = 0.10  # of the card kept free for the CUDA context, NCCL buffers and allocator fragmentation
STRATEGIES = ("ddp", "zero2", "zero3", "fsdp2")
DEFAULT_PROMPT_LENGTH = 256  # tokens; GSM8K questions with the chat template and thinking instruction are ≈ 150–250


# ---- what the plan is computed from ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanInputs:
    """Everything the category functions read, resolved once from the model config, the recipe and the launch."""

    shape: ModelShape
    strategy: str
    ranks: int
    compute_bytes: int  # a: 2 under bf16 / fp16, else 4
    weight_bytes: int  # w: the checkpoint's dtype as loaded
    use_peft: bool
    lora_r: int
    lora_targets: tuple[str, ...]
    lora_dropout: float
    checkpointing: bool
    rows: int  # R: rows of one micro-batch's policy forward
    completions: int  # per_device_train_batch_size
    prompt_length: int
    answer_length: int  # L
    block_length: int
    kv_cache: str
    cfg: bool
    eval_rows: int  # 0 when there is no held-out evaluation
    needs_old_pass: bool
    reference_copy: bool

    @property
    def tokens(self) -> int:
        return self.prompt_length + self.answer_length

    @property
    def trainable(self) -> int:
        return self.shape.lora_params(self.lora_r, self.lora_targets) if self.use_peft else self.shape.params

    @property
    def sharded(self) -> bool:
        return self.strategy in ("zero3", "fsdp2")


# ---- one function per category -----------------------------------------------------------------------------------


def weights(p: PlanInputs) -> int:
    """Parameters on this GPU: whole (ddp, zero2) or a 1/N shard plus the unsharded working set (zero3, fsdp2)."""
    s, c = p.shape, p.compute_bytes
    adapters = p.trainable * 4 if p.use_peft else 0  # PEFT keeps LoRA weights fp32
    if p.strategy == "ddp":
        return s.params * p.weight_bytes + adapters
    if p.strategy == "zero2":
        return s.params * c + adapters
    working = (s.root_params + 2 * s.block_params) * c  # unsharded for compute: root + current and next block
    shard = 4 if p.strategy == "fsdp2" else c  # accelerate upcasts FSDP2 shards to fp32 under mixed precision
    return -(-(s.params + (p.trainable if p.use_peft else 0)) * shard // p.ranks) + working


def gradients(p: PlanInputs) -> int:
    """Gradients of the trainable parameters: whole under DDP (and again in its buckets when N > 1), 1/N else."""
    if p.strategy == "ddp":
        g = 4 if p.use_peft else p.weight_bytes
        return p.trainable * g * (2 if p.ranks > 1 else 1)
    g = 4 if p.strategy == "fsdp2" else p.compute_bytes
    return -(-p.trainable * g // p.ranks)


def optimizer(p: PlanInputs) -> int:
    """AdamW: exp_avg and exp_avg_sq (torch keeps them in the parameter's dtype), plus fp32 master weights where
    DeepSpeed trains in bf16 (ZeRO's K = 12 bytes per parameter); 1/N of it under ZeRO and FSDP2."""
    if p.strategy == "ddp":
        return p.trainable * 2 * (4 if p.use_peft else p.weight_bytes)
    per_param = 12 if p.strategy in ("zero2", "zero3") and p.compute_bytes == 2 else 8
    return -(-p.trainable * per_param // p.ranks)


def block_activations_per_token(p: PlanInputs) -> int:
    """Bytes one block saves for backward per token, counted op by op on this model's forward (``modeling_llada``):

    RMSNorm (fp32 inside): x in fp32 (4d) and rsqrt (4), and its output before the weight (a·d) when the weight
    trains; each Linear saves its input when its weight trains (q/k/v share one, ff_proj/up_proj another, ff_out
    the SwiGLU product); SDPA (flash / memory-efficient kernels, no T² matrix) saves q, k, v, its output and the
    fp32 log-sum-exp (4h); SwiGLU saves the gate, silu(gate) and up (3·a·m). Full fine-tuning:

        (8 + 8a)·d + 4a·h·hd + 4a·m + 4h + 8

    the Korthikanti et al. (2022) count for a Llama block with SDPA and no dropout. With LoRA the frozen Linears
    and norms save no inputs and the SwiGLU product is not kept (3·a·m); the adapters add ``lora_activations``.
    m is the width a token passes through (``active_mlp_hidden_size``: an MoE layer's top-k experts + shared
    expert); LLaDA-MoE's q/k norms and routing add ``qk_norm_and_routing_per_token``."""
    s, a = p.shape, p.compute_bytes
    d, m, h = s.d_model, s.active_mlp_hidden_size, s.n_heads
    attention = 4 * a * h * s.head_dim + 4 * h  # q, k, v, output (after any GQA repeat) + log-sum-exp
    extra = qk_norm_and_routing_per_token(p)
    if not p.use_peft:
        return 2 * (4 * d + a * d + 4) + 2 * a * d + attention + 4 * a * m + extra
    return 2 * (4 * d + 4) + attention + 3 * a * m + lora_activations_per_token(p) + extra


def qk_norm_and_routing_per_token(p: PlanInputs) -> int:
    """What LLaDA-MoE's blocks save beyond a dense block, per token (the mean over the blocks), measured on its
    forward (``modeling_llada_moe``; ``tests/test_architectures.py`` checks the total):

    q/k RMSNorm per head: x in fp32 (4 per feature), rsqrt (4 per head), and the normalised x (a per feature)
    when the norm weights train. Routing, per expert slot (top-k per token, MoE layers only): the token's
    gathered hidden state, the expert's output kept for the weighted sum, and (full fine-tuning) the gathered input
    again for the expert's first projections — 3·a·d, 2·a·d under LoRA — plus 36 bytes of indices and weight."""
    s, a, d = p.shape, p.compute_bytes, p.shape.d_model
    extra = 0
    if s.qk_norm:
        features = (s.n_heads + s.n_kv_heads) * s.head_dim
        extra += (4 + (0 if p.use_peft else a)) * features + 4 * (s.n_heads + s.n_kv_heads)
    moe_layers = sum(s.is_moe(i) for i in range(s.n_layers))
    if moe_layers:
        per_slot = (2 if p.use_peft else 3) * a * d + 36
        extra += -(-s.experts_per_token * per_slot * moe_layers // s.n_layers)
    return extra


def lora_activations_per_token(p: PlanInputs) -> int:
    """What the adapters of one block save per token (the mean over the blocks): A's input and B's (a·r) for each
    adapted projection.

    With ``lora_dropout`` > 0 each adapter drops out its own copy of the input and keeps the mask (1 byte per
    feature: CUDA's fused dropout; on CPU the mask is in the compute dtype). Without dropout A reads the input
    itself: one copy per distinct input (``PROJECTIONS``: q/k/v share the norm's output, gate/up theirs; the
    attention output projection's is the SDPA output, already saved; the down projection's is the SwiGLU
    product)."""
    a, r, s = p.compute_bytes, p.lora_r, p.shape
    roles = PROJECTIONS[s.architecture]
    total = 0
    for layer in range(s.n_layers):
        inputs = {}
        for name, (features, _) in s.lora_shapes(layer).items():
            if name not in p.lora_targets:
                continue
            total += a * r
            if p.lora_dropout > 0:
                total += (1 + a) * features
            elif roles[name][0] is not None:
                inputs[roles[name][0]] = a * features
        total += sum(inputs.values())
    return -(-total // s.n_layers)


def head_activations(p: PlanInputs) -> tuple[int, int]:
    """(saved, backward transient) of the final norm, LM head and ``masked_token_logps`` for R rows.

    Saved: the final norm (as a block's), the head's input (a·d per token, when the head trains) and the fp32
    logits of the L answer positions read by logsumexp (4·V per answer token; under fp32 the slice keeps the whole
    (R, T, V) tensor). Transient in backward: two fp32 (R, L, V) gradients and the (R, T, V) gradient of the whole
    logits in the compute dtype."""
    s, a, R, T, L, V = p.shape, p.compute_bytes, p.rows, p.tokens, p.answer_length, p.shape.vocab
    norm = 4 * s.d_model + 4 + (0 if p.use_peft else 2 * a * s.d_model)
    logits = 4 * V * (T if a == 4 else L) + 4 * L
    return R * (T * norm + logits), R * V * (8 * L + a * T)


def saved_activations(p: PlanInputs, checkpointing: bool) -> int:
    """Tensors saved for backward when the micro-batch's forward ends: every block's, or with checkpointing
    (transformers' ``GradientCheckpointingLayer``) only each block's input (a·d per token); plus the head's."""
    s, tokens = p.shape, p.rows * p.tokens
    per_token = p.compute_bytes * s.d_model if checkpointing else block_activations_per_token(p)
    return s.n_layers * per_token * tokens + head_activations(p)[0]


def activations(p: PlanInputs, checkpointing: bool | None = None) -> int:
    """One micro-batch of the policy forward + backward: the saved tensors plus the larger transient of backward,
    the logits' gradient or (with checkpointing) one block recomputed at a time."""
    checkpointing = p.checkpointing if checkpointing is None else checkpointing
    transient = head_activations(p)[1]
    if checkpointing:
        transient = max(transient, block_activations_per_token(p) * p.rows * p.tokens)
    return saved_activations(p, checkpointing) + transient


def sampler_bytes(p: PlanInputs, batch: int) -> int:
    """One ``generate_text`` call on ``batch`` rows (×2 with CFG): canvas, block KV cache, and the larger of a full
    forward's transient (the (B, T, V) logits and one block's hidden states) and a step's sampling transient
    (a (B, K, V) copy of the logits and four float64 tensors of Gumbel noise and noised logits)."""
    s, a, T, V = p.shape, p.compute_bytes, p.tokens, p.shape.vocab
    B = batch * (2 if p.cfg else 1)
    canvas = 3 * 8 * batch * T  # x, commit step, prompt copies (int64)
    cache = 0
    if p.kv_cache in ("prefix", "dual"):
        cache = s.n_layers * 2 * B * s.n_kv_heads * s.head_dim * T * a  # keys and values after RoPE, every layer
    forward = B * T * (V * a + (3 * s.active_mlp_hidden_size + 4 * s.d_model) * a)
    sampling = batch * p.block_length * V * (a + 4 * 8)
    return canvas + cache + max(forward, sampling)


def logps_pass_bytes(p: PlanInputs) -> int:
    """A no-grad θ_old / reference pass on R rows: the (R, T, V) logits, their fp32 answer slice and logsumexp's
    temporary, and one block's hidden states."""
    s, a, R, T, L, V = p.shape, p.compute_bytes, p.rows, p.tokens, p.answer_length, p.shape.vocab
    return R * (T * V * a + 2 * 4 * L * V + T * (3 * s.active_mlp_hidden_size + 4 * s.d_model) * a)


def rollout(p: PlanInputs) -> int:
    """The no-grad phases: the sampler on a micro-batch (and on the eval batch when the recipe evaluates), the
    θ_old / reference passes, and under ZeRO-3 / FSDP2 the whole weights gathered for them (c bytes per parameter,
    as ``unwrap_model_for_generation`` / ``unshard()`` hold them)."""
    phases = [sampler_bytes(p, p.completions)]
    if p.eval_rows:
        phases.append(sampler_bytes(p, p.eval_rows))
    if p.needs_old_pass or p.reference_copy or p.use_peft:
        phases.append(logps_pass_bytes(p))
    gathered = p.shape.params * p.compute_bytes if p.sharded else 0
    return gathered + max(phases)


def reference(p: PlanInputs) -> int:
    """The frozen initial policy for the KL term: a whole copy on every GPU in the checkpoint's dtype (the trainer
    deep-copies the model before wrapping it; never sharded). LoRA needs none: the base with adapters off."""
    return p.shape.params * p.weight_bytes if p.reference_copy else 0


CATEGORIES = {"weights": weights, "gradients": gradients, "optimizer": optimizer, "activations": activations,
              "rollout": rollout, "reference": reference}


def peak_bytes(parts: dict[str, int]) -> int:
    """Resident state plus the larger of the update phase (activations) and the no-grad phases (rollout)."""
    resident = parts["weights"] + parts["gradients"] + parts["optimizer"] + parts["reference"]
    return resident + max(parts["activations"], parts["rollout"])


# ---- the plan ----------------------------------------------------------------------------------------------------


@dataclass
class MemoryPlan:
    """Estimated bytes per GPU by category, their peak, and whether (and how) it fits ``gpu_memory_bytes``."""

    bytes: dict[str, int]
    total: int
    fits: bool | None
    advice: list[str] = field(default_factory=list)
    gpu_memory_bytes: int | None = None
    summary: str = ""
    details: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        """A small table in GiB, the verdict and the advice."""
        gib = lambda n: f"{n / GIB:8.2f} GiB"  # noqa: E731
        notes = {"activations": f"checkpointing off: {self.details['activations_full'] / GIB:.2f} GiB, on: "
                                f"{self.details['activations_checkpointed'] / GIB:.2f} GiB",
                 "rollout": "not at the same time as activations: the larger counts"}
        lines = [f"memory plan per GPU: {self.summary}"]
        lines += [f"  {name:<12}{gib(n)}   {notes.get(name, '')}".rstrip() for name, n in self.bytes.items()]
        if self.gpu_memory_bytes is None:
            lines.append(f"  {'peak':<12}{gib(self.total)}")
        else:
            usable = self.gpu_memory_bytes * (1 - HEADROOM)
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"  {'peak':<12}{gib(self.total)}   {verdict}: {usable / GIB:.2f} GiB usable of "
                         f"{self.gpu_memory_bytes / GIB:.2f} GiB ({HEADROOM:.0%} kept free)")
        lines += [f"  advice: {line}" for line in self.advice]
        return "\n".join(lines)


RECIPE_KEYS = ("bf16", "fp16", "activation_checkpointing", "gradient_checkpointing", "likelihood_estimator",
               "eval_strategy", "per_device_train_batch_size", "per_device_eval_batch_size",
               "gradient_accumulation_steps",
               "num_generations", "max_completion_length", "block_length", "kv_cache", "cfg_scale", "num_iterations",
               "beta", "kl_reference")
"""The recipe keys the plan reads (a ``UniGRPOConfig`` or a dict with them)."""


def recipe_values(args) -> dict:
    """The plan's keys from a ``UniGRPOConfig`` (or a dict of them); eval_strategy as its plain value."""
    get = args.get if isinstance(args, dict) else lambda k, default=None: getattr(args, k, default)
    values = {key: get(key) for key in RECIPE_KEYS}
    values["eval_strategy"] = str(values["eval_strategy"] or "no").split(".")[-1].lower()
    missing = [k for k, v in values.items() if v is None and k not in ("activation_checkpointing",
                                                                         "gradient_checkpointing", "fp16")]
    if missing:
        raise ValueError(f"the memory plan needs the recipe keys {missing}")
    values["estimator_rows"] = get("estimator_rows") or estimator_rows(get, values["likelihood_estimator"],
                                                                       values["max_completion_length"])
    return values


def estimator_rows(get, name: str, answer_length: int) -> dict:
    """What the recipe's estimator costs: ``rows_per_answer`` (policy-forward rows per completion, at most: 2 for
    coupled's pair, K for SPG, ⌈steps / s⌉ for trajectory) and ``uses_ratio`` (False: no θ_old pass)."""
    from .likelihood import estimator_class

    estimator_type = estimator_class(name)
    options = {key: get(key) for key in estimator_type.options if get(key) is not None}
    steps = None if get("confidence_threshold") is not None else get("diffusion_steps")
    rows = estimator_type(**options).max_rows_per_answer(answer_length, steps)
    return {"rows_per_answer": rows, "uses_ratio": getattr(estimator_type, "uses_ratio", True)}


def plan_memory(model_config, args, num_processes: int = 1, strategy: str = "ddp", use_peft: bool = False,
                lora_r: int | None = None, lora_targets=None, gradient_checkpointing: bool | None = None,
                gpu_memory_bytes: int | None = None, prompt_length: int = DEFAULT_PROMPT_LENGTH,
                lora_dropout: float = 0.0, weights_dtype: str | None = None, advise: bool = True) -> MemoryPlan:
    """The memory plan of training ``args`` (a ``UniGRPOConfig``, or a dict of ``RECIPE_KEYS``) on the model of
    ``model_config`` with ``num_processes`` ranks under ``strategy`` (ddp | zero2 | zero3 | fsdp2); LoRA with
    ``use_peft`` (rank ``lora_r``, default 16; ``lora_targets`` default: every block projection).

    ``gradient_checkpointing`` None = the recipe's ``activation_checkpointing`` / ``gradient_checkpointing``;
    ``weights_dtype`` None = the config's ``dtype``, else bf16 under ``args.bf16`` and fp32 otherwise; the data set
    is not read, so prompts count as ``prompt_length`` tokens."""
    recipe = recipe_values(args)
    options = dict(num_processes=num_processes, strategy=strategy, use_peft=use_peft, lora_r=lora_r,
                   lora_targets=lora_targets, gradient_checkpointing=gradient_checkpointing,
                   prompt_length=prompt_length, lora_dropout=lora_dropout, weights_dtype=weights_dtype)
    p = plan_inputs(model_config, recipe, **options)
    parts = {name: func(p) for name, func in CATEGORIES.items()}
    total = peak_bytes(parts)
    fits = None if gpu_memory_bytes is None else total <= gpu_memory_bytes * (1 - HEADROOM)
    details = {"activations_full": activations(p, False), "activations_checkpointed": activations(p, True),
               "saved_full": saved_activations(p, False), "saved_checkpointed": saved_activations(p, True),
               "params": p.shape.params, "trainable_params": p.trainable}
    plan = MemoryPlan(parts, total, fits, [], gpu_memory_bytes, describe(p), details)
    if fits is False and advise:
        plan.advice = advice(model_config, recipe, options, p, total, gpu_memory_bytes)
    return plan


def plan_inputs(model_config, recipe: dict, num_processes, strategy, use_peft, lora_r, lora_targets,
                gradient_checkpointing, prompt_length, lora_dropout, weights_dtype) -> PlanInputs:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {list(STRATEGIES)} (LoRA is use_peft=True)")
    if num_processes < 1:
        raise ValueError(f"num_processes={num_processes} must be ≥ 1")
    shape = model_config if isinstance(model_config, ModelShape) else ModelShape.from_config(model_config)
    compute = 2 if (recipe["bf16"] or recipe["fp16"]) else 4
    weight_bytes = DTYPE_BYTES[weights_dtype] if weights_dtype else shape.dtype_bytes or compute
    if gradient_checkpointing is None:
        gradient_checkpointing = bool(recipe["activation_checkpointing"] or recipe["gradient_checkpointing"])
    rows_per_answer = recipe["estimator_rows"]["rows_per_answer"]  # coupled's pairs, SPG's K masks, trajectory's chunks
    return PlanInputs(
        shape=shape, strategy=strategy, ranks=num_processes, compute_bytes=compute, weight_bytes=weight_bytes,
        use_peft=use_peft, lora_r=lora_r or 16, lora_targets=tuple(lora_targets or shape.lora_names),
        lora_dropout=lora_dropout, checkpointing=gradient_checkpointing,
        rows=recipe["per_device_train_batch_size"] * rows_per_answer,
        completions=recipe["per_device_train_batch_size"], prompt_length=prompt_length,
        answer_length=recipe["max_completion_length"], block_length=recipe["block_length"],
        kv_cache=recipe["kv_cache"], cfg=bool(recipe["cfg_scale"]),
        eval_rows=recipe["per_device_eval_batch_size"] if recipe["eval_strategy"] != "no" else 0,
        needs_old_pass=recipe["num_iterations"] > 1 and recipe["estimator_rows"]["uses_ratio"],
        reference_copy=recipe["beta"] > 0 and recipe["kl_reference"] == "initial" and not use_peft,
    )


def describe(p: PlanInputs) -> str:
    """The plan's heading: model size, launch, precision, micro-batch."""
    s = p.shape
    lora = f", LoRA r {p.lora_r} ({p.trainable / 1e6:.1f} M trainable)" if p.use_peft else ", full fine-tuning"
    return (f"{s.params / 1e9:.2f} B parameters{lora}, {p.strategy} × {p.ranks} rank(s), "
            f"{'bf16' if p.compute_bytes == 2 else 'fp32'}, micro-batch {p.rows} × {p.tokens} tokens "
            f"(prompt {p.prompt_length} + answer {p.answer_length}), activation checkpointing "
            f"{'on' if p.checkpointing else 'off'}")


# ---- advice ------------------------------------------------------------------------------------------------------


def advice(model_config, recipe: dict, options: dict, p: PlanInputs, total: int, gpu_memory_bytes: int) -> list[str]:
    """What to change when the plan does not fit, each with the peak it gives (re-planned, not guessed): activation
    checkpointing, a smaller micro-batch (more accumulation steps keep the global batch), LoRA, sharding over the
    same or more ranks, and dropping the reference copy. Only changes that lower the peak are listed."""
    usable = gpu_memory_bytes * (1 - HEADROOM)
    base = {**options, "advise": False}
    if p.shape.dtype_bytes is None and not options["weights_dtype"]:
        base["weights_dtype"] = {2: "bfloat16", 4: "float32"}[p.weight_bytes]
    candidates = []  # (text, recipe, plan options)
    if not p.checkpointing:
        candidates.append(("activation_checkpointing: true", recipe, {"gradient_checkpointing": True}))
    G, size = recipe["num_generations"], recipe["per_device_train_batch_size"]
    for smaller in range(size - G, 0, -G):  # multiples of G: whole groups per device
        changed = {**recipe, "per_device_train_batch_size": smaller}
        if plan_memory(model_config, changed, **base).total <= usable or smaller == G:
            steps = recipe["gradient_accumulation_steps"] * size // smaller
            candidates.append((f"per_device_train_batch_size: {smaller} with gradient_accumulation_steps: {steps} "
                               f"(same global batch)", changed, {}))
            break
    if not p.use_peft:
        candidates.append(("LoRA (use_peft: true, lora_r: 128)", recipe, {"use_peft": True, "lora_r": 128}))
    for strategy in ("zero2", "zero3", "fsdp2"):
        if strategy != p.strategy and (p.strategy, strategy) != ("zero3", "zero2"):
            candidates.append((f"{strategy} over {p.ranks} rank(s) (--accelerate_config)", recipe,
                               {"strategy": strategy}))
    if p.strategy != "ddp":
        candidates.append((f"{p.strategy} over {2 * p.ranks} ranks", recipe, {"num_processes": 2 * p.ranks}))
    if p.reference_copy:
        candidates.append(("beta: 0 or kl_reference: rollout (no reference copy)", {**recipe, "beta": 0.0}, {}))
    lines = []
    for text, changed, change in candidates:
        peak = plan_memory(model_config, changed, **{**base, **change}).total
        if peak < total:
            lines.append(f"{text}: peak {peak / GIB:.2f} GiB ({'fits' if peak <= usable else 'still too much'})")
    return lines or ["no single change lowers the peak: use a card with more memory"]
