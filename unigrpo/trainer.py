"""``UniGRPOTrainer``: UniGRPO (MMaDA §2.3, Algorithm 1) as a ``transformers.Trainer``.

Outline of one optimizer step's prompts (each line one call below):
    rollout      G answers per prompt from the sampler                      → ``rollout_and_score``
    rewards      weighted sum of the reward functions                        → ``score_completions``
    advantages   A_i within each group (batch std over all processes)        → ``window_advantages``
    masks        μ noised views, one per inner step (Algorithm 1 schedule)   → ``draw_views``
    old / ref    no-grad log-probs of θ_old and the reference on each view   → ``view_logps``
    μ × step     policy log-probs, clipped surrogate + β·KL, backward, step  → ``compute_loss``

The Trainer's loop drives the μ inner steps (``unigrpo.inner_steps.InnerStepCycle``): the train sampler yields each
window of ``gradient_accumulation_steps`` micro-batches ``num_iterations`` times in a row; on the window's first
micro-step the rollouts of all its micro-batches are made (``make_window_rollouts``), then reused with the next view
on the following inner steps.
With several processes each holds its own micro-batches of the window (``unigrpo.data_parallel``). Everything that
happens to a tensor is a pure function of another module, so the math is tested without this class.
"""

from __future__ import annotations

import copy
import os
import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import torch
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback, set_seed

from rollouts import make_engine

from .advantages import group_advantages
from .config import UniGRPOConfig
from .data_parallel import (
    RepeatedBatchSampler,
    gather_tensor,
    local_share,
    rollout_seed,
    sum_over_processes,
    window_micro_batch,
)
from .evaluation import GenerationEvalMixin
from .image_grid import ImageGridCallback
from .inner_steps import InnerStepCycle
from .likelihood import NoisedView, answer_token_logps, estimator_options, get_estimator, rollout_inputs
from .loss import get_loss_normaliser, per_token_loss
from .masking import get_mask_schedule
from .models import load_model, load_tokenizer, resolve_mask_token_id
from .models.image_tokenizer import load_image_tokenizer
from .models.lora import apply_peft
from .plotting import TrainingCurvesCallback
from .prompts import check_prompt_lengths, model_context_length
from .resume import (GracefulStopCallback, ResumeStateCallback, add_complete_checkpoint_callback,
                     latest_complete_checkpoint, report_disk_full, resolve_checkpoint)
from .rewarding import combine_rewards, preflight_rewards, resolve_reward_funcs, score_completions
from .rollout_batches import Rollouts, ScoredBatch, TaskViews
from .sampler_settings import SamplerSettingsSaveMixin
from .sharding import check_sharding, whole_model
from .tasks import TaskRunner, check_tasks, row_task
from .training_logs import TrainingLogsMixin

GRID_CAPTIONS = 16  # held-out t2i captions drawn before / after training in image_grid.png


