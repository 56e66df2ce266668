"""The LLaDA / MMaDA semi-autoregressive text sampler (LLaDA §2.4 and its ``generate.py``; docs/design.md §4).

The answer canvas of L = ``gen_length`` positions starts fully masked and is cut into blocks of ``block_length``,
generated left to right. ``steps`` are split evenly over the blocks; inside a block, the number of tokens committed
per step is the block's masked count split evenly over its steps (remainder to the first steps). Each step:

    logits = model(x)                        (CFG: u + (s+1)(c − u), u = real prompt tokens replaced by masks)
    logits[mask id] = −inf                   (a committed token is never the mask itself)
    x0     = argmax(logits/τ + g), g~Gumbel  (float64 noise; plain argmax at τ = 0)
    conf   = softmax(logits)[x0]             (low_confidence)  |  U(0, 1)  (random)
    conf   = −inf outside the current block and on already committed positions
    commit the k_b,i most confident masked positions of the block, for row b at step i

Fast options (Fast-dLLM, Wu et al. 2025; same interface, measured in benchmarks/rollout_speed.py):

    cache = prefix | dual   a block's first step is a full forward that refreshes the model's block KV cache; its
                            other steps forward only the block and what follows it (prefix) or the block alone
                            (dual), attending to the cached keys/values elsewhere (unigrpo/models/block_cache.py)
    threshold = c           a step also commits every masked position of the block whose confidence exceeds c
    factor = f              … or the n most confident while the n-th has confidence ≥ 1 − f/(n + 1)
                            with either, the plain schedule stays a floor and a block ends as soon as it has no
                            mask, so ``steps`` becomes a maximum
    threshold_rule          ``floor`` (the above) | ``fast_dllm``: Fast-dLLM's own rule (``llada/generate.py``,
                            ``get_transfer_index``): the schedule is ignored, a step commits every masked position
                            of the block with confidence ≥ c and at least the most confident one, and a block takes
                            as many steps as it needs (at most block_length; ``steps`` plays no part)
    early_finish            (on by default: it changes no answer) a row whose first EOS and every position before it
                            are committed leaves the batch at the next block boundary (its canvas after the EOS
                            is EOS padding anyway); with threshold / factor decoding a row whose block has no mask
                            left leaves the block at once, with its cache rows. Noise is drawn for the whole batch
                            and the active rows' share kept, so seeded answers are the same with and without it

Each call also reports ``DecodeStats``: answer tokens committed per row-forward and the mean probability of the
committed tokens, the guard against over-confident parallel decoding in RL (d1, Zhao et al. 2025).

The log-probabilities of training never use these: the loss runs the full bidirectional forward.

Recipes and the command line name these options as ``RECIPE_KEYS`` says (``gen_length`` → ``max_completion_length``,
``steps`` → ``diffusion_steps``, ``cache`` → ``kv_cache`` …); ``SamplerConfig.from_recipe`` takes those keys.

Legend (code → paper): gen_length → L, block_length → block size, steps → N (sampling steps), temperature → τ,
cfg_scale → s (guidance scale), ``num_transfer_tokens`` → tokens unmasked per step, ``x0`` → predicted clean tokens.
Shapes: B rows, P prompt positions (left-padded), L answer positions, T = P + L, V vocabulary, K = block_length.
The sampler knows nothing of training; its only model call is ``model(x).logits`` (plus ``attention_mask`` when the
prompts are padded, and ``kv_cache`` / ``span_start`` when caching). Every random draw comes from ``generator``, so seeded runs reproduce.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from unigrpo.models.block_cache import BlockKVCache


@dataclass
class SamplerConfig:
    """Options of the plain LLaDA sampler; ``__post_init__`` rejects bad values with one clear error each."""

    gen_length: int = 64
    """L: answer canvas length (LLaDA/MMaDA publish 256–1024)."""
    block_length: int = 32
    """Semi-autoregressive block size; must divide ``gen_length`` (published 32–64; = gen_length is one block)."""
    steps: int = 32
    """Denoising steps for the whole answer, split evenly over the blocks (published: gen_length / 2)."""
    temperature: float = 0.0
    """τ of the Gumbel-max sampling of x0; 0 = argmax (greedy)."""
    remasking: str = "low_confidence"
    """Which masked positions to commit each step: ``low_confidence`` (most probable first) or ``random``."""
    cfg_scale: float = 0.0
    """s, classifier-free guidance: logits = u + (s+1)(c − u), u with the prompt masked; 0 = off (one forward)."""
    cache: str = "none"
    """Block KV cache (Fast-dLLM): ``none`` (every step a full forward), ``prefix`` (reuse the prompt's and finished
    blocks' keys/values within a block) or ``dual`` (also the masked suffix's); refreshed at each block's start."""
    threshold: float | None = None
    """Confidence-threshold decoding: each step also commits every masked position of the block whose confidence
    exceeds this (in (0, 1]); ``steps`` becomes a maximum — a block ends as soon as it has no mask. None = off."""
    factor: float | None = None
    """Factor-based parallel decoding (Fast-dLLM): each step commits the n most confident masked positions while
    the n-th confidence ≥ 1 − factor/(n + 1); ``steps`` becomes a maximum. None = off."""
    threshold_rule: str = "floor"
    """How ``threshold`` decides a step's commits: ``floor`` — the plain schedule's count is a floor, ``>`` c;
    ``fast_dllm`` — Fast-dLLM's ``get_transfer_index``: every masked position of the block with confidence ≥ c, at
    least the most confident one, no schedule (a block runs until it has no mask, ≤ block_length steps)."""
    early_finish: bool = True
    """Stop forwarding what is finished: a row whose answer is decided (its first EOS and every position before it
    committed) leaves the batch, its later positions become EOS; with threshold / factor decoding a row whose block
    has no mask left also leaves that block's remaining steps. The answers are the same as with False (noise is
    drawn for the whole batch; answers are truncated at the first EOS anyway); fewer row-forwards, and the
    ``commit_step`` of the EOS-filled positions is the step at which the row left. False = every row to the end."""

    def __post_init__(self):
        check_sampler_options(vars(self))

    @classmethod
    def from_recipe(cls, **options) -> SamplerConfig:
        """A config from recipe / command-line keys (``max_completion_length``, ``diffusion_steps``, ``kv_cache`` …:
        the values of ``RECIPE_KEYS``); a bad value's error names the key the user wrote, not the field."""
        unknown = sorted(set(options) - set(RECIPE_KEYS.values()))
        if unknown:
            raise TypeError(f"unknown sampler option(s) {unknown}; valid: {list(RECIPE_KEYS.values())}")
        field_of = {key: name for name, key in RECIPE_KEYS.items()}
        values = {field_of[key]: value for key, value in options.items()}
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        check_sampler_options({**defaults, **values}, RECIPE_KEYS)
        return cls(**values)

    @property
    def parallel(self) -> bool:
        """Whether a step may commit more than its scheduled count (threshold or factor decoding)."""
        return self.threshold is not None or self.factor is not None

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    @property
    def fast_dllm_threshold(self) -> bool:
        """Whether Fast-dLLM's threshold rule decides the commits (``threshold_rule='fast_dllm'`` with a threshold)."""
        return self.threshold is not None and self.threshold_rule == "fast_dllm"

    @property
    def max_steps_per_block(self) -> int:
        """The most steps a block may take: ``steps_per_block``, or block_length under Fast-dLLM's rule (which
        ignores ``steps`` and commits at least one token per step)."""
        return self.block_length if self.fast_dllm_threshold else self.steps_per_block


