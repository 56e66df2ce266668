"""Dream's generation rules as sampler options (rollouts/remasking.py, issue #19): hand-written traces of its ``alg``
choices and step schedule on stand-in models, a plain reference loop written from the published rules, top_p /
top_k golden values, alg_temp and origin draws, and the options with the block cache and threshold decoding."""

import math

import pytest
import torch

from rollouts import SamplerConfig, generate_text
from rollouts.remasking import filter_tokens, gumbel_top_k_scores, negative_entropy, sampling_logits, top2_margin
from rollouts.text_sampler import RECIPE_KEYS, chosen_token_probability, select_commits
from model_helpers import sharpened

MASK = 4  # the stand-ins' mask id; tokens 0…3 are real, so V = 5


class Output:
    def __init__(self, logits):
        self.logits = logits


class Table(torch.nn.Module):
    """Prescribed masked-LM logits: answer position j of a row whose prompt starts with token r reads
    ``tables[r][j]`` (V = 5, the mask id's column −inf). With ``sharpen``, a position's logits are doubled once the
    position to its left is committed, so confidences change from step to step. Counts its forwards."""

    def __init__(self, tables, prompt_length, sharpen=False):
        super().__init__()
        self.tables, self.P, self.sharpen, self.calls = torch.as_tensor(tables), prompt_length, sharpen, 0

    def forward(self, input_ids, **kwargs):
        self.calls += 1
        B, T = input_ids.shape
        table = self.tables[input_ids[:, 0]]  # (B, L, V)
        if self.sharpen:
            answer = input_ids[:, self.P:]
            left_done = torch.cat([torch.zeros(B, 1, dtype=torch.bool), answer[:, :-1] != MASK], dim=1)
            table = torch.where(left_done[..., None], 2 * table, table)
        logits = torch.zeros(B, T, table.shape[-1])
        logits[:, self.P:] = table
        logits[..., MASK] = -torch.inf
        return Output(logits)


def log_probs(*rows):
    """Logits whose softmax is each row (a zero becomes 1e-30); the mask id's column (−inf) last."""
    out = torch.tensor(rows, dtype=torch.float32).clamp_min(1e-30).log()
    return torch.cat([out, torch.full((len(rows), 1), -torch.inf)], dim=1)


# Four positions whose three Dream confidences order them differently (tokens 0…3, the winner of position j is j):
#            max p   p1 − p2   entropy H
#   j = 0     .60      .20       .673      (two tokens: lowest entropy)
#   j = 1     .58      .44      1.142      (widest gap)
#   j = 2     .62      .43       .928      (most probable)
#   j = 3     .40      .10      1.089
HAND = log_probs([0.60, 0.00, 0.40, 0.00], [0.14, 0.58, 0.14, 0.14], [0.19, 0.00, 0.62, 0.19],
                 [0.30, 0.00, 0.30, 0.40])


def run(model, prompts, seed=None, eos=None, mask=None, **config):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    return generate_text(model, prompts, mask, mask_token_id=MASK, eos_token_id=eos, config=SamplerConfig(**config),
                         generator=generator)


# ---- Dream's step schedule ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gen_length,steps,counts",
    [
        # t = linspace(1, 1e-3, 5) = 1, .75025, .5005, .25075, .001; 1 − s/t = .24975, .33289, .49900, (last: all)
        (8, 4, [1, 2, 2, 3]),  # ⌊8·.24975⌋ = 1, ⌊7·.33289⌋ = 2, ⌊5·.499⌋ = 2, the last 3
        (4, 4, [0, 1, 1, 2]),  # ⌊4·.24975⌋ = ⌊.999⌋ = 0: Dream's first step commits nothing here
        (8, 2, [3, 5]),  # t = 1, .5005: ⌊8·.4995⌋ = 3, then the other 5
    ],
)
def test_dream_schedule_commits_its_share_of_the_remaining_masks(gen_length, steps, counts):
    table = torch.randn(1, gen_length, 5, generator=torch.Generator().manual_seed(0))
    out = run(Table(table, 1), torch.tensor([[0]]), gen_length=gen_length, block_length=gen_length, steps=steps,
              remasking="maskgit_plus", step_schedule="dream")
    assert torch.bincount(out.commit_step[0], minlength=steps).tolist() == counts


