"""Loading a diffusion LM and its tokenizer from a folder, with one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoTokenizer


def _check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model path {str(path)!r} does not exist")
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(f"model path {str(path)!r} has no config.json (is it a model folder?)")
    return path


def load_model(path: str | Path, dtype: torch.dtype | str | None = None, trust_remote_code: bool = False, **kwargs):
    """Load a masked-diffusion LM from a local folder; every checkpoint tensor must match a parameter.

    LLaDA (``model_type: llada``), MMaDA (``mmada``) and LLaDA-MoE (``lladamoe``, or the published ``llada`` with
    MoE keys) checkpoints load into this project's classes; other
    architectures load through ``AutoModelForMaskedLM`` / ``AutoModel`` (with ``trust_remote_code`` if asked).
    Raises ``ValueError`` naming the keys when the checkpoint has missing, unexpected or mis-shaped tensors.
    """
    import unigrpo.models  # noqa: F401  (registers the Auto classes)

    path = resolve_model_path(path)
    if not (path / "config.json").is_file():
        return _load_adapter(path, dtype, trust_remote_code, **kwargs)
    config = _llada_moe_config(path) or AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    auto = AutoModelForMaskedLM if type(config) in AutoModelForMaskedLM._model_mapping else AutoModel
    # ignore_mismatched_sizes: a mis-shaped tensor then comes back in ``info`` and is named in the error below
    # (transformers' own error names none); the model is refused either way.
    kwargs = {"ignore_mismatched_sizes": True, **kwargs}
    model, info = auto.from_pretrained(
        path, config=config, dtype=dtype, trust_remote_code=trust_remote_code, output_loading_info=True, **kwargs
    )
    problems = {k: sorted(map(str, v)) for k, v in info.items() if k != "error_msgs" and v}
    if problems or info.get("error_msgs"):
        detail = "; ".join(f"{k}: {v[:5]}{' …' if len(v) > 5 else ''}" for k, v in problems.items())
        raise ValueError(f"checkpoint {str(path)!r} does not match {type(model).__name__}: {detail}")
    return model


def _llada_moe_config(path: Path):
    """The ``LLaDAMoEConfig`` of a LLaDA-MoE folder, else None. The published LLaDA-MoE config says ``model_type:
    llada``, dense LLaDA's name, so the Auto lookup alone would build a dense config; the MoE keys decide first."""
    import json

    from .configuration_llada_moe import LLaDAMoEConfig, is_llada_moe_config

    raw = json.loads((path / "config.json").read_text())
    if not is_llada_moe_config(raw):
        return None
    return LLaDAMoEConfig.from_dict({**raw, "model_type": LLaDAMoEConfig.model_type})


def _load_adapter(path: Path, dtype, trust_remote_code: bool, **kwargs):
    """A PEFT adapter folder (what a LoRA run saves): its base model with the adapter merged in."""
    import json

    from peft import PeftModel

    base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"adapter {str(path)!r} does not name its base model (base_model_name_or_path)")
    model = load_model(resolve_model_path(base), dtype=dtype, trust_remote_code=trust_remote_code, **kwargs)
    return PeftModel.from_pretrained(model, path).merge_and_unload()


