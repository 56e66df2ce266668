"""Models: the LLaDA/MMaDA transformer, its tiny presets, the offline tokenizer, the loaders, and the image
tokenizer interface (``image_tokenizer``; implementations ``magvit2`` and ``tiny_vq`` register themselves)."""

from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from .configuration_dream import DreamConfig
from .configuration_llada import LLaDAConfig, MMadaConfig
from .configuration_llada_moe import LLaDAMoEConfig
from .image_tokenizer import IMAGE_TOKENIZERS, ImageTokenizer, load_image_tokenizer
from .loading import builtin_checkpoints, load_model, load_tokenizer, resolve_mask_token_id, resolve_model_path
from .modeling_dream import DREAM_LORA_TARGET_MODULES, DreamModel
from .modeling_llada import LORA_TARGET_MODULES, LLaDAModelLM, MMadaModelLM
from .modeling_llada_moe import LLaDAMoEModelLM
from .tiny import PRESETS, init_tiny, tiny_config
from .tokenizer import build_char_tokenizer

# Dream's published ``DreamModel`` is its masked LM (``model_type: "Dream"``; AutoModel in its auto_map).
for _config, _model in ((LLaDAConfig, LLaDAModelLM), (MMadaConfig, MMadaModelLM), (LLaDAMoEConfig, LLaDAMoEModelLM),
                        (DreamConfig, DreamModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    AutoModelForMaskedLM.register(_config, _model, exist_ok=True)

__all__ = [
    "IMAGE_TOKENIZERS",
    "ImageTokenizer",
    "load_image_tokenizer",
    "LLaDAConfig",
    "MMadaConfig",
    "LLaDAModelLM",
    "MMadaModelLM",
    "LLaDAMoEConfig",
    "LLaDAMoEModelLM",
    "LORA_TARGET_MODULES",
    "DreamConfig",
    "DreamModel",
    "DREAM_LORA_TARGET_MODULES",
    "PRESETS",
    "init_tiny",
    "tiny_config",
    "build_char_tokenizer",
    "load_model",
    "load_tokenizer",
    "resolve_mask_token_id",
    "resolve_model_path",
    "builtin_checkpoints",
]