def test_dream_schedule_restarts_in_every_block():
    """Blocks as Fast-dLLM's Dream sampler: t = linspace(1, eps, steps per block + 1) and the block's own masks."""
    table = torch.randn(1, 16, 5, generator=torch.Generator().manual_seed(1))
    out = run(Table(table, 1), torch.tensor([[0]]), gen_length=16, block_length=8, steps=8, remasking="entropy",
              step_schedule="dream")
    assert torch.bincount(out.commit_step[0], minlength=8).tolist() == [1, 2, 2, 3] * 2
    assert (out.commit_step[0, :8] < 4).all() and (out.commit_step[0, 8:] >= 4).all()


# ---- hand-written traces at temperature 0 --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "remasking,schedule,commit_step",
    [
        # Dream's schedule for 4 positions and 4 steps commits 0, 1, 1, 2 (above). Each rule's order of HAND:
        ("maskgit_plus", "dream", [2, 3, 1, 3]),  # max p: j2 > j0 > j1 > j3
        ("topk_margin", "dream", [3, 1, 2, 3]),  # margin: j1 > j2 > j0 > j3
        ("entropy", "dream", [1, 3, 2, 3]),  # −H: j0 > j2 > j3 > j1
        ("maskgit_plus", "llada", [1, 2, 0, 3]),  # LLaDA's even split: one a step, by max p
        ("low_confidence", "dream", [2, 3, 1, 3]),  # LLaDA's confidence under Dream's schedule: = max p here
    ],
)
def test_each_rule_commits_in_its_own_order(remasking, schedule, commit_step):
    model = Table(HAND[None], 1)
    out = run(model, torch.tensor([[0]]), gen_length=4, block_length=4, steps=4, remasking=remasking,
              step_schedule=schedule)
    assert out.commit_step.tolist() == [commit_step]
    assert out.completion_ids.tolist() == [[0, 1, 2, 3]]
    assert model.calls == out.forwards == 4