RECIPE_KEYS = {
    "gen_length": "max_completion_length",
    "block_length": "block_length",
    "steps": "diffusion_steps",
    "temperature": "temperature",
    "remasking": "remasking",
    "cfg_scale": "cfg_scale",
    "cache": "kv_cache",
    "threshold": "confidence_threshold",
    "factor": "confidence_factor",
    "threshold_rule": "threshold_rule",
    "early_finish": "early_finish",
}
"""``SamplerConfig`` field → its key in recipes (``unigrpo.config.SamplingArguments``) and on the command line
(``unigrpo generate``): the one place where the sampler's LLaDA names meet the user-facing ones."""


def check_sampler_options(options: dict, keys: dict | None = None) -> None:
    """One ValueError for the first impossible option among ``SamplerConfig``'s fields in ``options``; the message
    names each option as ``keys[field]`` (default: the field name)."""
    key = (lambda name: keys.get(name, name)) if keys else (lambda name: name)
    for name in ("gen_length", "block_length", "steps"):
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key(name)}={value!r} must be a positive integer")
    gen_length, block_length, steps = options["gen_length"], options["block_length"], options["steps"]
    blocks = gen_length // block_length
    if gen_length % block_length:
        raise ValueError(f"{key('gen_length')}={gen_length} is not divisible by {key('block_length')}={block_length}")
    if steps < blocks:
        raise ValueError(f"{key('steps')}={steps} is fewer than the number of blocks ({key('gen_length')}/"
                         f"{key('block_length')} = {blocks}); every block needs at least one step")
    if steps % blocks:
        raise ValueError(f"{key('steps')}={steps} is not divisible by the number of blocks "
                         f"({key('gen_length')}/{key('block_length')} = {blocks})")
    remasking, cache, threshold, factor = (options[name] for name in ("remasking", "cache", "threshold", "factor"))
    if remasking not in REMASKING:
        raise ValueError(f"{key('remasking')}={remasking!r} is not valid; choose one of {list(REMASKING)}")
    for name in ("temperature", "cfg_scale"):
        value = options[name]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{key(name)}={value!r} must be a finite number ≥ 0")
    if cache not in CACHES:
        raise ValueError(f"{key('cache')}={cache!r} is not valid; choose one of {list(CACHES)}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"{key('threshold')}={threshold!r} must be a confidence in (0, 1], or None (off)")
    if factor is not None and not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"{key('factor')}={factor!r} must be a finite number > 0, or None (off)")
    if not isinstance(options.get("early_finish", True), bool):
        raise ValueError(f"{key('early_finish')}={options['early_finish']!r} must be true or false")
    rule = options["threshold_rule"]
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"{key('threshold_rule')}={rule!r} is not valid; choose one of {list(THRESHOLD_RULES)}")
    if rule == "fast_dllm" and factor is not None:
        raise ValueError(f"{key('threshold_rule')}='fast_dllm' follows Fast-dLLM's threshold path, which has no "
                         f"{key('factor')}; set {key('factor')}=None or {key('threshold_rule')}='floor'")
    if (threshold is not None or factor is not None) and remasking != "low_confidence":
        raise ValueError(f"{key('threshold')}/{key('factor')} decoding compares model probabilities, so it needs "
                         f"{key('remasking')}='low_confidence', not {remasking!r}")


