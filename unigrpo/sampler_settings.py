"""The sampler settings a model was trained and evaluated with, saved next to its weights (``unigrpo_sampler.json``).

Both trainers' ``save_model`` (the final save and every checkpoint, from the CLI or Python) write the text-sampler
options of their held-out evaluation (the recipe keys of ``rollouts.RECIPE_KEYS``, temperature =
``eval_temperature``) beside the weights, so that
``unigrpo generate --model FOLDER`` answers with the canvas, blocks and steps the model learned on instead of
defaults that may not fit it (a 6-token arithmetic answer in a 64-token canvas comes out wrong). Example::

    {"description": "...", "sampler": {"max_completion_length": 6, "block_length": 6, "diffusion_steps": 6,
                                       "temperature": 0.0, "kv_cache": "dual", "confidence_threshold": 0.9, ...}}
"""

from __future__ import annotations

import json
from pathlib import Path

from rollouts.text_sampler import RECIPE_KEYS

SETTINGS_FILE = "unigrpo_sampler.json"
DESCRIPTION = ("Text-sampler settings of this model's held-out evaluation (unigrpo recipe keys); "
               "unigrpo generate uses them as its defaults.")


def evaluation_sampler_settings(args) -> dict:
    """The recipe's sampler options as its evaluation used them: ``temperature`` is ``eval_temperature``."""
    settings = {key: getattr(args, key) for key in RECIPE_KEYS.values()}
    settings["temperature"] = args.eval_temperature
    return settings


def save_sampler_settings(args, output_dir) -> None:
    """Write ``unigrpo_sampler.json`` into ``output_dir`` (the caller decides which process writes)."""
    path = Path(output_dir) / SETTINGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"description": DESCRIPTION, "sampler": evaluation_sampler_settings(args)},
                               indent=2) + "\n")


class SamplerSettingsSaveMixin:
    """``Trainer.save_model`` that also records the sampler settings beside the weights (main process only)."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False):
        super().save_model(output_dir, _internal_call=_internal_call)
        if self.args.should_save:
            save_sampler_settings(self.args, output_dir or self.args.output_dir)


def read_sampler_settings(model_dir) -> dict:
    """The recorded sampler options of a model folder ({} if it has none); a malformed file is one ValueError."""
    path = Path(model_dir) / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())["sampler"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a sampler-settings file ({type(error).__name__}: {error}); fix or delete it"
                         ) from None
    if not isinstance(settings, dict):
        raise ValueError(f"{path}: 'sampler' must be a mapping of sampler options, got {settings!r}")
    unknown = sorted(set(settings) - set(RECIPE_KEYS.values()))
    if unknown:
        raise ValueError(f"{path}: unknown sampler option(s) {unknown}; valid: {list(RECIPE_KEYS.values())}")
    return settings
