"""``UniGRPOTrainer``: UniGRPO (MMaDA §2.3, Algorithm 1) as a ``transformers.Trainer``.

Outline of one batch of prompts (each line one call below):
    rollout      G answers per prompt from the sampler                      → ``make_rollouts``
    rewards      weighted sum of the reward functions                        → ``score_completions``
    advantages   A_i within each group                                       → ``group_advantages``
    masks        μ noised views, one per inner step (Algorithm 1 schedule)   → ``draw_views``
    old / ref    no-grad log-probs of θ_old and the reference on each view   → ``view_logps``
    μ × step     policy log-probs, clipped surrogate + β·KL, backward, step  → ``compute_loss``

The Trainer's loop drives the μ inner steps: the train sampler yields each group of ``gradient_accumulation_steps``
micro-batches ``num_iterations`` times in a row, rollouts are made on a micro-batch's first appearance and reused
(with the next view) on the following ones. Everything that happens to a tensor is a pure function of another
module, so the math is tested without this class.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer, TrainerCallback

from rollouts import make_engine

from .advantages import group_advantages
from .config import UniGRPOConfig
from .evaluation import GenerationEvalMixin
from .likelihood import NoisedView, answer_token_logps, get_estimator, sequence_logp
from .loss import get_loss_normaliser, per_token_loss
from .masking import get_mask_schedule
from .models import load_model, load_tokenizer, resolve_mask_token_id
from .models.image_tokenizer import load_image_tokenizer
from .models.lora import apply_peft
from .image_grid import ImageGridCallback
from .plotting import TrainingCurvesCallback
from .prompts import check_prompt_lengths
from .resume import CompleteCheckpointCallback, GracefulStopCallback, ResumeStateCallback, resolve_checkpoint
from .rewarding import combine_rewards, preflight_rewards, resolve_reward_funcs, score_completions
from .tasks import TaskRunner, check_tasks, row_task


GRID_CAPTIONS = 16  # held-out t2i captions drawn before / after training in image_grid.png


class RepeatedBatchSampler(Sampler):
    """Shuffled prompt batches; each group of ``accumulation`` batches is yielded ``repeats`` (= μ) times in a row.

    So the μ optimizer steps of one rollout batch see exactly the same prompts, and gradient accumulation groups
    micro-batches of the same inner step.
    """

    def __init__(self, num_rows: int, batch_size: int, accumulation: int, repeats: int, seed: int):
        self.num_rows, self.batch_size, self.accumulation, self.repeats, self.seed = (
            num_rows, batch_size, accumulation, repeats, seed
        )
        self.epoch = 0
        self.num_groups = num_rows // (batch_size * accumulation)
        if self.num_groups == 0:
            raise ValueError(
                f"the train dataset has {num_rows} prompts, fewer than one optimizer step needs "
                f"({batch_size} prompts × {accumulation} accumulation steps)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_groups * self.accumulation * self.repeats

    def __iter__(self):
        order = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        batches = order[: len(self) // self.repeats * self.batch_size].view(-1, self.batch_size).tolist()
        for g in range(self.num_groups):
            group = batches[g * self.accumulation : (g + 1) * self.accumulation]
            for _ in range(self.repeats):
                yield from group


def by_task(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The rows of each task, tasks in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row_task(row), []).append(row)
    return list(groups.items())


@dataclass
class TaskViews:
    """One task's answers in a micro-batch with the μ views and their old / reference log-probs."""

    completion_ids: torch.Tensor  # (N_g, L_g)
    offset: int  # index of its first answer in the micro-batch's advantages
    views: list[NoisedView]  # μ views
    old_logps: list[torch.Tensor | None]  # μ × (R, L_g), None when θ_old = θ (μ = 1)
    ref_logps: list[torch.Tensor | None]  # μ × (R, L_g), None when β = 0

    def inputs_for_step(self, n: int) -> dict:
        view = self.views[n]
        return {
            "input_ids": view.input_ids,
            "attention_mask": view.attention_mask,
            "score_mask": view.score_mask,
            "answer_index": view.answer_index,
            "offset": self.offset,
            "mask_ratio": view.mask_ratio,
            "suffix_length": view.suffix_length,
            "completion_ids": self.completion_ids,
            "old_logps": self.old_logps[n],
            "ref_logps": self.ref_logps[n],
        }


@dataclass
class Rollouts:
    """One micro-batch of scored rollouts: advantages of all N answers, and per task its answers and views."""

    advantages: torch.Tensor  # (N,)
    tasks: list[TaskViews]

    def inputs_for_step(self, n: int) -> dict:
        return {"advantages": self.advantages, "tasks": [t.inputs_for_step(n) for t in self.tasks]}


