import math
from types import SimpleNamespace

import pytest
import torch

import rollouts.image_sampler as image_sampler
from rollouts import ImageSamplerConfig, cosine_masked_counts, generate_image_codes
from rollouts.image_sampler import compounded_choice_temperature, keep_least_confident, mmada_masked_count

MASK, OFFSET, K, N, P = 2, 100, 8, 16, 5


class RecordingModel(torch.nn.Module):
    """Random logits over a vocabulary of 128 that depend on the input; records every input it sees."""

    def __init__(self, vocab=128):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, vocab)
        self.seen = []

    def forward(self, input_ids, attention_mask=None):
        self.seen.append(input_ids.clone())
        return type("Out", (), {"logits": self.embed(input_ids) + self.embed(input_ids).mean(1, keepdim=True)})()


def test_cosine_schedule_counts():
    assert cosine_masked_counts(16, 4) == [math.floor(16 * math.cos(math.pi / 2 * r)) for r in (0.25, 0.5, 0.75)] + [0]
    for n, s in [(16, 16), (4, 4), (1024, 15), (16, 1), (5, 3)]:
        counts = cosine_masked_counts(n, s)
        assert counts[-1] == 0 and all(c >= 1 for c in counts[:-1])  # at least one stays masked until the end
        assert all(a > b for a, b in zip([n] + counts, counts))  # every step commits at least one code


@pytest.mark.parametrize("temperature,cfg", [(1.0, 0.0), (0.0, 0.0), (1.0, 3.5)])
def test_commits_exactly_the_scheduled_number_of_codebook_ids_per_step(temperature, cfg):
    torch.manual_seed(0)
    model = RecordingModel()
    B, steps = 3, 5
    prompt = torch.randint(10, 60, (B, P))
    suffix = torch.full((B, 1), 9)
    uncond = torch.randint(10, 60, (B, P)) if cfg else None
    out = generate_image_codes(model, prompt, None, suffix, num_codes=N, code_offset=OFFSET, codebook_size=K,
                               mask_token_id=MASK, config=ImageSamplerConfig(steps, temperature, cfg, 'maskgit'),
                               unconditional_ids=uncond, generator=torch.Generator().manual_seed(1))
    assert out.codes.shape == (B, N) and ((out.codes >= 0) & (out.codes < K)).all()
    remaining = cosine_masked_counts(N, steps)
    committed = [(out.commit_step == s).sum(1) for s in range(steps)]
    expected = [N - remaining[0]] + [remaining[s - 1] - remaining[s] for s in range(1, steps)]
    for s in range(steps):
        assert (committed[s] == expected[s]).all()
    # each forward saw the prompt and the suffix untouched, and only mask ids or committed codebook ids between
    for x in model.seen:
        x = x[:B]  # the conditional half under CFG
        assert torch.equal(x[:, :P], prompt) and torch.equal(x[:, -1:], suffix)
        canvas = x[:, P:-1]
        assert ((canvas == MASK) | ((canvas >= OFFSET) & (canvas < OFFSET + K))).all()
    if cfg:
        assert all(torch.equal(x[B:, :P], uncond) for x in model.seen)  # the guidance branch: empty caption


def test_greedy_is_deterministic_and_seeded_sampling_reproduces():
    model = RecordingModel()
    prompt, suffix = torch.randint(10, 60, (2, P)), torch.full((2, 1), 9)
    run = lambda cfg, seed: generate_image_codes(  # noqa: E731
        model, prompt, None, suffix, num_codes=N, code_offset=OFFSET, codebook_size=K, mask_token_id=MASK,
        config=cfg, generator=torch.Generator().manual_seed(seed)).codes
    greedy = ImageSamplerConfig(4, 0.0, mode="maskgit")
    assert torch.equal(run(greedy, 0), run(greedy, 1))
    assert torch.equal(run(ImageSamplerConfig(4, 1.0), 3), run(ImageSamplerConfig(4, 1.0), 3))


def test_keep_least_confident_never_picks_committed_positions():
    confidence = torch.tensor([[0.1, 0.9, 0.05, 0.5]])
    masked = torch.tensor([[False, True, True, True]])
    assert keep_least_confident(confidence, masked, 2).tolist() == [[False, False, True, True]]


def test_bad_options():
    with pytest.raises(ValueError, match="steps"):
        ImageSamplerConfig(steps=0)
    with pytest.raises(ValueError, match="cfg_scale"):
        ImageSamplerConfig(cfg_scale=-1)
    with pytest.raises(ValueError, match=r"image_sampler='muse' is not one of \['maskgit', 'mmada'\]"):
        ImageSamplerConfig(mode="muse")
    with pytest.raises(ValueError, match="exceed"):
        generate_image_codes(RecordingModel(), torch.zeros(1, 2, dtype=torch.long), None,
                             torch.zeros(1, 1, dtype=torch.long), num_codes=4, code_offset=OFFSET, codebook_size=K,
                             mask_token_id=MASK, config=ImageSamplerConfig(steps=5))


# ---- mode "mmada": MMaDA's published t2i_generate, token for token ------------------------------------------------