@dataclass
class DecodeStats:
    """Sums over sampler calls (chunks, workers and processes add up) that show how parallel decoding behaves: d1's
    authors report that Fast-dLLM-style rollouts in online RL make the logits over-confident and commit too many
    tokens at once, so the trainer logs the two ratios below (README "Metrics")."""

    committed: float = 0.0
    """Answer tokens committed."""
    row_forwards: float = 0.0
    """Rows forwarded, summed over forwards (a CFG step counts once per row; finished rows are not forwarded)."""
    confidence_sum: float = 0.0
    """Sum over the committed tokens of softmax(logits)[x0], the model's probability of the committed token."""

    def __add__(self, other: DecodeStats) -> DecodeStats:
        return DecodeStats(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    @property
    def tokens_per_forward(self) -> float:
        """Answer tokens a row gets per forward: L / steps for the plain sampler, more with parallel decoding."""
        return self.committed / max(self.row_forwards, 1.0)

    @property
    def committed_confidence(self) -> float:
        """Mean probability of the committed tokens, in (0, 1]."""
        return self.confidence_sum / max(self.committed, 1.0)


@dataclass
class SamplerOutput:
    """What one call of a sampler returns."""

    sequences: torch.LongTensor
    """(B, P+L): the prompt exactly as given (left padding included), then the answer."""
    completion_ids: torch.LongTensor
    """(B, L): the answer; after its first EOS everything is EOS (when an EOS id was given)."""
    commit_step: torch.LongTensor
    """(B, L): the step (0-based; block · ``max_steps_per_block`` + step in the block) at which each answer position
    was committed — the decoding order."""
    forwards: int = 0
    """Model forwards run (NFE; a CFG step counts once although it runs both halves in one batch)."""
    stats: DecodeStats = dataclasses.field(default_factory=DecodeStats)
    """Committed tokens, row-forwards and committed probabilities of this call (read from the device once)."""


# ---- schedule ------------------------------------------------------------------------------------------------------


def num_transfer_tokens(masked_count: torch.Tensor, steps: int) -> torch.Tensor:
    """Tokens to commit at each of ``steps`` steps (LLaDA ``generate.py``, ``get_num_transfer_tokens``).

    LLaDA's linear noise schedule makes the expected number of tokens unmasked per step constant, so each row's
    masked count is split evenly and the remainder goes to the first steps. masked_count (B,) → (B, steps).
    """
    base = masked_count[:, None] // steps  # (B, 1)
    remainder = masked_count[:, None] % steps  # (B, 1)
    return base + (torch.arange(steps, device=masked_count.device) < remainder).long()  # (B, steps)


# ---- randomness: every draw goes through the caller's generator ----------------------------------------------------


def uniform(shape, generator: torch.Generator | None, device, dtype=torch.float64, rows=None) -> torch.Tensor:
    """U[0, 1) of ``shape`` drawn from ``generator`` on the generator's own device, then moved to ``device``.

    ``rows`` = (index, B): ``shape`` covers the rows ``index`` of a batch of B; the draw covers all B rows and keeps
    those, so a row's noise does not depend on which other rows are still running (early finish)."""
    source = generator.device if generator is not None else device
    full = shape if rows is None else (rows[1], *shape[1:])
    u = torch.rand(full, generator=generator, device=source, dtype=dtype).to(device)
    return u if rows is None else u[rows[0]]


def gumbel_max_sample(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                      rows=None) -> torch.Tensor:
    """x0 ~ softmax(logits / τ) by Gumbel-max: argmax(logits/τ + g), g = −log(−log u); plain argmax at τ = 0.

    LLaDA's ``add_gumbel_noise`` draws in float64 because low-precision Gumbel noise lowers generation quality
    (arXiv:2409.02908); it writes exp(l) / (−log u)^τ, whose argmax is the same as that of l/τ + g here (and this
    form cannot overflow). logits (..., V) → token ids (...); ``rows`` as in ``uniform``.
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    u = uniform(logits.shape, generator, logits.device, rows=rows)  # (..., V) float64
    gumbel = -torch.log(-torch.log(u))  # u = 0 gives −inf: that token is never drawn
    return (logits.to(torch.float64) / temperature + gumbel).argmax(dim=-1)


# ---- confidence: one function per remasking strategy, all with the same signature ----------------------------------


def chosen_token_probability(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """softmax(logits)[x0] (``low_confidence``), as exp(l[x0] − logsumexp l) in float32 without a (…, V) softmax.

    Taken from the logits before the Gumbel noise, as in LLaDA. logits (B, K, V), x0 (B, K) → (B, K).
    """
    logits = logits.float()
    chosen = logits.gather(-1, x0.unsqueeze(-1)).squeeze(-1)  # (B, K)
    return torch.exp(chosen - torch.logsumexp(logits, dim=-1))


def random_confidence(logits: torch.Tensor, x0: torch.Tensor, generator=None, rows=None) -> torch.Tensor:
    """U(0, 1) per position (``random`` remasking): commit k random masked positions. → (B, K)."""
    return uniform(x0.shape, generator, x0.device, rows=rows)


# The choices of ``remasking`` and ``cache`` (``kv_cache`` in recipes): recipes, ``unigrpo generate`` and the checks
# read them from here.
REMASKING = {"low_confidence": chosen_token_probability, "random": random_confidence}
CACHES = ("none", "prefix", "dual")
THRESHOLD_RULES = ("floor", "fast_dllm")


def select_commits(confidence: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The k[b] most confident positions of each row b → bool (B, K); ties go to the earlier position.

    A per-row top-k with a different k in each row, vectorised: the rank of each position in its row's descending
    (stable) order, compared with k. confidence (B, K), k (B,).
    """
    order = torch.argsort(confidence, dim=1, descending=True, stable=True)  # (B, K) positions, best first
    positions = torch.arange(confidence.shape[1], device=confidence.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)  # (B, K) rank of each position
    return rank < k[:, None]


# ---- parallel decoding: how many positions a step commits (Fast-dLLM §3.3) --------------------------------------


def threshold_commit_count(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Masked positions whose confidence exceeds the threshold c. confidence (B, K), −inf where not masked → (B,).

    ``>`` where Fast-dLLM writes ``≥``: they differ only at equality, and with ``>`` c = 1 means exactly "never
    parallel" (a float32 probability can round to 1.0).
    """
    return (confidence > threshold).sum(dim=1)


def factor_commit_count(confidence: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM's factor rule: with the confidences sorted, c(1) ≥ c(2) ≥ …, the longest run n such that
    c(m) ≥ 1 − f/(m + 1) for every m ≤ n — more tokens in parallel only while each is near-certain.
    confidence (B, K), −inf where not masked → (B,)."""
    ordered = confidence.sort(dim=1, descending=True).values  # (B, K)
    m = torch.arange(1, confidence.shape[1] + 1, device=confidence.device, dtype=ordered.dtype)
    passes = ordered >= 1 - factor / (m + 1)  # (B, K)
    return passes.long().cumprod(dim=1).sum(dim=1)


def fast_dllm_commit_count(confidence: torch.Tensor, threshold: float) -> torch.Tensor:
    """Fast-dLLM's threshold rule (``llada/generate.py``, ``get_transfer_index``): the masked positions with
    confidence ≥ c, and at least one — its top-k over the block keeps the best unconditionally and drops the others
    below c. confidence (B, K), −inf where not masked → (B,); a row with no mask left commits nothing (its k = 1
    meets no masked position)."""
    return (confidence >= threshold).sum(dim=1).clamp(min=1)


def commit_count(scheduled: torch.Tensor, confidence: torch.Tensor, config: SamplerConfig) -> torch.Tensor:
    """Positions to commit this step per row (B,). ``threshold_rule='floor'``: the plain schedule's count, raised
    by threshold / factor decoding, at least one; the schedule stays a floor, so a block never needs more than its
    ``steps`` (with one scheduled token per step this equals Fast-dLLM's rule but for ``>``). ``fast_dllm``: the
    schedule is ignored (``fast_dllm_commit_count``)."""
    if config.fast_dllm_threshold:
        return fast_dllm_commit_count(confidence, config.threshold)
    k = scheduled
    if config.threshold is not None:
        k = torch.maximum(k, threshold_commit_count(confidence, config.threshold))
    if config.factor is not None:
        k = torch.maximum(k, factor_commit_count(confidence, config.factor))
    return k.clamp(min=1)


# ---- the model call ------------------------------------------------------------------------------------------------


def model_logits(model, x: torch.Tensor, attention_mask: torch.Tensor | None, **cache) -> torch.Tensor:
    """``model(x).logits`` (B, T, V); the attention mask is passed only when there is padding, the block-cache
    arguments (``kv_cache``, ``span_start``) only when caching."""
    if attention_mask is not None:
        cache["attention_mask"] = attention_mask
    return model(x, **cache).logits


def block_logits(model, x, attention_mask, unconditional_prompt, config: SamplerConfig, window: slice,
                 kv_cache: BlockKVCache | None, refresh: bool) -> torch.Tensor:
    """Logits of x at the block's ``window`` positions → (B, K, V); with CFG, u + (s+1)(c − u) (LLaDA
    ``generate``, cfg_scale).

    The unconditional rows are x with the prompt replaced by ``unconditional_prompt`` (real tokens → mask id); both
    halves go through one forward by concatenation along the batch (and share one cache). Caching: a full forward
    that also refreshes ``kv_cache`` when ``refresh`` (a block's first step), else a forward of the span only —
    the window and everything after it (``prefix``) or the window alone (``dual``).
    """
    rows, mask = x, attention_mask
    if config.cfg_scale:
        P = unconditional_prompt.shape[1]
        rows = torch.cat([x, torch.cat([unconditional_prompt, x[:, P:]], dim=1)])  # (2B, T)
        mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])  # (2B, T)
    if kv_cache is None:
        logits = model_logits(model, rows, mask)[:, window]
    elif refresh:
        logits = model_logits(model, rows, mask, kv_cache=kv_cache)[:, window]
    else:
        stop = rows.shape[1] if config.cache == "prefix" else window.stop
        span = model_logits(model, rows[:, window.start : stop], mask, kv_cache=kv_cache, span_start=window.start)
        logits = span[:, : window.stop - window.start]
    if not config.cfg_scale:
        return logits
    cond, uncond = logits.chunk(2)  # (B, K, V) each
    return uncond + (config.cfg_scale + 1) * (cond - uncond)


