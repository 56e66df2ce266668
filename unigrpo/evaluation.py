"""Held-out evaluation: generate answers (one or several per prompt) with the recipe's sampler and score them with
the rewards.

``accuracy`` = fraction of answers whose ``accuracy_reward`` (default: the first reward function) reaches its
``correct_threshold`` (else: is positive); pass@k from several samples per prompt. Under ``accelerate launch`` the
trainers' ``evaluate`` splits the rows over the processes and gathers the scored answers.
Rows of every task (``t2t``, ``mmu``, ``t2i``; see ``unigrpo.tasks``) are generated their own way; ``t2i`` needs
``image_sampler_config`` and ``image_tokenizer``. Shared by the trainers' ``evaluate``, the SFT stopping callback
and ``unigrpo eval``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from rollouts import LocalEngine

from .data_parallel import gather_objects
from .rewarding import combine_rewards, score_completions
from .sharding import whole_model
from .tasks import TASKS, TaskRunner, row_task


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021): 1 − C(n−c, k) / C(n, k)."""
    if not 1 <= k <= n:
        raise ValueError(f"pass@{k} needs 1 ≤ k ≤ the number of samples per prompt ({n})")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def is_correct(scores: torch.Tensor, reward_func) -> torch.Tensor:
    """Correct = the accuracy reward reaches the function's ``correct_threshold`` (e.g. a solved Sudoku, not a
    partly filled one) or, without one, is positive. None (NaN) is not correct."""
    threshold = getattr(reward_func, "correct_threshold", None)
    scores = scores.nan_to_num(-math.inf)
    return scores >= threshold if threshold is not None else scores > 0


@dataclass
class EvalSamples:
    """Scored held-out answers, a row's n samples consecutive: what the metrics are computed from (and what
    several processes gather)."""

    per_func: torch.Tensor  # (R·n, F) each reward on each answer, NaN = not applicable
    correct: torch.Tensor  # (R·n,) bool
    lengths: torch.Tensor  # (text answers,) tokens before EOS
    n: int  # samples per prompt
    completions: list = field(default_factory=list)  # (R·n) in task order
    back: list[int] = field(default_factory=list)  # task-order position of each dataset row

    @property
    def rows(self) -> int:
        return self.correct.numel() // self.n

    @staticmethod
    def merge(parts: list[EvalSamples]) -> EvalSamples:
        """Several processes' samples as one (answers only; completions stay where they were made)."""
        return EvalSamples(torch.cat([p.per_func for p in parts]), torch.cat([p.correct for p in parts]),
                           torch.cat([p.lengths for p in parts]), parts[0].n)


@torch.no_grad()
def generate_and_score(model, tokenizer, dataset, reward_funcs, reward_names, sampler_config, mask_token_id: int,
                       accuracy_reward: str | None = None, batch_size: int = 64, seed: int = 0,
                       reward_errors: str = "raise", reward_timeout: float | None = None, image_sampler_config=None,
                       image_tokenizer=None, num_samples: int = 1) -> EvalSamples:
    """``num_samples`` answers per row with the sampler, each scored by every reward (rows of each task generated
    their own way, in task order)."""
    acc_index = reward_names.index(accuracy_reward) if accuracy_reward else 0
    n = num_samples
    if len(dataset) == 0:
        return EvalSamples(torch.zeros(0, len(reward_funcs)), torch.zeros(0, dtype=torch.bool), torch.zeros(0), n)
    engine = LocalEngine(model, tokenizer, mask_token_id, max_batch_size=batch_size)
    runner = TaskRunner(engine, tokenizer, sampler_config, image_sampler_config, image_tokenizer,
                        model.get_input_embeddings().num_embeddings)
    rows = [dataset[i] for i in range(len(dataset))]
    order = sorted(range(len(rows)), key=lambda i: TASKS.index(row_task(rows[i])))  # stable: by task
    groups = [runner.rollout(task, [rows[i] for i in order if row_task(rows[i]) == task], n, seed)
              for task in TASKS if any(row_task(rows[i]) == task for i in order)]
    rows = [rows[i] for i in order]  # a row's n answers are consecutive in every per-sample list below
    prompts = [row["prompt"] for row in rows for _ in range(n)]
    completions = [c for g in groups for c in g.completions]
    columns = {k: [row.get(k) for row in rows for _ in range(n)] for k in rows[0] if k != "prompt"}
    per_func = score_completions(reward_funcs, prompts, completions,
                                 [ids for g in groups for ids in g.completion_ids.tolist()], columns,
                                 reward_errors, reward_timeout).values
    eos = tokenizer.eos_token_id
    text = [g.completion_ids.cpu() for g in groups if g.task != "t2i"]
    lengths = torch.cat([(ids != eos).sum(dim=1) for ids in text]).float() if eos is not None and text else None
    return EvalSamples(per_func, is_correct(per_func[:, acc_index], reward_funcs[acc_index]),
                       lengths if lengths is not None else torch.zeros(0), n, completions,
                       torch.tensor(order).argsort().tolist())