def by_task(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """The rows of each task, tasks in order of first appearance."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row_task(row), []).append(row)
    return list(groups.items())


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


class EpochDataLoader(DataLoader):
    """A ``DataLoader`` whose ``set_epoch`` (called by the ``Trainer`` at each epoch, resumed ones included) reaches
    the batch sampler, so every epoch draws a new prompt order."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class UniGRPOTrainer(TrainingLogsMixin, GenerationEvalMixin, SamplerSettingsSaveMixin, Trainer):
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
        reward_kwargs: {reward name: arguments of its factory} for rewards named in ``reward_funcs``, as a recipe's
            ``reward_kwargs:`` (``{"clip_score": {"weights_path": ...}}`` → ``rewards.clip.make_clip_score``); or
            pass the built reward itself (``make_clip_score(weights_path=...)``) in ``reward_funcs``.
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
        reward_kwargs=None,
    ):
        args = args or UniGRPOConfig(output_dir="outputs/unigrpo")
        if not isinstance(args, UniGRPOConfig):
            raise TypeError(f"args must be a UniGRPOConfig, got {type(args).__name__}")
        self.reward_funcs, self.reward_names = resolve_reward_funcs(reward_funcs, reward_kwargs)
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
        preflight_rewards(self.reward_funcs, train_dataset, args.reward_errors, args.reward_timeout)

        if processing_class is None and not isinstance(model, (str, os.PathLike)):
            raise ValueError("processing_class (the tokenizer) is required when model is not a path")
        processing_class = processing_class or load_tokenizer(model)
        context = model_context_length(model)  # from config.json when a path: checked before the weights load
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None:
                check_prompt_lengths(dataset, processing_class, context, args.max_completion_length, name)
        if isinstance(model, (str, os.PathLike)):
            model = load_model(model)
        self.mask_token_id = resolve_mask_token_id(model, processing_class)
        if peft_config is not None:
            set_seed(args.seed)  # the adapters' random init: the same on every process and in every launch mode
            model = apply_peft(model, peft_config)
        self.ref_model = None
        if args.beta > 0 and args.kl_reference == "initial" and peft_config is None:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)

        self.estimator = get_estimator(args.likelihood_estimator,
                                       **estimator_options(args.likelihood_estimator, args))
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
        check_sharding(self.accelerator)
        if self.ref_model is not None:
            self.ref_model.to(self.args.device)  # a frozen copy: never wrapped for data parallelism
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
        self.inner_steps = InnerStepCycle(args.gradient_accumulation_steps, args.num_iterations)
        self.resume_state = ResumeStateCallback(self.inner_steps, self.accelerator)
        self.add_callback(self.resume_state)
        self.add_callback(GracefulStopCallback(self.accelerator))
        self.add_callback(CloseEngineCallback(self.engine))  # the grid callback still draws at train end
        add_complete_checkpoint_callback(self)  # last: after every other file of a checkpoint
        self._metrics: dict[str, list[float]] = defaultdict(list)
        self.forward_counts = defaultdict(int)  # per kind of forward pass, counted in answers (benchmarks read it)

    def train(self, resume_from_checkpoint=None, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint`` may also be ``"auto"`` (the latest checkpoint in output_dir,
        or a fresh start if there is none). UniGRPO's own state is restored too (``unigrpo.resume``); a full disk
        while saving is one ``DiskFullError`` naming the incomplete checkpoint."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self.resume_state.resume_from = checkpoint
        with report_disk_full(self):
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
        with self.whole_policy():
            return runner.rollout("t2i", rows, 1, seed=args.seed).completions

    def sync_engine_weights(self) -> None:
        """Send the policy to the rollout engine when an optimizer step changed it (docs/design.md §7; local: no-op)."""
        if self.engine.weights_version != self.state.global_step:
            with self.timer("weight_sync"), self.whole_policy() as policy:
                self.engine.update_weights(policy, version=self.state.global_step)

    @property
    def unwrapped_model(self):
        return self.accelerator.unwrap_model(self.model)

    def whole_policy(self):
        """The policy with whole weights for the passes outside the training wrapper (rollouts, θ_old / reference
        log-probs, evaluation): gathered under FSDP2 / ZeRO-3, as is otherwise (``unigrpo.sharding``). The local
        engine holds ``unwrapped_model``, the same module, so it generates with the gathered weights."""
        return whole_model(self.accelerator, self.model_wrapped)

    def get_train_dataloader(self) -> DataLoader:
        """This process's share of every window (``unigrpo.data_parallel``); not handed to ``accelerator.prepare``,
        which would shard the batches a second time."""
        sampler = RepeatedBatchSampler(
            len(self.train_dataset),
            self.args.prompts_per_device_step,
            self.inner_steps,
            self.args.seed,
            num_processes=self.accelerator.num_processes,
            rank=self.accelerator.process_index,
        )
        return EpochDataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.data_collator)

    @contextmanager
    def timer(self, name: str):
        start = time.perf_counter()
        yield
        self._metrics[f"timing/{name}"].append(time.perf_counter() - start)

    # ------------------------------------------------------------------ the outline
    def training_step(self, model, inputs, num_items_in_batch=None):
        """One micro-batch of inner step n (``unigrpo.inner_steps``): roll out all of this process's slots on the
        window's first micro-step (``inputs["rows"]`` holds them, slot by slot), then the usual step on one slot."""
        step = self.inner_steps.advance()
        B = self.args.prompts_per_device_step
        slots = [inputs["rows"][s * B : (s + 1) * B] for s in range(self.inner_steps.accumulation)]
        if step.fresh:
            self.inner_steps.store(self.make_window_rollouts(slots, step.cycle))
        rollouts = self.inner_steps.rollouts_for(step.slot)
        with self.timer("update"):
            loss = super().training_step(model, rollouts.inputs_for_step(step.n), num_items_in_batch)
        if not torch.isfinite(loss).all():
            self.stop_on_non_finite_loss(loss, slots[step.slot])
        return loss

    def stop_on_non_finite_loss(self, loss, rows) -> None:
        """A NaN/inf loss would poison the weights at the optimizer step: stop before it, naming what to look at."""
        prompts = [str(row.get("prompt"))[:40] for row in rows[:4]]
        last = latest_complete_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
        raise FloatingPointError(
            f"loss is {loss.item()} at optimizer step {self.state.global_step + 1} (micro-step "
            f"{self.inner_steps.micro_step}); "
            f"batch prompts start {prompts}; the weights were not updated. Last complete checkpoint: "
            f"{last or 'none'} (resume with --resume_from_checkpoint auto after fixing the cause: a reward returning "
            f"inf, a learning rate too high, or bf16 overflow)")

    def rollout_seed(self, cycle: int, slot: int) -> int:
        """The seed of this process's slot ``slot`` in μ-cycle ``cycle``: the same for a micro-batch on any number of
        processes (``unigrpo.data_parallel.rollout_seed``)."""
        accelerator, args = self.accelerator, self.args
        window = args.gradient_accumulation_steps * accelerator.num_processes
        j = window_micro_batch(slot, accelerator.process_index, accelerator.num_processes)
        return rollout_seed(args.seed, cycle, j, window, args.num_iterations)

    @torch.no_grad()
    def make_rollouts(self, rows: list[dict]) -> Rollouts:
        """The rollouts of one micro-batch (a window of one slot; the trainer itself calls ``make_window_rollouts``)."""
        return self.make_window_rollouts([rows], self.inner_steps.cycle)[0]

    @torch.no_grad()
    def make_window_rollouts(self, slots: list[list[dict]], cycle: int) -> list[Rollouts]:
        """This process's micro-batches of one optimizer step: rollout → rewards per slot; advantages from the
        rewards of the whole window (gathered over processes); μ views → old / reference log-probs (all no-grad, with
        the policy's weights gathered once for all of them under FSDP2 / ZeRO-3)."""
        with self.whole_policy():
            batches = [self.rollout_and_score(rows, self.rollout_seed(cycle, s)) for s, rows in enumerate(slots)]
            advantages = self.window_advantages(batches)
            rollouts = [self.score_views(b, a) for b, a in zip(batches, advantages)]
        micro_batches = len(slots) * self.accelerator.num_processes
        tokens = sum_over_processes(self.accelerator, sum(r.masked_tokens() for r in rollouts))  # (μ,) whole step
        for r in rollouts:
            r.tokens_per_micro_batch = tokens / micro_batches
        if self.args.log_completions:
            self.write_completions(batches, advantages)
        return rollouts

    def rollout_and_score(self, rows: list[dict], seed: int) -> ScoredBatch:
        """G answers per prompt (per task, with ``seed``) and their rewards."""
        args, G = self.args, self.args.num_generations
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
        rewards = combine_rewards(scores.values, self.reward_weights)
        return ScoredBatch(groups, rows, scores.values, rewards, scores.skipped, seed)

    def window_advantages(self, batches: list[ScoredBatch]) -> list[torch.Tensor]:
        """A_i of each slot's answers (N,), computed on the rewards of the whole window: groups never straddle a
        process, so only ``scale_rewards: batch`` needs the gather; the reward metrics are logged from it too."""
        local = torch.cat([b.rewards for b in batches])  # (GA·N,)
        rewards = gather_tensor(self.accelerator, local)  # (P·GA·N,) every process's, in rank order
        advantages, zero_std = group_advantages(rewards, self.args.num_generations, self.args.scale_rewards)
        self.log_rollout_metrics(batches, rewards, zero_std)
        mine = local_share(self.accelerator, advantages, len(local))
        return list(mine.split([len(b.rewards) for b in batches]))

    def score_views(self, batch: ScoredBatch, advantages: torch.Tensor) -> Rollouts:
        """μ noised views of a micro-batch's answers (Algorithm 1's ratios), and θ_old / reference log-probs on them."""
        args = self.args
        generator = torch.Generator().manual_seed(batch.seed + 1)  # one stream for the ratios, then every mask
        ratios = self.draw_mask_ratios(len(batch.rewards), args.num_iterations, args.num_mask_levels, generator,
                                       args.mask_ratio_min, args.mask_ratio_max)  # (μ, N)
        tasks, offset = [], 0
        for g in batch.groups:
            views = self.draw_views(g, ratios[:, offset : offset + g.size], generator)
            with self.timer("logps"):
                old_logps = [self.view_logps("old", v, g.completion_ids) for v in views]
                ref_logps = [self.view_logps("ref", v, g.completion_ids) for v in views]
            tasks.append(TaskViews(g.completion_ids, offset, views, old_logps, ref_logps))
            offset += g.size
        return Rollouts(advantages.to(batch.groups[0].completion_ids.device), tasks)

    def draw_views(self, group, ratios: torch.Tensor, generator: torch.Generator) -> list[NoisedView]:
        """μ noised views of one task's answers at the step ratios (μ, N_g) of Algorithm 1's schedule; stored so
        θ, θ_old and ref read the same masks. (The masks' stream must not be one that sampling also uses: masks
        correlated with the rollout's Gumbel noise bias the gradient.)"""
        return [
            self.estimator.noise(group.prompt_ids, group.prompt_mask, group.completion_ids, group.eligible,
                                 ratios[n], self.mask_token_id, generator, suffix_ids=group.suffix_ids,
                                 **rollout_inputs(self.estimator, group))
            for n in range(self.args.num_iterations)
        ]

    def view_logps(self, kind: str, view: NoisedView, completion_ids) -> torch.Tensor | None:
        """No-grad token log-probs of θ_old (``old``) or the reference (``ref``) on a view; None if not needed."""
        args = self.args
        if kind == "old" and (args.num_iterations == 1 or not getattr(self.estimator, "uses_ratio", True)):
            return None  # θ_old = θ at the only inner step (ratio 1, read detached), or a ratio-free objective
        if kind == "ref" and (args.beta == 0.0 or args.kl_reference == "rollout"):
            return None
        model, context = self.unwrapped_model, nullcontext()  # whole: inside make_window_rollouts' whole_policy
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
        return self.normalise_loss(token_loss, score_mask, torch.cat(index), len(inputs["advantages"]), L,
                                   inputs.get("global_tokens"))

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
        if hasattr(self.estimator, "policy_loss"):  # an algorithm with its own ratio-free objective (wd1, SPG)
            return self.answer_level_loss(logps, view, all_advantages, answer_index, advantages)
        token_loss, kl, clipped = per_token_loss(
            logps, old_logps, ref_logps, advantages, args.epsilon, args.epsilon_high, args.beta
        )
        self.log_loss_metrics(logps, kl, clipped, advantages, view)
        return token_loss, view.score_mask, answer_index

    def answer_level_loss(self, logps, view: NoisedView, all_advantages, answer_index, advantages):
        """The estimator's own objective (wd1, SPG; docs/design.md §3.9): one loss per answer, returned as a
        one-position row so the ``grpo`` normalisation averages it over the answers (the config allows no other)."""
        loss, index = self.estimator.policy_loss(logps, view, all_advantages, answer_index, self.args.num_generations)
        self.log_loss_metrics(logps, None, torch.zeros_like(view.score_mask), advantages, view)
        return loss[:, None], torch.ones_like(loss[:, None], dtype=torch.bool), index
