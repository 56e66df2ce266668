"""Masked-diffusion SFT (the cold-start stage before RL; docs/design.md §5, LLaDA/MMaDA pre-training loss).

Legend: t ↔ diffusion time ~ U[0, 1]; p = (1 − ε)·t + ε with ε = 1e-3 ↔ the mask probability of each answer token;
answer ↔ the completion padded with EOS to the fixed canvas ``max_completion_length`` (as rollouts produce it).
The prompt is never masked. Two noise laws, swappable by ``sft_noise``:
    continuous  loss = Σ_masked CE / p / L            (the published loss)
    count       k ~ U{1..L} masked tokens, loss = Σ_masked CE · (L/k) / L
The continuous weight 1/p reaches 1000 when t is small, which makes very short answers noisy; ``count`` is the
lower-variance law docs/design.md §9 measured on the 4–6-token demo answers.

Image answers (``t2i`` rows: caption → the ``image`` column, encoded by the image tokenizer) use MaskGIT's cosine
law instead (docs/design.md §5): r ~ U[0, 1], ⌈N·cos(π/2·r)⌉ of the N codes masked (at least one), loss = plain mean CE
over the masked codes. ``mmu`` rows (``image`` + question → ``completion``) are text answers after an image prompt.
A batch may mix tasks; each task's rows form one group, and the loss is the mean of the groups' losses weighted by
their rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback, TrainingArguments

from rewards.inputs import caption_text
from rollouts import tokenize_prompts

from .config import SamplingArguments
from .evaluation import GenerationEvalMixin
from .models import load_model, load_tokenizer, resolve_mask_token_id
from .models.image_tokenizer import load_image_tokenizer
from .models.layouts import image_suffix, mmu_prompts, multimodal_ids, t2i_prompts
from .plotting import TrainingCurvesCallback
from .resume import GracefulStopCallback, add_complete_checkpoint_callback, report_disk_full, resolve_checkpoint
from .prompts import prompt_texts
from .rewarding import resolve_reward_funcs
from .sampler_settings import SamplerSettingsSaveMixin
from .tasks import check_tasks, row_task

SFT_NOISE = ("continuous", "count")
MIN_MASK_PROB = 1e-3


@dataclass
class MaskedSFTConfig(SamplingArguments, TrainingArguments):
    """Masked-diffusion SFT options; the sampler options are used by evaluation only."""

    sft_noise: str = field(default="continuous", metadata={"help": f"Noise law: {SFT_NOISE}."})
    stop_at_accuracy: float | None = field(
        default=None, metadata={"help": "Stop once eval_accuracy reaches this value (evaluated every eval_steps)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep raw rows for the collator."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpointing strategy (Trainer's)."})
    temperature: float = field(default=0.0, metadata={"help": "Unused in SFT (evaluation uses eval_temperature)."})

    def __post_init__(self):
        super().__post_init__()
        if self.sft_noise not in SFT_NOISE:
            raise ValueError(f"sft_noise={self.sft_noise!r} is not valid; choose one of {list(SFT_NOISE)}")
        if self.stop_at_accuracy is not None and not 0.0 < self.stop_at_accuracy <= 1.0:
            raise ValueError(f"stop_at_accuracy={self.stop_at_accuracy} must lie in (0, 1]")
        self.sampler_config()


def continuous_mask(canvas: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """t ~ U[0,1], p = (1−ε)t + ε, each answer position masked w.p. p → (mask (B, L) bool, weight (B, L) = 1/p)."""
    B, L = canvas.shape
    t = torch.rand(B, 1, generator=generator)
    p = (1 - MIN_MASK_PROB) * t + MIN_MASK_PROB
    mask = torch.rand(B, L, generator=generator) < p
    return mask, (1.0 / p).expand(B, L)


def count_mask(canvas: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """k ~ U{1..L} positions masked uniformly at random → (mask (B, L) bool, weight (B, L) = L/k)."""
    B, L = canvas.shape
    k = torch.randint(1, L + 1, (B, 1), generator=generator)
    ranks = torch.rand(B, L, generator=generator).argsort(dim=1).argsort(dim=1)  # a random permutation per row
    mask = ranks < k
    return mask, (L / k.float()).expand(B, L)


SFT_MASKS = {"continuous": continuous_mask, "count": count_mask}


def cosine_image_mask(codes: torch.Tensor, generator=None) -> torch.Tensor:
    """MaskGIT / MMaDA image noise: r ~ U[0,1], ⌈N·cos(π/2·r)⌉ codes masked (≥ 1) uniformly → mask (B, N) bool."""
    B, N = codes.shape
    r = torch.rand(B, 1, generator=generator)
    k = torch.ceil(N * torch.cos(torch.pi / 2 * r)).clamp(min=1)  # (B, 1)
    ranks = torch.rand(B, N, generator=generator).argsort(dim=1).argsort(dim=1)
    return ranks < k


def image_sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Plain mean cross-entropy over the masked codes of the batch: logits (B, N, V), targets / mask (B, N)."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, N)
    return (ce * mask.float()).sum() / mask.float().sum().clamp(min=1.0)


def masked_diffusion_sft_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor):
    """Σ_masked CE · weight / L, averaged over the batch: logits (B, L, V), targets / mask / weight (B, L)."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="none")  # (B, L)
    return ((ce * weight * mask.float()).sum(dim=1) / targets.shape[1]).mean()