def summarise_samples(samples: EvalSamples, reward_names, reward_weights=None, pass_k=()) -> dict:
    """{accuracy, n, samples_per_prompt, reward, completions/mean_length, pass@k…, rewards/<name>/mean};
    ``completions/mean_length`` only when some answers are text."""
    n, rows, correct, per_func = samples.n, samples.rows, samples.correct, samples.per_func
    weights = reward_weights if reward_weights is not None else torch.ones(per_func.shape[1])
    results = {
        "accuracy": int(correct.sum()) / correct.numel() if rows else math.nan,  # exact, as pass@1
        "n": rows,
        "samples_per_prompt": n,
        "reward": combine_rewards(per_func, weights).mean().item() if rows else math.nan,
    }
    if samples.lengths.numel():  # text answers only (as in training): an image has no length to report, not NaN
        results["completions/mean_length"] = samples.lengths.mean().item()
    per_row = correct.view(rows, n).sum(dim=1).tolist()
    for k in pass_k:
        results[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in per_row) / rows if rows else math.nan
    for i, name in enumerate(reward_names):
        results[f"rewards/{name}/mean"] = torch.nanmean(per_func[:, i]).item() if rows else math.nan
    return results


def evaluate_accuracy(model, tokenizer, dataset, reward_funcs, reward_names, sampler_config, mask_token_id: int,
                      reward_weights: torch.Tensor | None = None, accuracy_reward: str | None = None,
                      return_completions: bool = False, num_samples: int = 1, pass_k=(), **options) -> dict:
    """→ {accuracy, n, temperature, reward, rewards/<name>/mean, completions/mean_length, pass@k…[, completions,
    correct]}; ``temperature`` is the sampler's, which pass@k depends on.

    ``num_samples`` answers per prompt (``accuracy`` is the mean over all of them); ``pass@k`` for each k in
    ``pass_k`` (k ≤ num_samples). ``options``: ``batch_size``, ``seed``, ``reward_errors``, ``reward_timeout``,
    ``image_sampler_config``, ``image_tokenizer`` of ``generate_and_score``. Completions come back in the dataset's
    row order (images as PIL images): one per row, or a list of ``num_samples`` per row when there are several."""
    if accuracy_reward is not None and accuracy_reward not in reward_names:
        raise ValueError(f"accuracy_reward={accuracy_reward!r} is not one of the rewards {reward_names}")
    for k in pass_k:
        pass_at_k(num_samples, 0, k)  # k out of range: the error before any generation
    samples = generate_and_score(model, tokenizer, dataset, reward_funcs, reward_names, sampler_config,
                                 mask_token_id, accuracy_reward, num_samples=num_samples, **options)
    results = {**summarise_samples(samples, reward_names, reward_weights, pass_k),
               "temperature": sampler_config.temperature}
    if return_completions:
        n, completions, correct = samples.n, samples.completions, samples.correct
        by_row = [completions[j * n : (j + 1) * n] for j in samples.back]
        results["completions"] = [c[0] for c in by_row] if n == 1 else by_row
        flags = [[bool(x) for x in correct[j * n : (j + 1) * n]] for j in samples.back]
        results["correct"] = [f[0] for f in flags] if n == 1 else flags
    return results


class GenerationEvalMixin:
    """``Trainer.evaluate`` by generation: the trainer needs ``reward_funcs``, ``reward_names``, ``mask_token_id``.

    Logs ``eval_accuracy``, ``eval_reward``, ``eval_rewards/<name>/mean`` and (with text answers)
    ``eval_completions/mean_length``, so ``metric_for_best_model: eval_accuracy`` keeps the best checkpoint.
    """

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset")
        if not self.reward_funcs:
            raise ValueError("evaluate() needs reward_funcs to score the generated answers")
        accelerator = self.accelerator
        if self.args.accuracy_reward is not None and self.args.accuracy_reward not in self.reward_names:
            raise ValueError(f"accuracy_reward={self.args.accuracy_reward!r} is not one of the rewards "
                             f"{self.reward_names}")
        # each process answers a contiguous share of the rows; the metrics come from everyone's answers
        share = dataset.shard(accelerator.num_processes, accelerator.process_index, contiguous=True) \
            if accelerator.num_processes > 1 else dataset
        with whole_model(accelerator, self.model_wrapped) as model:  # gathered under FSDP2 / ZeRO-3
            samples = generate_and_score(
                model, self.processing_class, share, self.reward_funcs, self.reward_names,
                self.args.sampler_config(temperature=self.args.eval_temperature), self.mask_token_id,
                accuracy_reward=self.args.accuracy_reward, batch_size=self.args.per_device_eval_batch_size,
                seed=self.args.seed, reward_errors=getattr(self.args, "reward_errors", "raise"),
                reward_timeout=getattr(self.args, "reward_timeout", None),
                image_sampler_config=self.args.image_sampler_config(temperature=self.args.eval_temperature),
                image_tokenizer=getattr(self, "image_tokenizer", None),
            )
        if accelerator.num_processes > 1:  # every process's scored answers (their completions stay local)
            samples = EvalSamples.merge(gather_objects(accelerator, EvalSamples(samples.per_func, samples.correct,
                                                                                samples.lengths, samples.n)))
        results = summarise_samples(samples, self.reward_names, getattr(self, "reward_weights", None))
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in results.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
