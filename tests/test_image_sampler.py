import math

import pytest
import torch

from rollouts import ImageSamplerConfig, cosine_masked_counts, generate_image_codes
from rollouts.image_sampler import keep_least_confident

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
                               mask_token_id=MASK, config=ImageSamplerConfig(steps, temperature, cfg),
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
    assert torch.equal(run(ImageSamplerConfig(4, 0.0), 0), run(ImageSamplerConfig(4, 0.0), 1))
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
    with pytest.raises(ValueError, match="exceed"):
        generate_image_codes(RecordingModel(), torch.zeros(1, 2, dtype=torch.long), None,
                             torch.zeros(1, 1, dtype=torch.long), num_codes=4, code_offset=OFFSET, codebook_size=K,
                             mask_token_id=MASK, config=ImageSamplerConfig(steps=5))
