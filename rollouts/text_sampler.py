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

Dream's generation rules are options of the same loop (``rollouts/remasking.py``): ``remasking`` = ``origin`` |
``maskgit_plus`` | ``topk_margin`` | ``entropy`` with ``top_p`` / ``top_k`` / ``alg_temp``, and ``step_schedule =
'dream'`` (⌊m (1 − s/t)⌋ of the m masked positions per step); the schedule, draws and commit counts are in
``rollouts/commit_rules.py``.

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

from .commit_rules import (  # re-exported: the schedule, draws, LLaDA confidences and commit counts lived here
    chosen_token_probability,
    commit_count,
    factor_commit_count,
    fast_dllm_commit_count,
    gumbel_max_sample,
    num_transfer_tokens,
    random_confidence,
    select_commits,
    threshold_commit_count,
    uniform,
)
from .remasking import (
    REMASKING,
    STEP_SCHEDULES,
    check_remasking_options,
    draw_tokens,
    dream_transfer_fractions,
    scheduled_count,
    step_commits,
)


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
    """Which masked positions to commit each step (``rollouts/remasking.py``): LLaDA's ``low_confidence`` (most
    probable first) or ``random``; Dream's ``alg`` choices ``maskgit_plus`` (most probable under top_p/top_k/τ),
    ``topk_margin`` (largest top-1 − top-2 gap), ``entropy`` (lowest entropy) or ``origin`` (each masked position
    with probability 1 − s/t; needs ``step_schedule='dream'``)."""
    top_p: float | None = None
    """Nucleus filter of the x0 draw (Dream's ``top_p``), on softmax(logits/τ), in (0, 1]; Dream's rules also read
    their confidences from the filtered distribution, even at τ = 0. None = off."""
    top_k: int | None = None
    """Keep only the k most probable tokens for x0 (Dream's ``top_k``, after top_p). None = off."""
    alg_temp: float | None = None
    """Dream's ``alg_temp``: None or 0 commits the k most confident positions; α > 0 draws the k positions without
    replacement with probability softmax(confidence / α). Needs a confidence rule and no threshold / factor."""
    step_schedule: str = "llada"
    """How many positions each step of a block commits: ``llada`` (the block's masks split evenly over its steps)
    or ``dream`` (⌊m (1 − s/t)⌋ of the m still masked, t = linspace(1, eps, steps + 1); all at the last step)."""
    schedule_eps: float = 1e-3
    """Dream's ``eps``, the last time of its schedule (``step_schedule='dream'`` only), in [0, 1)."""
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


# The choices of ``cache`` (``kv_cache`` in recipes) and ``threshold_rule`` (``remasking``'s and ``step_schedule``'s:
# rollouts/remasking.py): recipes, ``unigrpo generate`` and the checks read them from here.
CACHES = ("none", "prefix", "dual")
THRESHOLD_RULES = ("floor", "fast_dllm")

RECIPE_KEYS = {
    "gen_length": "max_completion_length",
    "block_length": "block_length",
    "steps": "diffusion_steps",
    "temperature": "temperature",
    "remasking": "remasking",
    "top_p": "top_p",
    "top_k": "top_k",
    "alg_temp": "alg_temp",
    "step_schedule": "step_schedule",
    "schedule_eps": "schedule_eps",
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
    cache, threshold, factor = (options[name] for name in ("cache", "threshold", "factor"))
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
    check_remasking_options(options, key)


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
    the window and everything after it (``prefix``) or the window alone (``dual``), from ``model.span_lookbehind``
    positions before the window (0 for LLaDA / MMaDA, 1 for Dream, whose logits are shifted by one).
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
        # A model whose logits at position s come from its output at s − 1 (Dream) declares ``span_lookbehind``: the
        # span starts that many positions earlier and its first logits, not those of their positions, are dropped.
        behind = min(getattr(model, "span_lookbehind", 0), window.start)
        stop = rows.shape[1] if config.cache == "prefix" else window.stop
        start = window.start - behind
        span = model_logits(model, rows[:, start:stop], mask, kv_cache=kv_cache, span_start=start)
        logits = span[:, behind : behind + window.stop - window.start]
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
    fractions = dream_transfer_fractions(S, config.schedule_eps, device)  # (S,) Dream's 1 − s/t per step
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # committed tokens, their summed probability
    alive = torch.arange(B, device=device)  # rows whose answer is not decided yet
    last_step = torch.zeros(B, dtype=torch.long, device=device)  # (B,) each row's last forwarded step
    for block in range(config.num_blocks):
        window = slice(P + block * K, P + (block + 1) * K)
        rows = alive  # (n,) the rows this block forwards; x_, mask_, uncond_, steps_ are theirs
        x_, uncond_, steps_ = x[rows], unconditional_prompt[rows], commit_step[rows]
        mask_ = None if full_mask is None else full_mask[rows]
        schedule = num_transfer_tokens((x_[:, window] == mask_token_id).sum(dim=1), S)  # (n, S) LLaDA's split
        for i in range(S):
            step = block * S + i
            masked = x_[:, window] == mask_token_id  # (n, K)
            logits = block_logits(model, x_, mask_, uncond_, config, window, kv_cache, i == 0)
            forwards, row_forwards = forwards + 1, row_forwards + rows.numel()
            last_step[rows] = step
            logits = forbid_token(logits, mask_token_id)  # (n, K, V)
            draws = None if rows.numel() == B else (rows, B)  # the noise of the whole batch, these rows' share
            x0, confidence = draw_tokens(logits, config, generator, draws)  # (n, K) each (rollouts/remasking.py)
            x0, confidence = x0.to(x.dtype), confidence.masked_fill(~masked, -torch.inf)
            scheduled = scheduled_count(schedule, masked, i, config, fractions)  # (n,)
            commit = step_commits(confidence, masked, scheduled, i, config, fractions, generator, draws)  # (n, K)
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