def forbid_token(logits: torch.Tensor, token_id: int) -> torch.Tensor:
    """logits with ``token_id``'s column at −inf (a copy). The mask id must never be committed: a committed mask
    would be taken for an open position again, breaking the per-step counts and leaving masks in the answer. A
    trained LLaDA never predicts it, so this changes nothing there; random and barely trained models do."""
    return logits.index_fill(-1, torch.tensor([token_id], device=logits.device), -torch.inf)


# ---- post-processing -----------------------------------------------------------------------------------------------


def truncate_after_eos(completion: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """Everything after the first EOS becomes EOS: the answer canvas is right-padded with EOS (docs/design.md §3.8)."""
    after_eos = torch.cumsum((completion == eos_token_id).long(), dim=1) > 0  # (B, L)
    return completion.masked_fill(after_eos, eos_token_id)


def answer_decided(answer: torch.Tensor, mask_token_id: int, eos_token_id: int) -> torch.Tensor:
    """Rows whose answer can no longer change: an EOS committed and no mask before the first one (the rest is EOS
    padding after truncation). answer (n, L) → bool (n,), on the device."""
    eos = answer == eos_token_id
    before_eos = torch.cumsum(eos.long(), dim=1) == 0  # (n, L)
    return eos.any(dim=1) & ~((answer == mask_token_id) & before_eos).any(dim=1)


# ---- the sampler ---------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate_text(
    model,
    prompt_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    mask_token_id: int,
    eos_token_id: int | None,
    config: SamplerConfig,
    generator: torch.Generator | None = None,
) -> SamplerOutput:
    """Sample answers for left-padded prompts (B, P) with their padding mask (B, P) (1 = token, 0 = pad).

    LLaDA ``generate`` with blocks (LLaDA's semi-autoregressive remasking). Only positions of the current
    block are candidates, which is the same as giving every other position confidence −inf.
    """
    if prompt_ids.dim() != 2:
        raise ValueError(f"prompt_ids must be (B, P), got shape {tuple(prompt_ids.shape)}")
    if attention_mask is not None and attention_mask.shape != prompt_ids.shape:
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != prompt_ids {tuple(prompt_ids.shape)}")
    (B, P), L, K, device = prompt_ids.shape, config.gen_length, config.block_length, prompt_ids.device
    answer = torch.full((B, L), mask_token_id, dtype=prompt_ids.dtype, device=device)
    x = torch.cat([prompt_ids, answer], dim=1)  # (B, T)
    real = torch.ones_like(prompt_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    unconditional_prompt = prompt_ids.masked_fill(real, mask_token_id)  # (B, P) pads stay pads
    full_mask = None  # (B, T) only when some prompt is padded
    if attention_mask is not None and not bool(real.all()):
        full_mask = torch.cat([attention_mask, torch.ones(B, L, dtype=attention_mask.dtype, device=device)], dim=1)
    commit_step = torch.full((B, L), -1, dtype=torch.long, device=device)

    kv_cache = None if config.cache == "none" else BlockKVCache()
    forwards, row_forwards, S = 0, 0, config.max_steps_per_block
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # committed tokens, their summed probability
    alive = torch.arange(B, device=device)  # rows whose answer is not decided yet
    last_step = torch.zeros(B, dtype=torch.long, device=device)  # (B,) each row's last forwarded step
    for block in range(config.num_blocks):
        window = slice(P + block * K, P + (block + 1) * K)
        rows = alive  # (n,) the rows this block forwards; x_, mask_, uncond_, steps_ are theirs
        x_, uncond_, steps_ = x[rows], unconditional_prompt[rows], commit_step[rows]
        mask_ = None if full_mask is None else full_mask[rows]
        schedule = num_transfer_tokens((x_[:, window] == mask_token_id).sum(dim=1), S)  # (n, S) unused by fast_dllm
        for i in range(S):
            step = block * S + i
            masked = x_[:, window] == mask_token_id  # (n, K)
            logits = block_logits(model, x_, mask_, uncond_, config, window, kv_cache, i == 0)
            forwards, row_forwards = forwards + 1, row_forwards + rows.numel()
            last_step[rows] = step
            logits = forbid_token(logits, mask_token_id)  # (n, K, V)
            draws = None if rows.numel() == B else (rows, B)  # the noise of the whole batch, these rows' share
            x0 = gumbel_max_sample(logits, config.temperature, generator, draws).to(x.dtype)  # (n, K)
            confidence = REMASKING[config.remasking](logits, x0, generator, draws).to(torch.float64)  # (n, K)
            confidence = confidence.masked_fill(~masked, -torch.inf)
            k = commit_count(schedule[:, i], confidence, config) if config.parallel else schedule[:, i]
            commit = select_commits(confidence, k) & masked
            x_[:, window] = torch.where(commit, x0, x_[:, window])
            steps_[:, window.start - P : window.stop - P].masked_fill_(commit, step)
            probability = confidence if config.remasking == "low_confidence" else chosen_token_probability(logits, x0)
            committed_probability = torch.where(commit, probability.to(torch.float64), 0.0).sum()
            totals += torch.stack([commit.sum().to(torch.float64), committed_probability])  # stays on the device
            if not config.parallel or i == S - 1:
                continue  # the plain schedule closes every row's block at its last step: nothing to check
            stay = (x_[:, window] == mask_token_id).any(dim=1)  # (n,) block still open
            if config.early_finish and eos_token_id is not None:
                stay &= ~answer_decided(x_[:, P:], mask_token_id, eos_token_id)
            stay = stay.tolist()  # the step's one host read: which rows go on
            if not any(stay):
                break  # parallel commits finished the block early: ``steps`` is a maximum
            if config.early_finish and not all(stay):  # rows done with this block leave it (and its cache rows)
                x[rows], commit_step[rows] = x_, steps_
                keep = torch.tensor([j for j, s in enumerate(stay) if s], device=device)  # (n',) positions in rows
                rows, x_, uncond_, steps_, schedule = rows[keep], x_[keep], uncond_[keep], steps_[keep], schedule[keep]
                mask_ = None if mask_ is None else mask_[keep]
                if kv_cache is not None:  # CFG: the cache holds the conditional rows, then the unconditional ones
                    kv_cache.keep_rows(torch.cat([keep, keep + len(stay)]) if config.cfg_scale else keep)
        x[rows], commit_step[rows] = x_, steps_
        if config.early_finish and eos_token_id is not None and block < config.num_blocks - 1:
            decided = answer_decided(x[alive, P:], mask_token_id, eos_token_id).tolist()  # the block's host read
            alive = alive[torch.tensor([not d for d in decided], dtype=torch.bool, device=device)]
            if alive.numel() == 0:
                break  # every answer decided: the batch ends before its last block

    # Early finish: positions never forwarded are EOS padding, decided when their row was last forwarded.
    commit_step = torch.where(commit_step < 0, last_step[:, None], commit_step)
    completion = x[:, P:]  # (B, L)
    if eos_token_id is not None:
        completion = truncate_after_eos(completion, eos_token_id)
    committed, confidence_sum = totals.tolist()  # the one host read of the statistics
    stats = DecodeStats(committed, float(row_forwards), confidence_sum)
    return SamplerOutput(torch.cat([prompt_ids, completion], dim=1), completion, commit_step, forwards, stats)