def dream_reference(model, prompt, gen_length, block_length, steps, alg, eps=1e-3):
    """Dream's published rule at temperature 0 and alg_temp None, written plainly for one row: per block (Fast-dLLM's
    blocked variant), t = linspace(1, eps, n + 1); step i commits int(m · (1 − t[i+1]/t[i])) of the m masked
    positions of the block (all at the last step), the most confident by the alg, with x0 = argmax p."""
    P = prompt.shape[0]
    x = torch.cat([prompt, torch.full((gen_length,), MASK)])[None]
    commit_step = [-1] * gen_length
    per_block = steps // (gen_length // block_length)
    for block in range(gen_length // block_length):
        t = torch.linspace(1, eps, per_block + 1)
        for i in range(per_block):
            logits = model(x).logits[0, P:].clone()
            logits[:, MASK] = -torch.inf
            probs = logits.softmax(dim=-1)
            masked = [j for j in range(block * block_length, (block + 1) * block_length) if x[0, P + j] == MASK]
            confidence = {}
            for j in masked:
                top = probs[j].sort(descending=True).values
                confidence[j] = {"maskgit_plus": top[0], "topk_margin": top[0] - top[1],
                                 "entropy": (probs[j] * torch.log(probs[j] + 1e-10)).sum()}[alg].item()
            k = int(len(masked) * (1 - t[i + 1] / t[i])) if i < per_block - 1 else len(masked)
            for j in sorted(masked, key=lambda j: (-confidence[j], j))[:k]:
                x[0, P + j] = probs[j].argmax()
                commit_step[j] = block * per_block + i
    return commit_step, x[0, P:].tolist()


@pytest.mark.parametrize("alg", ["maskgit_plus", "topk_margin", "entropy"])
@pytest.mark.parametrize("gen_length,block_length,steps", [(8, 8, 4), (8, 8, 8), (12, 4, 6), (16, 8, 4)])
def test_the_sampler_follows_the_published_rule_step_by_step(alg, gen_length, block_length, steps):
    """Confidences that change as neighbours are committed (``sharpen``), two rows with different tables."""
    tables = torch.randn(2, gen_length, 5, generator=torch.Generator().manual_seed(gen_length + steps)) * 1.5
    model = Table(tables, 2, sharpen=True)
    prompts = torch.tensor([[0, 9], [1, 9]])
    out = run(model, prompts, gen_length=gen_length, block_length=block_length, steps=steps, remasking=alg,
              step_schedule="dream")
    for row in range(2):
        commit_step, tokens = dream_reference(model, prompts[row], gen_length, block_length, steps, alg)
        assert out.commit_step[row].tolist() == commit_step
        assert out.completion_ids[row].tolist() == tokens


# ---- top_p / top_k -----------------------------------------------------------------------------------------------


P4 = [0.50, 0.30, 0.15, 0.05]


@pytest.mark.parametrize(
    "temperature,top_p,top_k,kept",
    [
        (0.0, 0.7, None, [0, 1]),  # cumulative .5, .8, .95: the token that crosses .7 is kept, the rest dropped
        (0.0, 0.85, None, [0, 1, 2]),
        (0.0, 0.4, None, [0]),  # the most probable is always kept
        (0.0, 1.0, None, [0, 1, 2, 3]),  # 1 = off
        (0.0, None, 2, [0, 1]),
        (0.0, 0.85, 2, [0, 1]),  # top_p, then top_k
        (1.0, 0.7, None, [0, 1]),
        # τ = 2: p ∝ √p = .379, .294, .208, .120; cumulative .379, .673, .880: now .7 keeps three tokens
        (2.0, 0.7, None, [0, 1, 2]),
    ],
)
def test_top_p_and_top_k_golden_values(temperature, top_p, top_k, kept):
    logits = torch.tensor(P4).log()[None, None]  # (1, 1, 4)
    filtered = filter_tokens(logits, temperature, top_p, top_k)[0, 0]
    assert torch.isfinite(filtered).nonzero().flatten().tolist() == kept
    torch.testing.assert_close(filtered[kept], logits[0, 0, kept])  # the kept logits are not rescaled


def test_top_k_keeps_ties_with_the_kth():
    """Dream drops only the logits below the k-th largest."""
    filtered = filter_tokens(torch.tensor([[[1.0, 3.0, 1.0, 0.0]]]), 0.0, None, 2)
    assert torch.isfinite(filtered[0, 0]).tolist() == [True, True, True, False]


def test_dream_confidences_read_the_filtered_distribution_golden_values():
    """top_p = .7 keeps .5 and .3, renormalised to .625 and .375 (also at τ = 0, as Dream's sample_tokens)."""
    logits = torch.tensor(P4).log()[None, None]
    source = sampling_logits(filter_tokens(logits, 0.0, 0.7, None), 0.0)
    x0 = torch.tensor([[0]])
    assert chosen_token_probability(source, x0).item() == pytest.approx(0.625, abs=1e-6)
    assert top2_margin(source, x0).item() == pytest.approx(0.25, abs=1e-6)
    assert negative_entropy(source, x0).item() == pytest.approx(0.625 * math.log(0.625) + 0.375 * math.log(0.375),
                                                                abs=1e-6)
    # unfiltered: .5, .5 − .3, Σ p log p
    source = sampling_logits(logits, 0.0)
    assert top2_margin(source, x0).item() == pytest.approx(0.2, abs=1e-6)
    assert negative_entropy(source, x0).item() == pytest.approx(sum(p * math.log(p) for p in P4), abs=1e-6)


def test_sampled_tokens_stay_inside_top_k():
    """At τ = 1, top_k = 2: over many seeds every committed token is one of its position's two most probable, and
    both occur (the filter restricts the draw, it does not make it greedy)."""
    table = torch.randn(1, 8, 5, generator=torch.Generator().manual_seed(3))
    allowed = table[0, :, :4].topk(2, dim=-1).indices  # (8, 2)
    seen = set()
    for seed in range(12):
        out = run(Table(table, 1), torch.tensor([[0]]), seed=seed, gen_length=8, block_length=8, steps=4,
                  temperature=1.0, top_k=2, remasking="maskgit_plus", step_schedule="dream")
        tokens = out.completion_ids[0]
        assert (tokens[:, None] == allowed).any(dim=1).all()
        seen.update((j, t) for j, t in enumerate(tokens.tolist()))
    assert len(seen) > 8  # some position drew its second token


# ---- origin and alg_temp ---------------------------------------------------------------------------------------


def origin_run(seed, rows=1, gen_length=8):
    table = torch.randn(1, gen_length, 5, generator=torch.Generator().manual_seed(5))
    return run(Table(table, 1), torch.zeros(rows, 1, dtype=torch.long), seed=seed, gen_length=gen_length,
               block_length=gen_length, steps=4, temperature=1.0, remasking="origin", step_schedule="dream")


def test_origin_is_seeded_and_reproducible():
    a, b = origin_run(7), origin_run(7)
    assert torch.equal(a.commit_step, b.commit_step) and torch.equal(a.completion_ids, b.completion_ids)
    others = [origin_run(seed).commit_step for seed in range(8)]
    assert any(not torch.equal(a.commit_step, other) for other in others)
    assert not (a.completion_ids == MASK).any()  # the last step commits whatever is left


def test_origin_commits_each_mask_with_probability_one_minus_s_over_t():
    """256 rows of 16 positions: step 0 commits each with probability .24975 (≈ 1023 ± 28 in all), step 1 each
    remaining one with .33289."""
    out = origin_run(0, rows=256, gen_length=16)
    counts = torch.bincount(out.commit_step.flatten(), minlength=4).tolist()
    assert abs(counts[0] - 4096 * 0.24975) < 120
    assert abs(counts[1] - (4096 - counts[0]) * 0.33289) < 120
    assert sum(counts) == 4096


def test_alg_temp_draws_positions_by_softmax_of_confidence():
    """Gumbel-top-k = multinomial without replacement: of two positions with confidences log 3 and 0, the first is
    drawn with probability softmax(c / α)[0] = .75 at α = 1 and √3 / (√3 + 1) ≈ .634 at α = 2."""
    confidence = torch.tensor([[math.log(3), 0.0, -math.inf]], dtype=torch.float64).expand(20000, 3)
    generator = torch.Generator().manual_seed(0)
    for alg_temp, expected in [(1.0, 0.75), (2.0, math.sqrt(3) / (math.sqrt(3) + 1))]:
        chosen = select_commits(gumbel_top_k_scores(confidence, alg_temp, generator), torch.ones(20000).long())
        assert chosen[:, 0].double().mean().item() == pytest.approx(expected, abs=0.015)
        assert not chosen[:, 2].any()  # a position that is not masked is never drawn


def test_alg_temp_near_zero_is_top_k_and_seeded_runs_reproduce():
    model = Table(HAND[None], 1)
    kwargs = dict(gen_length=4, block_length=4, steps=4, remasking="maskgit_plus", step_schedule="dream")
    assert run(model, torch.tensor([[0]]), seed=0, alg_temp=1e-6, **kwargs).commit_step.tolist() == [[2, 3, 1, 3]]
    drawn = [run(model, torch.tensor([[0]]), seed=s, alg_temp=5.0, **kwargs).commit_step for s in range(10)]
    assert torch.equal(drawn[0], run(model, torch.tensor([[0]]), seed=0, alg_temp=5.0, **kwargs).commit_step)
    assert len({tuple(d[0].tolist()) for d in drawn}) > 1  # α = 5 flattens the order


# ---- threshold decoding on the rule's own confidence --------------------------------------------------------------


@pytest.mark.parametrize(
    "remasking,threshold,commit_step,forwards",
    [
        # c = .5 (floor rule, one scheduled a step): max p .60 .58 .62 pass → three at once, then j3
        ("maskgit_plus", 0.5, [0, 0, 0, 1], 2),
        ("topk_margin", 0.5, [2, 0, 1, 3], 4),  # no margin exceeds .5: the schedule alone, by margin
        # entropy compares exp(−H): .510 .319 .396 .337 — only j0 passes .5; all pass .3
        ("entropy", 0.5, [0, 3, 1, 2], 4),
        ("entropy", 0.3, [0, 0, 0, 0], 1),
    ],
)
def test_threshold_decoding_uses_the_rules_confidence(remasking, threshold, commit_step, forwards):
    model = Table(HAND[None], 1)
    out = run(model, torch.tensor([[0]]), gen_length=4, block_length=4, steps=4, remasking=remasking,
              threshold=threshold)
    assert out.commit_step.tolist() == [commit_step]
    assert out.forwards == model.calls == forwards


# ---- with the block cache, threshold decoding and early finish on a tiny LLaDA -------------------------------------


@pytest.fixture(scope="module")
def micro(micro_model_dir):
    return sharpened(micro_model_dir)


@pytest.mark.parametrize(
    "options",
    [
        dict(remasking="maskgit_plus", threshold=0.9, top_p=0.95, temperature=0.7, step_schedule="dream"),
        dict(remasking="topk_margin", threshold=0.5, top_k=8, temperature=1.0, step_schedule="dream"),
        dict(remasking="entropy", threshold=0.9, threshold_rule="fast_dllm"),
        dict(remasking="entropy", factor=1.0, step_schedule="dream", temperature=0.5),
        dict(remasking="origin", step_schedule="dream", temperature=1.0, top_p=0.9),
        dict(remasking="maskgit_plus", alg_temp=0.5, step_schedule="dream", temperature=1.0),
    ],
)
@pytest.mark.parametrize("cache", ["dual", "prefix"])
def test_dream_options_run_with_the_block_cache(micro, options, cache):
    model, mask_id, eos_id = micro
    pad = eos_id
    prompts = torch.tensor([[pad, pad, 40, 41, 42], [50, 51, 52, 53, 54], [pad, 60, 61, 62, 63]])
    attention = (prompts != pad).long()
    config = SamplerConfig(gen_length=16, block_length=8, steps=8, cache=cache, **options)
    out = generate_text(model, prompts, attention, mask_token_id=mask_id, eos_token_id=eos_id, config=config,
                        generator=torch.Generator().manual_seed(0))
    assert out.completion_ids.shape == (3, 16) and out.sequences.shape == (3, 21)
    assert torch.equal(out.sequences[:, :5], prompts)
    assert not (out.completion_ids == mask_id).any()
    after_eos = torch.cumsum((out.completion_ids == eos_id).long(), dim=1) > 0
    assert (out.completion_ids[after_eos] == eos_id).all()  # EOS padding after the first EOS
    assert (out.commit_step >= 0).all() and out.forwards <= 2 * config.max_steps_per_block
    again = generate_text(model, prompts, attention, mask_token_id=mask_id, eos_token_id=eos_id, config=config,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.completion_ids, again.completion_ids)  # seeded


# ---- options: recipe keys and their errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(alg_temp=-1), r"^alg_temp=-1 must be a finite number ≥ 0"),
        (dict(top_p=1.5), r"^top_p=1.5 must be a probability mass in \(0, 1\]"),
        (dict(top_p=0), r"^top_p=0 must be"),
        (dict(top_k=0), r"^top_k=0 must be a positive integer"),
        (dict(top_k=2.5), r"^top_k=2.5 must be a positive integer"),
        (dict(remasking="foo"), r"^remasking='foo' is not valid; choose one of \['low_confidence', 'random', "
                                r"'origin', 'maskgit_plus', 'topk_margin', 'entropy'\]"),
        (dict(step_schedule="cosine"), r"^step_schedule='cosine' is not valid; choose one of \['llada', 'dream'\]"),
        (dict(schedule_eps=1.0), r"^schedule_eps=1.0 must be a number in \[0, 1\)"),
        (dict(remasking="origin"), r"^remasking='origin' .* set step_schedule='dream'"),
        (dict(remasking="random", alg_temp=0.5), r"^alg_temp=0.5 draws positions by their confidence"),
        (dict(remasking="origin", step_schedule="dream", confidence_threshold=0.9),
         r"^confidence_threshold/confidence_factor decoding compares confidences"),
        (dict(alg_temp=0.5, confidence_threshold=0.9), r"^confidence_threshold/confidence_factor decoding commits "
                                                       r"the most confident positions, alg_temp=0.5"),
    ],
)
def test_bad_dream_options_are_one_clear_error(options, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig.from_recipe(**options)


def test_the_options_are_recipe_keys_of_train_and_generate(tmp_path):
    from unigrpo.config import SamplingArguments, UniGRPOConfig
    from unigrpo.generate_cli import build_parser
    from unigrpo.recipe_check import check_recipe

    keys = ("top_p", "top_k", "alg_temp", "step_schedule", "schedule_eps")
    assert all(RECIPE_KEYS[key] == key for key in keys)
    config = SamplingArguments(remasking="entropy", top_p=0.95, top_k=20, alg_temp=0.0, step_schedule="dream",
                               schedule_eps=0.01).sampler_config()
    assert (config.remasking, config.top_p, config.top_k, config.alg_temp) == ("entropy", 0.95, 20, 0.0)
    assert (config.step_schedule, config.schedule_eps) == ("dream", 0.01)
    args = build_parser().parse_args(["--model", "m", "--prompt", "p", "--top_k", "5", "--alg_temp", "none",
                                      "--remasking", "topk_margin", "--step_schedule", "dream"])
    assert (args.top_k, args.alg_temp, args.remasking, args.step_schedule) == (5, None, "topk_margin", "dream")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: tiny-arith-sft\ndataset_name: arith\nreward_funcs: [math_correctness]\n"
                      "num_generations: 2\nper_device_train_batch_size: 2\nmax_completion_length: 6\n"
                      "block_length: 6\ndiffusion_steps: 6\nremasking: maskgit_plus\nalg_temp: -1\n")
    assert check_recipe(recipe, UniGRPOConfig) == [f"{recipe}: alg_temp=-1.0 must be a finite number ≥ 0, or None "
                                                   f"(commit the most confident positions)"]