TEXT_VOCAB, MMADA_MASK = 100, 99  # MMaDA-shaped: the mask id lies in the text vocabulary, the K codes after it


class FixedLogitsMMaDA:
    """A tiny MMaDA-shaped stand-in: vocabulary = TEXT_VOCAB text ids then K code ids; its logits are a fixed
    function of the input (a seeded table row per token plus the sequence's mean row, so committed codes move
    every position's logits). Masked positions share one input id, hence ties among them at temperature 0."""

    def __init__(self, scale=3.0, constant=False):
        vocab = TEXT_VOCAB + K
        self.table = torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)) * scale
        self.constant = constant

    def __call__(self, input_ids, attention_mask=None):
        rows = self.table[input_ids]  # (B, T, V)
        logits = torch.zeros_like(rows) if self.constant else rows + rows.mean(1, keepdim=True)
        return SimpleNamespace(logits=logits)


def reference_t2i_generate(model, prompt, uncond_prompt, suffix, steps, temperature, cfg_scale, generator):
    """MMaDA's ``t2i_generate`` written out from the published algorithm, slowly, one step at a time: returns the
    last step's sampled ids (B, N). Facts followed: codes ~ multinomial(softmax(logits)) whatever the temperature;
    ``temperature = temperature·(1 − r)`` overwrites itself (compounds); mask_len = ⌊N·cos(π/2·r)⌋ on a float32
    tensor, clamped to [1, #unknown − 1]; confidence = log p(clamped 1e-20) + τ·Gumbel (float32 uniforms, logs
    clamped 1e-20); masked again where confidence < the mask_len-th smallest (0-based) confidence."""
    (B, P), N = prompt.shape, 16
    ids = torch.cat([prompt, torch.full((B, N), MMADA_MASK), suffix], dim=1)
    for step in range(steps):
        if cfg_scale > 0:
            both = torch.cat([ids, torch.cat([uncond_prompt, ids[:, P:]], dim=1)])
            cond, uncond = model(both).logits.chunk(2)
            logits = (1 + cfg_scale) * cond - cfg_scale * uncond
        else:
            logits = model(ids).logits
        logits = logits[:, P:P + N, TEXT_VOCAB:TEXT_VOCAB + K]  # (B, N, K)
        probs = logits.softmax(dim=-1)
        sampled = torch.multinomial(probs.reshape(-1, K), 1, generator=generator)[:, 0].view(B, N)
        unknown = ids[:, P:P + N] == MMADA_MASK
        sampled = torch.where(unknown, sampled, ids[:, P:P + N] - TEXT_VOCAB)
        ratio = 1.0 * (step + 1) / steps
        mask_ratio = torch.cos(torch.tensor(ratio) * math.pi * 0.5)  # float32
        selected = torch.where(unknown, probs.gather(-1, sampled[..., None]).squeeze(-1), torch.finfo().max)
        mask_len = (N * mask_ratio).floor().unsqueeze(0)
        mask_len = torch.max(torch.tensor([1]), torch.min(unknown.sum(dim=-1, keepdim=True) - 1, mask_len))
        temperature = temperature * (1.0 - ratio)
        noise = torch.zeros_like(selected).uniform_(0, 1, generator=generator)
        gumbel = -torch.log((-torch.log(noise.clamp(min=1e-20))).clamp(min=1e-20))
        confidence = torch.log(selected.clamp(min=1e-20)) + temperature * gumbel
        cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
        masking = confidence < cut_off
        ids[:, P:P + N] = torch.where(masking, MMADA_MASK, sampled + TEXT_VOCAB)
    return sampled


def mmada_run(model, config, seed, prompt, uncond=None):
    suffix = torch.full((prompt.shape[0], 1), 7)
    return generate_image_codes(model, prompt, None, suffix, num_codes=N, code_offset=TEXT_VOCAB, codebook_size=K,
                                mask_token_id=MMADA_MASK, config=config, unconditional_ids=uncond,
                                generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps,temperature,cfg", [(3, 1.0, 0.0), (5, 0.0, 0.0), (6, 2.0, 3.5), (16, 1.0, 0.0)])
def test_mmada_mode_gives_the_published_tokens(steps, temperature, cfg):
    model = FixedLogitsMMaDA()
    prompt = torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24], [30, 31, 32, 33, 34]])
    uncond = torch.full_like(prompt, 5) if cfg else None
    for seed in range(4):
        out = mmada_run(model, ImageSamplerConfig(steps, temperature, cfg, "mmada"), seed, prompt, uncond)
        expected = reference_t2i_generate(model, prompt, uncond, torch.full((3, 1), 7), steps, temperature, cfg,
                                          torch.Generator().manual_seed(seed))
        assert torch.equal(out.codes, expected), (seed, out.codes, expected)
        assert ((out.commit_step >= 0) & (out.commit_step < steps)).all()


