"""Rejection-sampling fine-tuning (unigrpo/rft.py): exactly the correct answers are kept, as EOS-padded canvases;
the SFT loss never masks the prompt and equals the hand-written loss; a sample through the real sampler and rewards."""

import torch

from unigrpo.rft import KeptAnswers, eos_padded, keep_correct, rft_loss
from unigrpo.sft import masked_diffusion_sft_loss

EOS, MASK = 2, 9


def test_eos_padded_sets_everything_after_the_first_eos_to_eos():
    ids = torch.tensor([[5, 6, EOS, 7, EOS, 8], [5, 6, 7, 8, 6, 5], [EOS, 4, 4, 4, 4, 4]])
    assert eos_padded(ids, EOS).tolist() == [[5, 6, EOS, EOS, EOS, EOS], [5, 6, 7, 8, 6, 5], [EOS] * 6]


def test_keep_correct_keeps_exactly_the_flagged_answers_with_their_prompts():
    prompt_ids = torch.tensor([[0, 11], [0, 11], [12, 13], [12, 13]])  # two prompts × G 2, left-padded
    prompt_mask = torch.tensor([[0, 1], [0, 1], [1, 1], [1, 1]])
    completion_ids = torch.tensor([[5, EOS, 6], [7, 8, EOS], [5, 5, 5], [6, EOS, 3]])
    kept = keep_correct(prompt_ids, prompt_mask, completion_ids, torch.tensor([False, True, False, True]), EOS)
    assert kept.prompt_ids.tolist() == [[0, 11], [12, 13]] and kept.prompt_mask.tolist() == [[0, 1], [1, 1]]
    assert kept.canvases.tolist() == [[7, 8, EOS], [6, EOS, EOS]]  # the junk after EOS became EOS
    assert kept.size == 2 and kept.drawn == 4
    none = keep_correct(prompt_ids, prompt_mask, completion_ids, torch.zeros(4, dtype=torch.bool), EOS)
    assert none.size == 0 and none.canvases.shape == (0, 3)


class Recorder(torch.nn.Module):
    """Fixed logits (K, T, V) from a parameter; remembers the input it was given."""

    def __init__(self, K, T, V):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.randn(K, T, V, generator=torch.Generator().manual_seed(0)))

    def forward(self, input_ids, attention_mask=None):
        self.input_ids, self.attention_mask = input_ids, attention_mask
        return type("Out", (), {"logits": self.logits})()


def test_the_loss_never_masks_the_prompt_and_is_the_sft_loss_on_the_answer_positions():
    prompt_ids = torch.tensor([[0, 11, 12], [13, 14, 15]])
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    kept = KeptAnswers(prompt_ids, prompt_mask, torch.tensor([[5, 6, EOS, EOS], [7, EOS, EOS, EOS]]), 8)
    model = Recorder(2, 7, 16)
    loss = rft_loss(model, kept, MASK, "count", torch.Generator().manual_seed(3))
    assert torch.equal(model.input_ids[:, :3], prompt_ids)  # the prompt as given, never masked
    answer = model.input_ids[:, 3:]
    mask = answer == MASK
    assert mask.any(dim=1).all()  # count law: k ≥ 1 answer tokens masked in every row
    assert torch.equal(answer[~mask], kept.canvases[~mask])  # the rest of the answer untouched
    assert model.attention_mask.tolist() == [[0, 1, 1, 1, 1, 1, 1], [1] * 7]
    # by hand: count law weight L / k, k the row's masked tokens; CE at the answer positions 3..6
    weight = (4 / mask.sum(1, keepdim=True).float()).expand(2, 4)
    expected = masked_diffusion_sft_loss(model.logits[:, 3:], kept.canvases, mask, weight)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert model.logits.grad[:, :3].abs().sum() == 0  # no gradient from prompt positions


def test_a_sample_keeps_the_answers_math_correctness_calls_correct():
    from rollouts import LocalEngine, SamplerConfig
    from unigrpo.data import make_arith_dataset
    from unigrpo.models import load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
    from unigrpo.rewarding import resolve_reward_funcs
    from unigrpo.rft import RejectionSampler
    from unigrpo.tasks import TaskRunner

    path = resolve_model_path("tiny-arith-sft")
    model, tok = load_model(path).eval(), load_tokenizer(path)
    mask_id = resolve_mask_token_id(model, tok)
    funcs, names = resolve_reward_funcs(["math_correctness", "boxed_format"])
    runner = TaskRunner(LocalEngine(model, tok, mask_id), tok,
                        SamplerConfig(gen_length=6, block_length=6, steps=6, temperature=1.0))
    rows = [make_arith_dataset("train", limit=8)[i] for i in range(8)]
    kept, per_func = RejectionSampler(runner, tok, funcs, names, 4).sample(rows, seed=0)
    correct = per_func[:, 0] > 0  # math_correctness: 2.0 when right, else 0
    assert kept.drawn == 32 and kept.size == int(correct.sum()) and 0 < kept.size < 32
    rollout = runner.rollout("t2t", rows, 4, 0)  # the same seed: the same answers
    assert torch.equal(kept.canvases, eos_padded(rollout.completion_ids[correct], tok.eos_token_id))
    answers = tok.batch_decode(kept.canvases, skip_special_tokens=True)
    references = [rows[i // 4]["answer"] for i in range(32) if correct[i]]
    assert all(f"\\boxed{{{ref}}}" in a for a, ref in zip(answers, references)), (answers, references)