def load_tokenizer(path: str | Path, **kwargs):
    """``AutoTokenizer.from_pretrained`` on a local folder, padding on the left (prompts are left-padded).

    A tokenizer class of ``BUILTIN_TOKENIZERS`` (a published repository's own copy of a transformers tokenizer)
    loads with the transformers class instead, so no repository code runs and no ``trust_remote_code`` is needed."""
    path = resolve_model_path(path)
    tokenizer = (builtin_tokenizer_class(path, kwargs) or AutoTokenizer).from_pretrained(path, **kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# tokenizer_class of a published tokenizer_config.json → the transformers class it copies. Dream's
# ``tokenization_dream.DreamTokenizer`` is Qwen2's byte-level BPE (same vocab.json / merges.txt, pre-tokenizer regex
# and NFC normalisation), shipped as remote code.
BUILTIN_TOKENIZERS = {"DreamTokenizer": "Qwen2Tokenizer"}


def builtin_tokenizer_class(path: Path, kwargs: dict):
    """The transformers class for the folder's ``tokenizer_class`` when ``BUILTIN_TOKENIZERS`` maps it, else None
    (also None when the caller asks for the repository's code with ``trust_remote_code``)."""
    import json

    import transformers

    config = path / "tokenizer_config.json"
    if kwargs.get("trust_remote_code") or not config.is_file():
        return None
    name = BUILTIN_TOKENIZERS.get(json.loads(config.read_text()).get("tokenizer_class"))
    return getattr(transformers, name) if name else None


def resolve_mask_token_id(model=None, tokenizer=None) -> int:
    """The mask token id: the model config's ``mask_token_id``, else the tokenizer's mask token; else an error."""
    config = getattr(model, "config", None)
    mask_id = getattr(config, "mask_token_id", None)
    if mask_id is None and tokenizer is not None:
        mask_id = tokenizer.mask_token_id
        if mask_id is None and "<|mdm_mask|>" in tokenizer.get_vocab():
            mask_id = tokenizer.convert_tokens_to_ids("<|mdm_mask|>")
    if mask_id is None:
        raise ValueError(
            "no mask token: neither the model config has `mask_token_id` nor the tokenizer a mask token "
            "(a masked-diffusion model needs one)"
        )
    return int(mask_id)


ASSETS = Path(__file__).resolve().parent.parent / "assets"


def builtin_checkpoints() -> list[str]:
    """Names of the model checkpoints shipped with the package (``unigrpo/assets/<name>`` with a transformers
    ``config.json``; the image tokenizers and CLIP shipped beside them are not models)."""
    import json

    if not ASSETS.is_dir():
        return []
    return sorted(p.name for p in ASSETS.iterdir()
                  if (p / "config.json").is_file() and "model_type" in json.loads((p / "config.json").read_text()))


def resolve_model_path(name_or_path: str | Path | None, image_codes: tuple[int, int] | None = None) -> Path:
    """A model folder, the name of a shipped checkpoint (e.g. ``tiny-arith-sft``), or ``random-<preset>`` → folder.

    image_codes: (codebook_size, tokens_per_image) of the run's image tokenizer; a ``random-<preset>`` model is
    then an MMaDA with embedding rows for those codes."""
    if name_or_path is None:
        raise ValueError("no model given: set model_name_or_path in the recipe or pass --model")
    path = Path(name_or_path)
    if path.exists():
        return _check_model_dir(path)
    name = str(name_or_path)
    if name in builtin_checkpoints():
        return ASSETS / name
    if name.startswith(RANDOM_PREFIX):
        return random_init_path(name[len(RANDOM_PREFIX):], image_codes=image_codes)
    if is_hub_id(name):  # `outputs/my-model` looks like `org/name` too: a mistyped folder must read as one
        try:
            return _check_model_dir(hub_snapshot(name, "model"))
        except FileNotFoundError as error:
            from huggingface_hub import constants

            cause = error.__cause__ or error
            hub = ("is off (HF_HUB_OFFLINE=1) and has no cached copy" if constants.HF_HUB_OFFLINE
                   else f"could not provide it ({type(cause).__name__})")
            raise FileNotFoundError(
                f"no such model folder or hub id: {name!r} is not a folder here and the hub {hub}; built-in "
                f"checkpoints: {builtin_checkpoints()}") from error
    raise FileNotFoundError(
        f"model path {name!r} does not exist, is not a built-in checkpoint {builtin_checkpoints()}, a hub id "
        f"(org/name) or '{RANDOM_PREFIX}<preset>'"
    )


# weights, configs, tokenizer, and the repository's code files (copied into saved folders, never imported here)
HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.py"]


def is_hub_id(name: str) -> bool:
    """``org/name`` that is not a path on this machine (one slash, no leading ``.`` or ``/``)."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(name.split("/"))


def hub_snapshot(repo_id: str, what: str, extra_files: tuple[str, ...] = ()) -> Path:
    """The local folder of a hub repository (downloaded once into the hub cache; only the cache when offline).
    The project's classes load the weights; the repository's own ``.py`` files are downloaded but never imported,
    only copied next to the weights a run saves (``remote_code.py``)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=[*HUB_FILES, *extra_files]))
    except Exception as error:  # offline without a cached copy, unknown or gated repository
        raise FileNotFoundError(
            f"{what} {repo_id!r} is not a folder here and could not be fetched from the hub: "
            f"{type(error).__name__}: {str(error)[:200]}") from error


RANDOM_PREFIX = "random-"


def random_init_path(preset: str, seed: int = 0, image_codes: tuple[int, int] | None = None) -> Path:
    """``random-<preset>``: a fresh random tiny model (seed 0) + tokenizer, written once to the cache folder; with
    ``image_codes`` = (codebook_size, tokens_per_image), an MMaDA with rows for the image codes."""
    import os
    import tempfile

    from .tiny import PRESETS, init_tiny

    if preset not in PRESETS:
        raise ValueError(f"unknown tiny preset {preset!r} in '{RANDOM_PREFIX}{preset}'; valid: {sorted(PRESETS)}")
    cache = Path(os.environ.get("UNIGRPO_CACHE", Path.home() / ".cache" / "unigrpo"))
    image = {} if image_codes is None else {"mmada": True, "codebook_size": image_codes[0],
                                            "num_vq_tokens": image_codes[1]}
    suffix = "" if image_codes is None else f"-mmada-{image_codes[0]}x{image_codes[1]}"
    target = cache / f"random-{preset}{suffix}-seed{seed}"
    if not (target / "config.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".tmp-"))
        init_tiny(tmp / "model", preset=preset, seed=seed, **image)
        os.replace(tmp / "model", target)  # atomic: a reader never sees a half-written folder
        tmp.rmdir()
    return target