def ray_engine_options(args: UniGRPOConfig) -> dict:
    """``RayEngine`` keyword arguments from the config's ``ray_*`` fields (unused by the local engine)."""
    if args.rollout_backend != "ray":
        return {}
    return dict(num_workers=args.ray_num_workers, num_cpus_per_worker=args.ray_num_cpus_per_worker,
                num_gpus_per_worker=args.ray_num_gpus_per_worker, ray_address=args.ray_address,
                max_worker_restarts=args.ray_max_worker_restarts)


class CloseEngineCallback(TrainerCallback):
    """Stops the rollout workers when training ends."""

    def __init__(self, engine):
        self.engine = engine

    def on_train_end(self, args, state, control, **kwargs):
        self.engine.close()


class UniGRPOTrainer(GenerationEvalMixin, Trainer):
    """UniGRPO for masked-diffusion LMs, with TRL's constructor and dataset conventions.

    Args:
        model: a model or a local path (loaded with ``unigrpo.models.load_model``).
        reward_funcs: callables, registered reward names or ``pkg.module:function`` paths (TRL's signature).
        args: ``UniGRPOConfig``.
        train_dataset / eval_dataset: a ``prompt`` column (plain text or chat messages; the caption of a ``t2i``
            row); an optional ``task`` column (``t2t`` default, ``mmu`` with an ``image`` column, ``t2i``, see
            ``unigrpo.tasks``); other columns are passed to the rewards by name.
        processing_class: the tokenizer (loaded from ``model`` when it is a path).
        peft_config: a PEFT config; the reference model is then the policy with adapters disabled.
        image_tokenizer: an ``ImageTokenizer`` or its folder, needed by ``mmu`` and ``t2i`` rows.
    """

    _tag_names = ["unigrpo", "diffusion-lm"]

    def __init__(
        self,
        model,
        reward_funcs,
        args: UniGRPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        peft_config=None,
        callbacks=None,
        image_tokenizer=None,
    ):
        args = args or UniGRPOConfig(output_dir="outputs/unigrpo")
        if not isinstance(args, UniGRPOConfig):
            raise TypeError(f"args must be a UniGRPOConfig, got {type(args).__name__}")
        self.reward_funcs, self.reward_names = resolve_reward_funcs(reward_funcs)
        self.reward_weights = self._reward_weights(args)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None and "prompt" not in dataset.column_names:
                raise ValueError(f"{name} has no 'prompt' column (columns: {dataset.column_names})")
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        if isinstance(image_tokenizer, (str, os.PathLike)):
            image_tokenizer = load_image_tokenizer(image_tokenizer)
        self.image_tokenizer = image_tokenizer
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None:
                check_tasks(dataset, image_tokenizer, name)
        preflight_rewards(self.reward_funcs, train_dataset)

        if isinstance(model, (str, os.PathLike)):
            processing_class = processing_class or load_tokenizer(model)
            model = load_model(model)
        if processing_class is None:
            raise ValueError("processing_class (the tokenizer) is required when model is not a path")
        self.mask_token_id = resolve_mask_token_id(model, processing_class)
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None:
                check_prompt_lengths(dataset, processing_class, getattr(model.config, "max_sequence_length", None),
                                     args.max_completion_length, name)
        if peft_config is not None:
            model = apply_peft(model, peft_config)
        self.ref_model = None
        if args.beta > 0 and args.kl_reference == "initial" and peft_config is None:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)

        self.estimator = get_estimator(args.likelihood_estimator, p_mask_prompt=args.p_mask_prompt)
        self.draw_mask_ratios = get_mask_schedule(args.mask_schedule)
        self.normalise_loss = get_loss_normaliser(args.loss_type)
        self.loss_is_scaled_for_ga = False  # the Trainer divides by the accumulation steps
        callbacks = list(callbacks or []) + [TrainingCurvesCallback()]
        super().__init__(
            model=model,
            args=args,
            data_collator=lambda rows: {"rows": rows},
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        if self.ref_model is not None:
            self.ref_model.to(self.args.device)
        self.engine = make_engine(args.rollout_backend, self.unwrapped_model, processing_class, self.mask_token_id,
                                  **ray_engine_options(args))
        if self.image_tokenizer is not None:
            self.image_tokenizer.to(self.args.device)
        self.task_runner = TaskRunner(self.engine, processing_class, args.sampler_config(),
                                      args.image_sampler_config(), self.image_tokenizer,
                                      self.unwrapped_model.get_input_embeddings().num_embeddings, args.eos_in_loss)
        grid_rows = list({str(row["prompt"]): row for row in (eval_dataset or [])
                          if row_task(row) == "t2i"}.values())[:GRID_CAPTIONS]  # distinct held-out captions
        if grid_rows:
            self.add_callback(ImageGridCallback(self.generate_eval_images, grid_rows))
        self.resume_state = ResumeStateCallback(self)
        self.add_callback(self.resume_state)
        self.add_callback(GracefulStopCallback())
        self.add_callback(CloseEngineCallback(self.engine))  # the grid callback still draws at train end
        self.add_callback(CompleteCheckpointCallback())  # last: after every other file of a checkpoint
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self._rollouts: dict[int, Rollouts] = {}
        self._micro_step = 0
        self.forward_counts = defaultdict(int)  # per kind of forward pass, counted in answers (benchmarks read it)

    def train(self, resume_from_checkpoint=None, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint`` may also be ``"auto"`` (the latest checkpoint in output_dir,
        or a fresh start if there is none). UniGRPO's own state is restored too (``unigrpo.resume``)."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self.resume_state.resume_from = checkpoint
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    # ------------------------------------------------------------------ setup helpers
    def _reward_weights(self, args) -> torch.Tensor:
        if args.reward_weights is None:
            return torch.ones(len(self.reward_funcs))
        if len(args.reward_weights) != len(self.reward_funcs):
            raise ValueError(
                f"reward_weights has {len(args.reward_weights)} values for {len(self.reward_funcs)} reward functions"
            )
        return torch.tensor(args.reward_weights, dtype=torch.float32)

    @torch.no_grad()
    def generate_eval_images(self, rows: list[dict]) -> list:
        """One image per t2i row with the evaluation settings (seeded: same captions, same noise every call)."""
        args = self.args
        self.sync_engine_weights()
        runner = TaskRunner(self.engine, self.processing_class, args.sampler_config(args.eval_temperature),
                            args.image_sampler_config(args.eval_temperature), self.image_tokenizer)
        return runner.rollout("t2i", rows, 1, seed=args.seed).completions

    def sync_engine_weights(self) -> None:
        """Send the policy to the rollout engine when an optimizer step changed it (DESIGN §7; local: no-op)."""
        if self.engine.weights_version != self.state.global_step:
            with self.timer("weight_sync"):
                self.engine.update_weights(self.unwrapped_model, version=self.state.global_step)

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    def get_train_dataloader(self) -> DataLoader:
        sampler = RepeatedBatchSampler(
            len(self.train_dataset),
            self.args.prompts_per_device_step,
            self.args.gradient_accumulation_steps,
            self.args.num_iterations,
            self.args.seed,
        )
        return DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator)

    @contextmanager
    def timer(self, name: str):
        start = time.perf_counter()
        yield
        self._metrics[f"timing/{name}"].append(time.perf_counter() - start)

    # ------------------------------------------------------------------ the outline
    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch of inner step n: make the rollouts on its first appearance, then the usual step."""
        cycle = self.args.gradient_accumulation_steps * self.args.num_iterations
        n, slot = divmod(self._micro_step % cycle, self.args.gradient_accumulation_steps)
        self._micro_step += 1
        if n == 0:
            self._rollouts[slot] = self.make_rollouts(inputs["rows"])
        with self.timer("update"):
            loss = super().training_step(model, self._rollouts[slot].inputs_for_step(n), num_items_in_batch)
        if not torch.isfinite(loss).all():
            self.stop_on_non_finite_loss(loss, inputs["rows"])
        return loss

    def stop_on_non_finite_loss(self, loss, rows) -> None:
        """A NaN/inf loss would poison the weights at the optimizer step: stop before it, naming what to look at."""
        from .resume import latest_complete_checkpoint

        prompts = [str(row.get("prompt"))[:40] for row in rows[:4]]
        last = latest_complete_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        raise FloatingPointError(
            f"loss is {loss.item()} at optimizer step {self.state.global_step + 1} (micro-step {self._micro_step}); "
            f"batch prompts start {prompts}; the weights were not updated. Last complete checkpoint: "
            f"{last or 'none'} (resume with --resume_from_checkpoint auto after fixing the cause: a reward returning "
            f"inf, a learning rate too high, or bf16 overflow)")

    @torch.no_grad()
    def make_rollouts(self, rows: list[dict]) -> Rollouts:
        """rollout → rewards → advantages → μ views → old / reference log-probs (all no-grad)."""
        args, G = self.args, self.args.num_generations
        seed = args.seed * 1_000_003 + self._micro_step
        self.sync_engine_weights()
        with self.timer("rollout"):
            groups = [self.task_runner.rollout(task, task_rows, G, seed) for task, task_rows in by_task(rows)]
        rows = [row for g in groups for row in g.rows]  # task order; a prompt's G answers stay consecutive
        columns = {k: [row.get(k) for row in rows for _ in range(G)] for k in rows[0] if k != "prompt"}
        with self.timer("rewards"):
            scores = score_completions(
                self.reward_funcs,
                [row["prompt"] for row in rows for _ in range(G)],
                [c for g in groups for c in g.completions],
                [ids for g in groups for ids in g.completion_ids.tolist()],
                columns,
                args.reward_errors,
                args.reward_timeout,
            )
        per_func = scores.values
        rewards = combine_rewards(per_func, self.reward_weights)
        advantages, zero_std = group_advantages(rewards, G, args.scale_rewards)
        generator = torch.Generator().manual_seed(seed + 1)  # one stream for the ratios, then every mask
        ratios = self.draw_mask_ratios(len(rewards), args.num_iterations, args.num_mask_levels, generator,
                                       args.mask_ratio_min, args.mask_ratio_max)  # (μ, N)
        tasks, offset = [], 0
        for g in groups:
            views = self.draw_views(g, ratios[:, offset : offset + g.size], generator)
            with self.timer("logps"):
                old_logps = [self.view_logps("old", v, g.completion_ids) for v in views]
                ref_logps = [self.view_logps("ref", v, g.completion_ids) for v in views]
            tasks.append(TaskViews(g.completion_ids, offset, views, old_logps, ref_logps))
            offset += g.size
        self.log_rollout_metrics(rewards, per_func, zero_std, groups, scores.skipped)
        if args.log_completions:
            completions = [c for g in groups for c in g.completions]
            self.write_completions([row["prompt"] for row in rows], G, completions, per_func, rewards, advantages)
        return Rollouts(advantages.to(groups[0].completion_ids.device), tasks)

    def draw_views(self, group, ratios: torch.Tensor, generator: torch.Generator) -> list[NoisedView]:
        """μ noised views of one task's answers at the step ratios (μ, N_g) of Algorithm 1's schedule; stored so
        θ, θ_old and ref read the same masks. (The masks' stream must not be one that sampling also uses: masks
        correlated with the rollout's Gumbel noise bias the gradient.)"""
        return [
            self.estimator.noise(group.prompt_ids, group.prompt_mask, group.completion_ids, group.eligible,
                                 ratios[n], self.mask_token_id, generator, suffix_ids=group.suffix_ids)
            for n in range(self.args.num_iterations)
        ]

    def view_logps(self, kind: str, view: NoisedView, completion_ids) -> torch.Tensor | None:
        """No-grad token log-probs of θ_old (``old``) or the reference (``ref``) on a view; None if not needed."""
        args = self.args
        if kind == "old" and args.num_iterations == 1:
            return None  # θ_old = θ at the only inner step: the ratio is 1, read from the policy pass (detached)
        if kind == "ref" and (args.beta == 0.0 or args.kl_reference == "rollout"):
            return None
        model, context = self.unwrapped_model, nullcontext()
        if kind == "ref":
            if self.ref_model is not None:
                model = self.ref_model
            else:
                context = model.disable_adapter()  # PEFT: the reference is the base model
        self.forward_counts[kind] += view.input_ids.shape[0]
        was_training = model.training
        model.eval()
        with context:
            logps = answer_token_logps(model, view, completion_ids)
        model.train(was_training)
        return logps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Per task: policy log-probs on the step's view, ℓ = −min(ρA, clip(ρ)A) + β·KL per token; then one
        ``loss_type`` normalisation over all answers (token losses right-padded to the longest answer)."""
        losses, masks, index, widths = [], [], [], []
        for task in inputs["tasks"]:
            token_loss, score_mask, answer_index = self.task_token_loss(model, task, inputs["advantages"])
            losses.append(token_loss)
            masks.append(score_mask)
            index.append(answer_index)
            widths.append(token_loss.shape[1])
        L = max(widths)
        pad = lambda t, value: torch.nn.functional.pad(t, (0, L - t.shape[1]), value=value)  # noqa: E731
        token_loss = torch.cat([pad(t, 0.0) for t in losses])  # (R, L)
        score_mask = torch.cat([pad(m, False) for m in masks])  # (R, L)
        return self.normalise_loss(token_loss, score_mask, torch.cat(index), len(inputs["advantages"]), L)

    def task_token_loss(self, model, task: dict, all_advantages: torch.Tensor):
        """One task's per-token loss (R, L_g) on its view of this inner step, its score mask and answer indices."""
        args = self.args
        view = NoisedView(task["input_ids"], task["attention_mask"], task["score_mask"], task["answer_index"],
                          task["mask_ratio"], task["suffix_length"])
        completion_ids = task["completion_ids"]
        self.forward_counts["policy"] += view.input_ids.shape[0]
        logps = answer_token_logps(model, view, completion_ids)  # (R, L_g)
        old_logps = task["old_logps"] if task["old_logps"] is not None else logps.detach()
        ref_logps = task["ref_logps"] if args.kl_reference == "initial" else old_logps
        answer_index = view.answer_index + task["offset"]  # answers of the whole micro-batch
        advantages = all_advantages[answer_index][:, None]  # (R, 1)
        token_loss, kl, clipped = per_token_loss(
            logps, old_logps, ref_logps, advantages, args.epsilon, args.epsilon_high, args.beta
        )
        self.log_loss_metrics(logps, old_logps, kl, advantages, view)
        return token_loss, view.score_mask, answer_index

    # ------------------------------------------------------------------ metrics and logs
    def log_rollout_metrics(self, rewards, per_func, zero_std, groups, skipped) -> None:
        m = self._metrics
        m["reward"].append(rewards.mean().item())
        m["reward_std"].append(rewards.view(-1, self.args.num_generations).std(dim=1).mean().item())
        for i, name in enumerate(self.reward_names):
            column = per_func[:, i]
            m[f"rewards/{name}/mean"].append(torch.nanmean(column).item())
            m[f"rewards/{name}/std"].append(column[~column.isnan()].std().item() if column.isfinite().sum() > 1 else 0.0)
            if self.args.reward_errors == "skip":
                m[f"rewards/{name}/skipped"].append(float(skipped[i]))
        m["frac_reward_zero_std"].append(zero_std.float().mean().item())
        text = [g.eligible for g in groups if g.task != "t2i"]
        if text:
            content = torch.cat([e.sum(dim=1) for e in text]).float() - float(self.args.eos_in_loss > 0)
            m["completions/mean_length"].append(content.clamp(min=0).mean().item())
        if len(groups) > 1:  # a mixed-task batch: the reward of each kind of task
            offset = 0
            for g in groups:
                m[f"tasks/{g.task}/reward"].append(rewards[offset : offset + g.size].mean().item())
                offset += g.size

    def log_loss_metrics(self, logps, old_logps, kl, advantages, view) -> None:
        m, args = self._metrics, self.args
        mask = view.score_mask.float()
        masked_mean = lambda x: ((x * mask).sum() / mask.sum().clamp(min=1)).item()  # noqa: E731
        ratio = torch.exp(logps.detach() - old_logps)
        low = (ratio < 1 - args.epsilon) & (advantages < 0)
        high = (ratio > 1 + args.epsilon_high) & (advantages > 0)
        m["clip_ratio/low_mean"].append(masked_mean(low.float()))
        m["clip_ratio/high_mean"].append(masked_mean(high.float()))
        m["clip_ratio/region_mean"].append(masked_mean((low | high).float()))
        if kl is not None:
            m["kl"].append(masked_mean(kl.detach()))
        m["mask_ratio"].append(view.mask_ratio.float().mean().item())
        m["logp/sequence_mean"].append(sequence_logp(logps.detach(), view.score_mask).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Merge the averaged rollout and loss metrics into the Trainer's log line, then clear them."""
        if "loss" in logs:  # a training log, not an evaluation one
            logs = {**logs, **{k: sum(v) / len(v) for k, v in self._metrics.items() if v}}
            self._metrics.clear()
        super().log(logs, start_time)

    def write_completions(self, prompts, G, completions, per_func, rewards, advantages) -> None:
        """Append this micro-batch's table to ``completions/step_<n>.jsonl`` (written now, never kept in memory)."""
        if not self.is_world_process_zero():
            return
        folder = os.path.join(self.args.output_dir, "completions")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"step_{self.state.global_step:06d}.jsonl"), "a") as f:
            for i, completion in enumerate(completions):
                if not isinstance(completion, (str, list)):  # a t2i image
                    completion = f"<{type(completion).__name__} {getattr(completion, 'size', '')}>"
                row = {"step": self.state.global_step, "prompt": prompts[i // G], "completion": completion,
                       "reward": rewards[i].item(), "advantage": advantages[i].item()}
                row.update({f"rewards/{n}": (None if v != v else v) for n, v in zip(self.reward_names, per_func[i].tolist())})
                f.write(json.dumps(row) + "\n")
