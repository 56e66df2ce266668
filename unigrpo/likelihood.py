"""Likelihood estimators: how an answer is noised and where its token log-probabilities are read.

UniGRPO (MMaDA Eq. 3–4): mask the answer's tokens at ratio p (the prompt never), one forward pass, and read
log p_θ(o_t | q, õ_p) at the masked positions; the answer's log-likelihood is approximated by their mean.

An estimator turns a batch of answers into a ``NoisedView``: the model input and the answer positions to score.
θ, θ_old and the reference all read the *same* view, so their ratios compare like with like. Estimators are
swappable by name (``likelihood_estimator:``); each entry of ``ESTIMATORS`` shares ``UniGRPOEstimator``'s signature,
lays its rows out with ``assemble_view`` and names the config keys its constructor takes in ``options`` (and, in
``rollout_fields``, any rollout tensor it reads besides the usual ones, such as the sampler's ``commit_step``).
An entry is an *algorithm* (the noising and, optionally, its objective): one that brings its own ratio-free
objective (wd1, SPG) also defines ``policy_loss`` — token log-probs of its view → one loss per answer, used instead of
the clipped surrogate — and ``uses_ratio = False`` (no θ_old pass). So ``ESTIMATORS`` names every algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masking import mask_answer_tokens


@dataclass
class NoisedView:
    """One noised copy of the batch. R rows (R = N for UniGRPO; an estimator may use several rows per answer).

    input_ids (R, P+L+S): prompt + noised answer + fixed suffix (S = ``suffix_length``: ``<|eoi|>`` after an image
    answer, 0 for text); attention_mask (R, P+L+S) or None; score_mask (R, L) bool: answer positions whose
    log-probs enter the loss; answer_index (R,): the answer each row belongs to; mask_ratio (R,).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    score_mask: torch.Tensor
    answer_index: torch.Tensor
    mask_ratio: torch.Tensor
    suffix_length: int = 0

    def to(self, device) -> "NoisedView":
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return NoisedView(*(move(getattr(self, f)) for f in self.__dataclass_fields__))


def masked_token_logps(logits: torch.Tensor, targets: torch.Tensor,
                       score_mask: torch.Tensor | None = None) -> torch.Tensor:
    """log p_θ(o_t | q, õ) (MMaDA Eq. 3): logits (R, L, V), targets (R, L) → (R, L).

    Computed in fp32 as logit[target] − logsumexp(logits) so no (R, L, V) log-softmax is kept for backward. With
    ``score_mask`` (R, L) only the scored positions are computed and the rest are 0 (every reader of token log-probs
    masks with it): the fp32 copy of the logits and its gradient then cover M scored rows instead of R·L — LLaDA's
    126k-word vocabulary makes that 0.5 MB per position, about half the answer at the schedule's mean ratio.
    """
    if score_mask is None:
        return _token_logps(logits, targets)
    scored = _token_logps(logits[score_mask], targets[score_mask])  # (M,)
    return torch.zeros(score_mask.shape, dtype=scored.dtype, device=scored.device).masked_scatter(score_mask, scored)