class AccuracyStopCallback(TrainerCallback):
    """Stops training when ``eval_accuracy`` reaches ``threshold`` (docs/design.md §9: stop SFT on accuracy, not steps)."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and metrics.get("eval_accuracy", -1.0) >= self.threshold:
            control.should_training_stop = True


class MaskedSFTTrainer(GenerationEvalMixin, SamplerSettingsSaveMixin, Trainer):
    """SFT on TRL prompt-completion rows (``prompt`` plain or chat, ``completion`` text) with the diffusion loss.

    ``reward_funcs`` are only used by ``evaluate`` (held-out accuracy by generation).
    """

    def __init__(self, model, args: MaskedSFTConfig, train_dataset, eval_dataset=None, processing_class=None,
                 reward_funcs=None, callbacks=None, image_tokenizer=None, reward_kwargs=None):
        if isinstance(image_tokenizer, (str, os.PathLike)):
            image_tokenizer = load_image_tokenizer(image_tokenizer)
        self.image_tokenizer = image_tokenizer
        for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
            if dataset is not None:
                tasks = check_tasks(dataset, image_tokenizer, name)
                targets = ["image"] if tasks == ["t2i"] else ["completion"] + (["image"] if "t2i" in tasks else [])
                needed = ["prompt"] + (targets if name == "train_dataset" else [])
                missing = [c for c in needed if c not in dataset.column_names]
                if missing:
                    raise ValueError(f"{name} has no column(s) {missing} (columns: {dataset.column_names})")
        if isinstance(model, (str, os.PathLike)):
            processing_class = processing_class or load_tokenizer(model)
            model = load_model(model)
        self.mask_token_id = resolve_mask_token_id(model, processing_class)
        self.reward_funcs, self.reward_names = (resolve_reward_funcs(reward_funcs, reward_kwargs) if reward_funcs
                                                else ([], []))
        self.draw_mask = SFT_MASKS[args.sft_noise]
        self.generator = torch.Generator().manual_seed(args.seed)
        callbacks = list(callbacks or []) + [TrainingCurvesCallback(), GracefulStopCallback()]
        if args.stop_at_accuracy is not None:
            callbacks.append(AccuracyStopCallback(args.stop_at_accuracy))
        super().__init__(model=model, args=args, data_collator=self.collate, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, callbacks=callbacks)
        add_complete_checkpoint_callback(self)  # last: after every other file of a checkpoint
        self.ids = None
        if image_tokenizer is not None:
            image_tokenizer.to(self.args.device)
            self.ids = multimodal_ids(processing_class, image_tokenizer.codebook_size,
                                      self.model.get_input_embeddings().num_embeddings)

    def train(self, resume_from_checkpoint=None, **kwargs):
        """``Trainer.train``; ``resume_from_checkpoint`` may also be ``"auto"`` (the latest complete checkpoint in
        output_dir, or a fresh start if there is none), as for ``UniGRPOTrainer``; a full disk while saving is one
        ``DiskFullError`` naming the incomplete checkpoint."""
        checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        with report_disk_full(self):
            return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def collate(self, rows: list[dict]) -> dict:
        """One group per task: left-padded prompts, answer canvases, the suffix after image answers."""
        groups = {}
        for row in rows:
            groups.setdefault(row_task(row), []).append(row)
        return {"groups": [self.collate_task(task, task_rows) for task, task_rows in groups.items()]}

    def collate_task(self, task: str, rows: list[dict]) -> dict:
        tokenizer = self.processing_class
        if task == "t2i":
            prompt_ids, prompt_mask = t2i_prompts([caption_text(r["prompt"]) for r in rows], tokenizer, self.ids)
            codes = self.image_tokenizer.encode([r["image"] for r in rows]).cpu()  # (B, N)
            return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": self.ids.code_ids(codes),
                    "suffix_ids": image_suffix(len(rows), self.ids), "is_image": True}
        if task == "mmu":
            codes = self.image_tokenizer.encode([r["image"] for r in rows]).cpu()
            questions = prompt_texts([r["prompt"] for r in rows], tokenizer)
            prompt_ids, prompt_mask = mmu_prompts(codes, questions, tokenizer, self.ids)
        else:
            prompt_ids, prompt_mask = tokenize_prompts(tokenizer, prompt_texts([r["prompt"] for r in rows], tokenizer))
        return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "completion_ids": self.text_canvases(rows),
                "suffix_ids": None, "is_image": False}

    def text_canvases(self, rows: list[dict]) -> torch.Tensor:
        """(B, L) completions padded with EOS to ``max_completion_length``."""
        tokenizer, L = self.processing_class, self.args.max_completion_length
        canvases = []
        for row in rows:
            completion = row["completion"]
            if isinstance(completion, list):  # conversational completion: the assistant's text
                completion = "".join(m["content"] for m in completion)
            ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
            if len(ids) >= L:
                raise ValueError(
                    f"completion {completion[:60]!r} has {len(ids)} tokens; max_completion_length={L} leaves no EOS"
                )
            canvases.append(ids + [tokenizer.eos_token_id] * (L - len(ids)))
        return torch.tensor(canvases)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        groups = inputs["groups"]
        total = sum(g["completion_ids"].shape[0] for g in groups)
        loss = sum(self.group_loss(model, g) * (g["completion_ids"].shape[0] / total) for g in groups)
        return (loss, None) if return_outputs else loss

    def group_loss(self, model, group: dict) -> torch.Tensor:
        """The diffusion loss of one task's rows: noise the answer (never the prompt or suffix), one forward."""
        canvas = group["completion_ids"]  # (B, L)
        if group["is_image"]:
            mask, weight = cosine_image_mask(canvas.cpu(), self.generator), None
        else:
            mask, weight = self.draw_mask(canvas.cpu(), self.generator)
            weight = weight.to(canvas.device)
        mask = mask.to(canvas.device)
        noised = canvas.masked_fill(mask, self.mask_token_id)
        suffix = canvas[:, :0] if group["suffix_ids"] is None else group["suffix_ids"]
        input_ids = torch.cat([group["prompt_ids"], noised, suffix], dim=1)
        attention_mask = None
        if not bool(group["prompt_mask"].all()):
            attention_mask = torch.cat([group["prompt_mask"], torch.ones_like(noised), torch.ones_like(suffix)], dim=1)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, P+L+S, V)
        T, L, S = logits.shape[1], canvas.shape[1], suffix.shape[1]
        logits = logits[:, T - S - L : T - S]
        if group["is_image"]:
            return image_sft_loss(logits, canvas, mask)
        return masked_diffusion_sft_loss(logits, canvas, mask, weight)
