"""unigrpo/sampler_settings.py: the sampler settings saved next to a model, read back as generate's defaults."""

import json
from pathlib import Path

import pytest

from rollouts import RECIPE_KEYS
from unigrpo.config import SamplingArguments
from unigrpo.sampler_settings import (SETTINGS_FILE, SamplerSettingsSaveMixin, read_sampler_settings,
                                      save_sampler_settings)


def test_saved_settings_are_the_evaluation_sampler_under_recipe_keys(tmp_path):
    args = SamplingArguments(max_completion_length=6, block_length=6, diffusion_steps=6, temperature=1.0,
                             eval_temperature=0.0)
    save_sampler_settings(args, tmp_path)
    settings = read_sampler_settings(tmp_path)
    assert set(settings) == set(RECIPE_KEYS.values())
    assert (settings["max_completion_length"], settings["diffusion_steps"], settings["kv_cache"]) == (6, 6, "dual")
    assert settings["temperature"] == 0.0  # the evaluation's temperature, not the rollouts' 1.0


class StandInTrainer:
    def __init__(self, output_dir, should_save):
        self.args = SamplingArguments(max_completion_length=6, block_length=6, diffusion_steps=6)
        self.args.output_dir, self.args.should_save = str(output_dir), should_save
        self.saved_to = None

    def save_model(self, output_dir=None, _internal_call=False):
        self.saved_to = output_dir


class Saving(SamplerSettingsSaveMixin, StandInTrainer):
    pass


@pytest.mark.parametrize("should_save", [True, False])
def test_save_model_writes_the_settings_beside_the_weights_on_the_saving_process_only(tmp_path, should_save):
    trainer = Saving(tmp_path / "out", should_save)
    trainer.save_model(str(tmp_path / "checkpoint-5"), _internal_call=True)  # a checkpoint: its own folder
    assert trainer.saved_to == str(tmp_path / "checkpoint-5")
    assert read_sampler_settings(tmp_path / "checkpoint-5").get("max_completion_length") == (6 if should_save else None)
    trainer.save_model()  # the final save: output_dir
    assert (tmp_path / "out" / SETTINGS_FILE).is_file() == should_save


@pytest.mark.parametrize("text,message", [
    ("{not json", "not a sampler-settings file"),
    ('{"other": 1}', "not a sampler-settings file"),
    ('{"sampler": [6]}', "'sampler' must be a mapping"),
    ('{"sampler": {"gen_length": 6}}', r"unknown sampler option\(s\) \['gen_length'\]"),
])
def test_a_malformed_file_is_one_error_naming_it(tmp_path, text, message):
    (tmp_path / SETTINGS_FILE).write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        read_sampler_settings(tmp_path)
    assert str(tmp_path / SETTINGS_FILE) in str(error.value)


def test_the_shipped_tiny_model_records_the_demo_recipes_settings():
    import yaml

    from unigrpo.models import resolve_model_path

    recipe = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny-arith.yaml").read_text())
    settings = json.loads((resolve_model_path("tiny-arith-sft") / SETTINGS_FILE).read_text())["sampler"]
    for key in ("max_completion_length", "block_length", "diffusion_steps", "kv_cache", "confidence_threshold"):
        assert settings[key] == recipe[key], key
    assert settings["temperature"] == recipe["eval_temperature"]
