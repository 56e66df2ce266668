"""The ``unigrpo`` command: ``init-tiny``, ``generate``, ``sft``, ``train``, ``eval``, ``rewards``.

``sft`` and ``train`` read a YAML recipe with TRL's ``TrlParser`` (``--config recipe.yaml`` plus CLI overrides of
any key), so recipes use the field names of ``UniGRPOConfig`` / ``MaskedSFTConfig``, TRL's ``ModelConfig`` and
``RunArguments`` below.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COMMANDS = {  # name → what it does: the lines of `unigrpo --help`
    "train": "UniGRPO on a recipe (a YAML file of keys, each overridable as --key value)",
    "sft": "masked-diffusion SFT on a recipe: the cold start before RL",
    "eval": "accuracy, pass@k and answer length of models on a recipe's held-out split",
    "check": "validate recipes without loading a model",
    "generate": "sample answers to prompts from a model",
    "rewards": "list the rewards with what each scores; set up a reward's own environment",
    "init-tiny": "write a random tiny model and tokenizer",
}


@dataclass
class RunArguments:
    """What a recipe runs on: the dataset and the reward functions (TRL's script-argument names)."""

    dataset_name: str = field(default="arith", metadata={
        "help": "Built-in task (arith, shapes), adapter name or hub id (gsm8k, math, math500, countdown, sudoku, "
                "geoqa, clevr), or a local data file / folder of <split>.jsonl files."})
    dataset_adapter: str | None = field(default=None, metadata={
        "help": "Schema of a local file or other hub id (an adapter name); default: from dataset_name."})
    thinking_prompt: bool = field(default=False, metadata={
        "help": "Adapted prompts start with MMaDA's thinking instruction (<think> … </think> then the answer)."})
    prompt_format: str = field(default="chat", metadata={
        "help": "Adapted prompts as a chat (one user message, chat template) or plain text.",
        "choices": ["chat", "plain"]})
    dataset_train_split: str = field(default="train", metadata={"help": "Split of a built-in task to train on."})
    dataset_test_split: str | None = field(default="test", metadata={
        "help": "Held-out split, evaluated every eval_steps (null: no held-out evaluation)."})
    train_limit: int | None = field(default=None, metadata={"help": "Use only the first N training prompts."})
    eval_limit: int | None = field(default=None, metadata={"help": "Use only the first N held-out prompts."})
    image_tokenizer: str | None = field(
        default=None, metadata={"help": "Image tokenizer folder or shipped name (needed by mmu / t2i rows)."}
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["math_correctness", "boxed_format"],
        metadata={"help": "Reward names (`unigrpo rewards list`) or `pkg.module:function` paths."},
    )
    reward_kwargs: dict[str, dict] | None = field(default=None, metadata={
        "help": "In the recipe, {reward name: {argument: value}}: a reward's settings, passed to its factory "
                "(clip_score → rewards.clip.make_clip_score, judge → rewards.judge.make_judge, image_reward → "
                "rewards.image_reward.make_image_reward)."})


def parse_recipe(config_cls, argv):
    from trl import ModelConfig, TrlParser

    parser = TrlParser((RunArguments, config_cls, ModelConfig))
    return parser.parse_args_and_config(argv)


def peft_config_from(model_args):
    """TRL's ``get_peft_config``. Without ``lora_target_modules`` the targets stay None here: the model is not loaded
    yet, and ``apply_peft`` fills in the loaded model class's own ``lora_target_modules`` (they differ per
    architecture). TRL's default task type ``CAUSAL_LM`` is mapped to the plain ``PeftModel`` there too."""
    from trl import get_peft_config

    return get_peft_config(model_args)


def model_path_for(model_args, run_args):
    """The recipe's model folder; a ``random-<preset>`` model gets rows for the image tokenizer's codes."""
    from .models import resolve_model_path

    image_codes = None
    if run_args.image_tokenizer and str(model_args.model_name_or_path).startswith("random-"):
        from .models.image_tokenizer import load_image_tokenizer

        vq = load_image_tokenizer(run_args.image_tokenizer)
        image_codes = (vq.codebook_size, vq.tokens_per_image)
    return resolve_model_path(model_args.model_name_or_path, image_codes)


def dataset_options(run_args) -> dict:
    """The adapter options of ``load_prompt_dataset`` from a recipe's run arguments."""
    return {"adapter": run_args.dataset_adapter, "thinking": run_args.thinking_prompt,
            "prompt_format": run_args.prompt_format}


def load_splits(run_args):
    from .data import load_prompt_dataset

    options = dataset_options(run_args)
    train = load_prompt_dataset(run_args.dataset_name, run_args.dataset_train_split, run_args.train_limit, **options)
    test = None
    if run_args.dataset_test_split:
        test = load_prompt_dataset(run_args.dataset_name, run_args.dataset_test_split, run_args.eval_limit,
                                   **options)
    return train, test


def images_only(dataset) -> bool:
    """Every row is a t2i caption: the held-out figure is then the reward (e.g. CLIP score), since "accuracy"
    (a reward above a threshold) means nothing for a picture."""
    return dataset is not None and "task" in dataset.column_names and set(dataset["task"]) == {"t2i"}


def summarise(trainer, start: float, kind: str) -> None:
    """The closing lines of a run: held-out accuracy (text) or reward (images) before → after, where things are."""
    history, output_dir = trainer.state.log_history, trainer.args.output_dir
    rewards = [e["reward"] for e in history if "reward" in e]
    lines = [f"{kind} finished: {trainer.state.global_step} optimizer steps in {time.time() - start:.0f} s"]
    if images_only(getattr(trainer, "eval_dataset", None)):
        key = "eval_reward"
        label = f"held-out reward ({' + '.join(getattr(trainer, 'reward_names', None) or ['reward'])})"
    else:
        key, label = "eval_accuracy", "held-out accuracy"
    held_out = [e[key] for e in history if key in e]
    if held_out:
        lines.append(f"  {label}: {held_out[0]:.3f} → {held_out[-1]:.3f} (best {max(held_out):.3f})")
    if rewards:
        lines.append(f"  train reward (logged means): first {rewards[0]:.3f}, last {rewards[-1]:.3f}")
    if os.path.exists(os.path.join(output_dir, "image_grid.png")):
        lines.append(f"  image_grid.png: held-out captions before / after training, in {output_dir}")
    lines.append(f"  model, tokenizer and trainer_state.json in {output_dir}")
    print("\n".join(lines))


def fit(trainer, kind: str) -> int:
    """Train, save the final model (or adapter) with its tokenizer and the log history, print a summary. A full
    disk is one line naming what is incomplete (``unigrpo.resume.DiskFullError``)."""
    from .resume import report_disk_full

    start = time.time()
    # --resume_from_checkpoint PATH, or auto: the latest complete checkpoint in output_dir (both trainers resolve it)
    trainer.train(resume_from_checkpoint=trainer.args.resume_from_checkpoint)
    with report_disk_full(trainer, final_save=True):
        trainer.save_model(trainer.args.output_dir)
        trainer.save_state()
    if trainer.is_world_process_zero():  # one summary under `accelerate launch`
        summarise(trainer, start, kind)
    if trainer.accelerator.num_processes > 1:  # leave the process group together, not at interpreter exit
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()
    return 0


def wants_help(argv) -> bool:
    return "-h" in argv or "--help" in argv


def cmd_train(argv) -> int:
    from .config import UniGRPOConfig
    from .recipe_check import check_command_line
    from .trainer import UniGRPOTrainer

    if wants_help(argv):  # recipes first, then the keys grouped (not the parser's 200-option usage line)
        from .recipe_help import print_recipe_help

        return print_recipe_help("train", UniGRPOConfig, "UniGRPO")
    check_command_line(argv, UniGRPOConfig)  # every recipe problem at once, before any model is loaded
    run_args, config, model_args = parse_recipe(UniGRPOConfig, argv)
    train, test = load_splits(run_args)
    model_path = model_path_for(model_args, run_args)
    trainer = UniGRPOTrainer(model_path, run_args.reward_funcs, config, train, test,
                             peft_config=peft_config_from(model_args), image_tokenizer=run_args.image_tokenizer,
                             reward_kwargs=run_args.reward_kwargs)
    return fit(trainer, "UniGRPO")


def cmd_sft(argv) -> int:
    from .recipe_check import check_command_line
    from .sft import MaskedSFTConfig, MaskedSFTTrainer

    if wants_help(argv):
        from .recipe_help import print_recipe_help

        return print_recipe_help("sft", MaskedSFTConfig, "SFT")
    check_command_line(argv, MaskedSFTConfig)
    run_args, config, model_args = parse_recipe(MaskedSFTConfig, argv)
    train, test = load_splits(run_args)
    model_path = model_path_for(model_args, run_args)
    return fit(MaskedSFTTrainer(model_path, config, train, test, reward_funcs=run_args.reward_funcs,
                                image_tokenizer=run_args.image_tokenizer, reward_kwargs=run_args.reward_kwargs), "SFT")


def cmd_check(argv) -> int:
    parser = argparse.ArgumentParser(prog="unigrpo check", description="Validate a recipe without loading a model.")
    parser.add_argument("--config", required=True, action="append", help="recipe YAML (repeat for several)")
    parser.add_argument("--kind", choices=["train", "sft", "auto"], default="auto",
                        help="which trainer the recipe is for (auto: the one it fits)")
    parser.add_argument("--skip-paths", action="store_true",
                        help="do not check model / image tokenizer / dataset files (they live on the training machine)")
    parser.add_argument("--plan", action="store_true", help="also print each train recipe's estimated peak memory "
                        "per GPU by category (unigrpo/memory_plan.py), before any weight is loaded")
    parser.add_argument("--accelerate_config", help="--plan: the launch's accelerate config (strategy: DDP, DeepSpeed "
                        "ZeRO-2 / ZeRO-3, FSDP; and its num_processes); default: DDP on one process")
    parser.add_argument("--num_processes", type=int, help="--plan: ranks (GPUs), overriding the accelerate config's")
    parser.add_argument("--gpu_memory", help="--plan: memory of one GPU (80GB, 80GiB, …): says whether it fits")
    parser.add_argument("--prompt_length", type=int, default=256,
                        help="--plan: prompt tokens per row (the data set is not read; default 256)")
    args = parser.parse_args(argv)

    from .config import UniGRPOConfig
    from .recipe_check import check_recipe
    from .sft import MaskedSFTConfig

    kinds = {"train": UniGRPOConfig, "sft": MaskedSFTConfig}
    failed = 0
    for path in args.config:
        candidates = list(kinds) if args.kind == "auto" else [args.kind]
        results = {kind: check_recipe(path, kinds[kind], check_paths=not args.skip_paths) for kind in candidates}
        # the kind with fewest problems; on a tie, SFT if the file name says so
        kind = min(candidates, key=lambda k: (len(results[k]), k != ("sft" if "sft" in Path(path).name else "train")))
        if results[kind]:
            failed += 1
            print("\n".join(results[kind]), file=sys.stderr)
        else:
            print(f"ok: {path} ({kind})")
            if args.plan and kind == "train":
                from .memory_plan_recipe import plan_recipe

                print(plan_recipe(path, args.accelerate_config, args.num_processes, args.gpu_memory,
                                  args.prompt_length).format())
            elif args.plan:
                print(f"plan: {path} is an SFT recipe; the memory plan covers train recipes")
    return 2 if failed else 0


def fitting_tokenizers(dataset, paths: list, completion_length: int, name: str) -> dict:
    """Each model's tokenizer, once every text prompt + answer canvas is known to fit that model's context (read from
    its config.json, before any weights load), as ``train`` checks: a prompt cut short would score 0, not fail."""
    from .models import load_tokenizer
    from .prompts import check_prompt_lengths, model_context_length

    tokenizers = {}
    for path in paths:
        tokenizers[path] = load_tokenizer(path)
        check_prompt_lengths(dataset, tokenizers[path], model_context_length(path), completion_length,
                             name=f"{name} (model {str(path)!r})")
    return tokenizers


def cmd_eval(argv) -> int:
    parser = argparse.ArgumentParser(prog="unigrpo eval", description=(
        "Accuracy, pass@k and mean answer length of one or more models on a recipe's held-out split, with the "
        "recipe's sampler and rewards; prints a Markdown table (or JSON lines)."))
    parser.add_argument("--model", required=True, action="append",
                        help="model or LoRA adapter folder, or a built-in checkpoint name (repeat to compare)")
    parser.add_argument("--config", required=True, help="recipe YAML: sampler settings, rewards, dataset")
    parser.add_argument("--eval-file", help="a data file (in the recipe's adapter schema, if it has one) instead of "
                                            "the recipe's held-out split")
    parser.add_argument("--split", help="split to evaluate (default: the recipe's dataset_test_split, else test)")
    parser.add_argument("--limit", type=int, help="evaluate only the first N rows")
    parser.add_argument("--samples", type=int, default=1, help="answers per prompt (for pass@k)")
    parser.add_argument("--k", default=None, help="comma-separated k for pass@k (default: 1 and --samples)")
    parser.add_argument("--temperature", type=float, default=None, help="default: the recipe's eval_temperature "
                        "for one sample, its (rollout) temperature for several")
    parser.add_argument("--output", help="folder to write eval.json and eval.md")
    parser.add_argument("--json", action="store_true", help="print one JSON object per model instead of the table")
    args = parser.parse_args(argv)
    try:
        ks = sorted({1, args.samples}) if args.k is None else sorted({int(k) for k in args.k.split(",")})
    except ValueError:
        raise ValueError(f"--k {args.k!r}: give whole numbers separated by commas, e.g. --k 1,4,8") from None
    if args.samples < 1 or any(not 1 <= k <= args.samples for k in ks):
        raise ValueError(f"--k {ks} must lie in 1..--samples ({args.samples})")

    from .config import UniGRPOConfig
    from .data import load_prompt_dataset
    from .eval_report import markdown_table, write_report
    from .evaluation import evaluate_accuracy
    from .models import load_model, resolve_mask_token_id, resolve_model_path
    from .models.image_tokenizer import load_image_tokenizer
    from .recipe_check import RecipeError, check_recipe
    from .rewarding import resolve_reward_funcs

    problems = check_recipe(args.config, UniGRPOConfig, check_paths=False)  # its model and data: not used here
    if problems:
        raise RecipeError(problems)
    run_args, config, _ = parse_recipe(UniGRPOConfig, ["--config", args.config])
    paths = [resolve_model_path(m) for m in args.model]  # every model path checked before any is loaded
    funcs, names = resolve_reward_funcs(run_args.reward_funcs, run_args.reward_kwargs)
    required = ["prompt", *dict.fromkeys(c for f in funcs for c in getattr(f, "required_columns", ()))]
    dataset_name = args.eval_file or run_args.dataset_name
    split = args.split or run_args.dataset_test_split or "test"
    options = dataset_options(run_args)
    if args.eval_file and options["adapter"] is None:  # a file in the schema of the recipe's data set
        from .data.adapters import adapter_for

        recipe_adapter = adapter_for(run_args.dataset_name)
        options["adapter"] = recipe_adapter.name if recipe_adapter else None
    dataset = load_prompt_dataset(dataset_name, split, args.limit, required=required, **options)
    temperature = args.temperature if args.temperature is not None else (
        config.eval_temperature if args.samples == 1 else config.temperature)
    if args.samples > 1 and temperature == 0:
        print("unigrpo eval: warning: temperature 0 with several samples: they are all the same answer",
              file=sys.stderr)
    sampler = config.sampler_config(temperature=temperature)
    tokenizers = fitting_tokenizers(dataset, paths, sampler.gen_length, f"dataset {str(dataset_name)!r}")
    image_tokenizer = load_image_tokenizer(run_args.image_tokenizer) if run_args.image_tokenizer else None
    settings = {"dataset": dataset_name, "split": split, "samples": args.samples, "temperature": temperature,
                "gen_length": sampler.gen_length, "block_length": sampler.block_length, "steps": sampler.steps,
                "kv_cache": sampler.cache, "confidence_threshold": sampler.threshold, "seed": config.seed,
                "accuracy_reward": config.accuracy_reward or names[0]}
    all_results = []
    for path in paths:
        tokenizer, model = tokenizers[path], load_model(path)
        results = evaluate_accuracy(
            model, tokenizer, dataset, funcs, names, sampler, resolve_mask_token_id(model, tokenizer),
            accuracy_reward=config.accuracy_reward, batch_size=config.per_device_eval_batch_size, seed=config.seed,
            image_sampler_config=config.image_sampler_config(temperature=temperature),
            image_tokenizer=image_tokenizer, num_samples=args.samples, pass_k=ks,
        )
        all_results.append({"model": str(path), "dataset": Path(str(dataset_name)).name, **results})
        if args.json:
            print(json.dumps(all_results[-1]))
        del model
    if not args.json:
        print(markdown_table(all_results))
    if args.output:
        json_path, md_path = write_report(all_results, settings, args.output)
        print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


def cmd_generate(argv) -> int:
    from .generate_cli import cmd_generate as generate  # options built from the recipe's sampler fields

    return generate(argv)


def cmd_init_tiny(argv) -> int:
    parser = argparse.ArgumentParser(prog="unigrpo init-tiny", description="Write a random tiny model + tokenizer.")
    parser.add_argument("--output", required=True, help="folder to write")
    parser.add_argument("--preset", default="tiny", help="tiny | micro")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mmada", action="store_true", help="write an MMaDA (model_type mmada) config")
    parser.add_argument("--architecture", default="llada",
                        help="llada (default) | dream | llada-moe: a key of unigrpo.models.tiny.ARCHITECTURES "
                             "(an unknown name is an error listing the valid ones)")
    parser.add_argument("--image-tokenizer", help="MMaDA with embedding rows for this image tokenizer's codebook "
                                                  "(a folder or shipped name, e.g. tiny-shapes-vq)")
    args = parser.parse_args(argv)
    from .models import init_tiny

    image = {}
    if args.image_tokenizer:
        from .models.image_tokenizer import load_image_tokenizer

        vq = load_image_tokenizer(args.image_tokenizer)
        image = {"mmada": True, "codebook_size": vq.codebook_size, "num_vq_tokens": vq.tokens_per_image}
    path = init_tiny(args.output, preset=args.preset, seed=args.seed, architecture=args.architecture,
                     **{"mmada": args.mmada, **image})
    print(f"wrote tiny {args.preset} {args.architecture} model and tokenizer to {path}")
    return 0


def reward_description(name: str) -> str:
    """One line on what a reward scores: its ``description`` attribute, else its docstring's first paragraph."""
    from rewards.registry import get_reward

    try:
        func = get_reward(name)
    except ValueError as error:  # a third-party entry point that fails to load
        return f"(does not load: {error})"
    text = getattr(func, "description", None) or (func.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(text.replace("``", "").split()) or "(no description)"  # reST quotes off for a terminal


def cmd_rewards(argv) -> int:
    parser = argparse.ArgumentParser(prog="unigrpo rewards", description="List rewards; set up reward environments.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="registered reward names (and those of installed plugins)")
    setup = sub.add_parser("setup", help="create the separate Python environment a reward runs in")
    setup.add_argument("environment", help="image-reward")
    setup.add_argument("--path", help="where to create it (default: $UNIGRPO_ENVS_DIR/<name> or "
                                      "~/.cache/unigrpo/envs/<name>)")
    setup.add_argument("--force", action="store_true", help="recreate it even if it is ready")
    setup.add_argument("--torch-index-url", help="install its own torch (the trainer's version) from this index, e.g. "
                                                 "https://download.pytorch.org/whl/cpu, instead of sharing the "
                                                 "trainer's (default: $UNIGRPO_TORCH_INDEX_URL, else shared)")
    args = parser.parse_args(argv)

    import rewards
    from rewards.environments import RewardEnvironmentError, setup_environment

    if args.action == "list":
        names = rewards.list_rewards()
        width = max(map(len, names))
        print("\n".join(f"{name:<{width}}  {reward_description(name)}" for name in names))
        return 0
    try:
        python = setup_environment(args.environment, args.path, force=args.force,
                                   torch_index_url=args.torch_index_url)
    except RewardEnvironmentError as error:
        print(f"unigrpo rewards setup: error: {error}", file=sys.stderr)
        return 1
    print(python)
    return 0


HANDLERS = {"init-tiny": cmd_init_tiny, "generate": cmd_generate, "check": cmd_check, "sft": cmd_sft, "train": cmd_train,
            "eval": cmd_eval, "rewards": cmd_rewards}


# What a user's input or machine causes, reported as one line without a traceback (UNIGRPO_TRACEBACK=1 shows it):
# bad recipes, data and values (ValueError), files, disks and networks (OSError), rewards and reward servers that
# fail (RuntimeError: the reward wrappers, JudgeError, ImageRewardError), a missing optional package (ImportError)
# and a non-finite loss (FloatingPointError). Other exceptions (TypeError, KeyError, …) are bugs: traceback.
USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError, FloatingPointError)


def error_text(error: BaseException) -> str:
    """The error's message; a recipe's problems one per line (a single problem stays on one line)."""
    from .recipe_check import RecipeError

    if isinstance(error, RecipeError) and len(error.problems) > 1:
        return f"{len(error.problems)} problems in the recipe and command line; nothing was loaded:\n" + "\n".join(
            f"  {line}" for line in error.problems)
    return str(error) or type(error).__name__


def usage() -> str:
    """``unigrpo --help``: one line per command."""
    lines = ["usage: unigrpo COMMAND [options]      (unigrpo COMMAND --help for each command's options)", "",
             "commands:"]
    return "\n".join(lines + [f"  {name:<9} {what}" for name, what in COMMANDS.items()])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in HANDLERS:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unigrpo: unknown command {argv[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        print(usage())
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        return HANDLERS[argv[0]](argv[1:])
    except USER_ERRORS as error:
        if os.environ.get("UNIGRPO_TRACEBACK"):
            raise
        print(f"unigrpo {argv[0]}: error: {error_text(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