def test_each_published_detail_changes_the_tokens(monkeypatch):
    """Undo one detail at a time (annealed instead of compounding τ; the float64 schedule): the tokens no longer
    match the published ones, so the reference test above checks each of them."""
    model, prompt = FixedLogitsMMaDA(), torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    config = ImageSamplerConfig(6, 1.0, 0.0, "mmada")
    published = [reference_t2i_generate(model, prompt, None, torch.full((2, 1), 7), 6, 1.0, 0.0,
                                        torch.Generator().manual_seed(seed)) for seed in range(8)]
    assert all(torch.equal(mmada_run(model, config, seed, prompt).codes, published[seed]) for seed in range(8))
    with monkeypatch.context() as patch:
        patch.setattr(image_sampler, "compounded_choice_temperature", lambda t, s, steps: t * (1 - (s + 1) / steps))
        assert any(not torch.equal(mmada_run(model, config, seed, prompt).codes, published[seed]) for seed in range(8))
    with monkeypatch.context() as patch:
        patch.setattr(image_sampler, "mmada_masked_count", lambda n, s, steps: cosine_masked_counts(n, steps)[s])
        assert any(not torch.equal(mmada_run(model, config, seed, prompt).codes, published[seed]) for seed in range(8))


def test_mmada_schedule_is_float32_and_floored():
    # r = 2/3: cos(π/3) = ½ exactly, float64 rounds it up (8 of 16 stay masked), float32 down (7)
    assert cosine_masked_counts(16, 3)[1] == 8 and mmada_masked_count(16, 1, 3) == 7
    assert mmada_masked_count(16, 0, 3) == cosine_masked_counts(16, 3)[0] == 13
    assert mmada_masked_count(16, 2, 3) == -1  # float32 cos(π/2) < 0: clamped to 1 by the step
    # the sampler follows it: after step 1 of 3, 7 codes stay masked (mmada) and 8 (maskgit); τ > 0: no ties
    model, prompt = FixedLogitsMMaDA(), torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    for mode, masked_after_step_1 in [("mmada", 7), ("maskgit", 8)]:
        out = mmada_run(model, ImageSamplerConfig(3, 1.0, 0.0, mode), 0, prompt)
        assert ((out.commit_step == 0).sum(1) == 3).all()  # 16 − 13
        assert ((out.commit_step == 2).sum(1) == masked_after_step_1).all(), mode


def test_mmada_choice_temperature_compounds():
    assert [compounded_choice_temperature(1.0, s, 4) for s in range(4)] == [0.75, 0.375, 0.09375, 0.0]
    assert [1.0 * (1 - (s + 1) / 4) for s in range(4)] == [0.75, 0.5, 0.25, 0.0]  # maskgit's annealed τ_s


def test_mmada_samples_codes_at_temperature_one():
    """One step: the codes are torch.multinomial(softmax(logits)) from the generator whatever the temperature;
    maskgit at temperature 0 takes the argmax instead."""
    model, prompt = FixedLogitsMMaDA(), torch.tensor([[10, 11, 12, 13, 14]] * 64)
    logits = model(torch.cat([prompt, torch.full((64, N), MMADA_MASK), torch.full((64, 1), 7)], 1)).logits
    probs = logits[:, 5:5 + N, TEXT_VOCAB:].softmax(-1).reshape(-1, K)
    drawn = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3))[:, 0].view(64, N)
    for temperature in (0.0, 0.5, 1.0, 4.0):
        assert torch.equal(mmada_run(model, ImageSamplerConfig(1, temperature, mode="mmada"), 3, prompt).codes, drawn)
    greedy = mmada_run(model, ImageSamplerConfig(1, 0.0, mode="maskgit"), 3, prompt).codes
    assert torch.equal(greedy, probs.argmax(-1).view(64, N)) and not torch.equal(greedy, drawn)


def test_mmada_ties_at_the_cut_off_stay_committed():
    """Equal confidences (constant logits, temperature 0): ``confidence < cut_off`` masks none of them, so every
    code is committed at the first step; maskgit keeps exactly the scheduled count masked."""
    model, prompt = FixedLogitsMMaDA(constant=True), torch.tensor([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    out = mmada_run(model, ImageSamplerConfig(4, 0.0, mode="mmada"), 0, prompt)
    assert torch.equal(out.codes, reference_t2i_generate(model, prompt, None, torch.full((2, 1), 7), 4, 0.0, 0.0,
                                                         torch.Generator().manual_seed(0)))
    assert (out.commit_step == 0).all()
    plain = mmada_run(model, ImageSamplerConfig(4, 0.0, mode="maskgit"), 0, prompt)
    assert ((plain.commit_step == 0).sum(1) == N - cosine_masked_counts(N, 4)[0]).all()


def test_the_recipe_key_image_sampler_selects_the_mode(tmp_path):
    from unigrpo.config import UniGRPOConfig

    assert UniGRPOConfig(output_dir=str(tmp_path)).image_sampler_config().mode == "mmada"  # MMaDA's, by default
    chosen = UniGRPOConfig(output_dir=str(tmp_path), image_sampler="maskgit", image_temperature=0.5)
    assert chosen.image_sampler_config(0.0) == ImageSamplerConfig(16, 0.0, 0.0, "maskgit")
    with pytest.raises(ValueError, match="image_sampler='maskgit2' is not one of"):
        UniGRPOConfig(output_dir=str(tmp_path), image_sampler="maskgit2")