def _token_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (..., V), targets (...) → fp32 log-probs (...) of the targets."""
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logp(token_logps: torch.Tensor, score_mask: torch.Tensor) -> torch.Tensor:
    """MMaDA Eq. 4: the answer's log-likelihood ≈ mean of token log-probs over its M masked positions → (R,)."""
    mask = score_mask.float()
    return (token_logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def answer_token_logps(model, view: NoisedView, completion_ids: torch.Tensor) -> torch.Tensor:
    """One forward pass of the noised view → token log-probs (R, L) of the true answer tokens at the view's
    scored positions (0 at the others, which no loss or metric reads).

    completion_ids (N, L) are the sampled answers; row r of the view scores answer ``answer_index[r]``.
    """
    L, S = completion_ids.shape[1], view.suffix_length
    logits = model(input_ids=view.input_ids, attention_mask=view.attention_mask).logits  # (R, P+L+S, V)
    logits = logits[:, logits.shape[1] - S - L : logits.shape[1] - S]  # (R, L, V)
    return masked_token_logps(logits, completion_ids[view.answer_index], view.score_mask)


def assemble_view(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, noised_answers: torch.Tensor,
                  score_mask: torch.Tensor, mask_ratio: torch.Tensor, answer_index: torch.Tensor | None = None,
                  suffix_ids: torch.Tensor | None = None) -> NoisedView:
    """The one layout of a view, shared by every estimator: row r = prompt + noised answer + suffix of answer
    ``answer_index[r]``, with an attention mask only when the prompts are padded.

    prompt_ids (N, P) (noised or not), prompt_mask (N, P) or None, suffix_ids (N, S) or None; noised_answers and
    score_mask (R, L), mask_ratio (R,), answer_index (R,) (default: row r is answer r).
    """
    R = noised_answers.shape[0]
    if answer_index is None:
        answer_index = torch.arange(R, device=noised_answers.device)
    suffix = noised_answers[:, :0] if suffix_ids is None else suffix_ids[answer_index]  # (R, S)
    attention_mask = None
    if prompt_mask is not None and not bool(prompt_mask.all()):
        attention_mask = torch.cat([prompt_mask[answer_index], torch.ones_like(noised_answers),
                                    torch.ones_like(suffix)], dim=1)
    return NoisedView(
        input_ids=torch.cat([prompt_ids[answer_index], noised_answers, suffix], dim=1),
        attention_mask=attention_mask,
        score_mask=score_mask,
        answer_index=answer_index,
        mask_ratio=mask_ratio,
        suffix_length=suffix.shape[1],
    )


class UniGRPOEstimator:
    """Structured noising (docs/design.md §3.2–3.3): answer tokens masked with probability p, prompt untouched, one pass."""

    name = "unigrpo"
    options: tuple[str, ...] = ()  # config keys its constructor takes (none)

    def max_rows_per_answer(self, answer_length: int, diffusion_steps: int | None) -> int:
        """Rows one answer takes in the policy forward, at most (what the memory plan counts): one."""
        return 1

    def noise(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor | None,
        completion_ids: torch.Tensor,
        eligible: torch.Tensor,
        ratio: torch.Tensor,
        mask_token_id: int,
        generator: torch.Generator | None = None,
        suffix_ids: torch.Tensor | None = None,
    ) -> NoisedView:
        """prompt_ids (N, P), prompt_mask (N, P) or None, completion_ids / eligible (N, L), ratio (N,), suffix_ids
        (N, S) or None (never masked, like the prompt) → view."""
        mask = mask_answer_tokens(eligible, ratio, generator)  # (N, L)
        noised = completion_ids.masked_fill(mask, mask_token_id)
        return assemble_view(prompt_ids, prompt_mask, noised, mask & eligible, ratio, suffix_ids=suffix_ids)


ESTIMATORS = {
    "unigrpo": "unigrpo.likelihood:UniGRPOEstimator",
    "d1": "unigrpo.estimator_d1:D1Estimator",  # whole answer masked, prompt masked with p_mask_prompt
    "coupled": "unigrpo.estimator_coupled:CoupledEstimator",  # complementary mask pairs
    "wd1": "unigrpo.estimator_wd1:WD1Estimator",  # d1's view, ratio-free weighted likelihood (own objective)
    "spg": "unigrpo.estimator_spg:SPGEstimator",  # block-wise masks, ELBO / EUBO by advantage sign (own objective)
    "trajectory": "unigrpo.estimator_trajectory:TrajectoryEstimator",  # TraceRL: views along the commit order
    "vrpo": "unigrpo.estimator_vrpo:VRPOEstimator",  # K rows per answer at stratified ratios (LLaDA 1.5's VRPO)
}
"""name → "module:class" (imported on use; each estimator is one small module with the same ``noise`` method)."""


def estimator_class(name: str):
    """The class registered as ``name`` (imported on use)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown likelihood_estimator {name!r}; valid: {sorted(ESTIMATORS)}")
    import importlib

    module, cls = ESTIMATORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def estimator_options(name: str, config) -> dict:
    """The values in ``config`` (a ``UniGRPOConfig``) of the options estimator ``name`` declares, e.g. d1's
    ``p_mask_prompt``: what the trainer passes to ``get_estimator``."""
    return {key: getattr(config, key) for key in estimator_class(name).options}


def rollout_inputs(estimator, rollout) -> dict:
    """The rollout tensors beyond the usual ones that ``estimator`` declares in ``rollout_fields`` (e.g. the
    trajectory estimator's ``commit_step``), read from ``rollout`` (a ``TaskRollout``): what the trainer adds to
    ``noise``'s arguments, so estimators that read nothing more keep the plain signature."""
    return {name: getattr(rollout, name) for name in getattr(estimator, "rollout_fields", ())}


def get_estimator(name: str, **options):
    """The estimator registered as ``name``, built with ``options``; each must be one the estimator declares in
    its ``options`` (an option it would ignore is a mistake worth one clear line, not silence)."""
    estimator = estimator_class(name)
    unknown = sorted(set(options) - set(estimator.options))
    if unknown:
        takes = ", ".join(estimator.options) or "none"
        raise ValueError(f"likelihood_estimator {name!r} takes no option {', '.join(map(repr, unknown))}; "
                         f"its options: {takes}")
    return estimator(**options)
