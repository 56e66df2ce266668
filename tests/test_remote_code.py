"""Folders saved from a checkpoint that ships its own code (``auto_map`` + ``.py``, like the hub's LLaDA-8B-Instruct)
keep that code, so ``from_pretrained(folder, trust_remote_code=True)`` loads them where this library is not
installed: after a full fine-tune (final save and checkpoints) and after merging a LoRA adapter."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from datasets import Dataset

from unigrpo import UniGRPOConfig, UniGRPOTrainer
from unigrpo.models import init_tiny, load_model
from unigrpo.models.remote_code import auto_map_modules, remote_code_files

CODE_FILES = ["configuration_llada.py", "modeling_llada.py"]
AUTO_MAP = {"AutoConfig": "configuration_llada.LLaDAConfig", "AutoModel": "modeling_llada.LLaDAModelLM",
            "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM"}  # the hub's LLaDA-8B-Instruct names these

# Stand-ins for the published files: a config class and a model that, like the published LLaDAModelLM, reads
# every field of the published ModelConfig from the config (the keys of test_models.PUBLISHED_LLADA_CONFIG_KEYS)
# and holds the published parameter names. No forward: loading the state dict is what is checked.
STAND_IN_CONFIGURATION = '''
from transformers import PretrainedConfig

READ_KEYS = {keys!r}


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"
'''

STAND_IN_MODELING = '''
import torch
from torch import nn
from transformers import PreTrainedModel

from .configuration_llada import READ_KEYS, LLaDAConfig


class Norm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


def block(c):
    d, hd = c.d_model, c.d_model // c.n_heads
    linear = lambda i, o: nn.Linear(i, o, bias=False)
    return nn.ModuleDict(dict(
        attn_norm=Norm(d), q_proj=linear(d, d), k_proj=linear(d, c.n_kv_heads * hd),
        v_proj=linear(d, c.n_kv_heads * hd), attn_out=linear(d, d), ff_norm=Norm(d),
        ff_proj=linear(d, c.mlp_hidden_size), up_proj=linear(d, c.mlp_hidden_size),
        ff_out=linear(c.mlp_hidden_size, d)))


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"

    def __init__(self, config):
        super().__init__(config)
        fields = {{key: getattr(config, key) for key in READ_KEYS}}  # AttributeError on a missing key, as published
        self.model = nn.Module()
        self.model.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.embedding_size, config.d_model),
            blocks=nn.ModuleList(block(config) for _ in range(config.n_layers)),
            ln_f=Norm(config.d_model), ff_out=nn.Linear(config.d_model, config.embedding_size, bias=False)))
        self.post_init()

    def _init_weights(self, module):
        pass
'''

# Run where unigrpo is never imported: transformers knows `llada` only from the folder's own code.
LOAD_WITH_REMOTE_CODE = textwrap.dedent('''
    import json, sys
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    for folder in sys.argv[1:]:
        model, info = AutoModel.from_pretrained(folder, trust_remote_code=True, output_loading_info=True)
        saved = load_file(f"{folder}/model.safetensors")
        state = model.state_dict()
        print(json.dumps({"module": type(model).__module__, "problems": {k: list(v) for k, v in info.items() if v},
                          "same_keys": set(state) == set(saved),
                          "equal": all(torch.equal(state[k], saved[k].to(state[k].dtype)) for k in saved)}))
        assert "unigrpo" not in sys.modules
''')


@pytest.fixture
def code_checkpoint(tmp_path):
    """A micro LLaDA folder whose config.json has the hub's ``auto_map`` and which ships stand-in code files."""
    from test_models import PUBLISHED_LLADA_CONFIG_KEYS

    folder = init_tiny(tmp_path / "with-code", preset="micro")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": AUTO_MAP}, indent=2))
    (folder / "configuration_llada.py").write_text(STAND_IN_CONFIGURATION.format(keys=PUBLISHED_LLADA_CONFIG_KEYS))
    (folder / "modeling_llada.py").write_text(STAND_IN_MODELING.format())
    return folder


def answer_length(completions, **kwargs):
    return [float(len(c)) for c in completions]


def one_step_trainer(model_dir, output_dir, peft_config=None):
    args = UniGRPOConfig(
        output_dir=str(output_dir), num_generations=2, per_device_train_batch_size=4, max_completion_length=4,
        block_length=4, diffusion_steps=4, max_steps=1, save_strategy="steps", save_steps=1, report_to="none",
        disable_tqdm=True, seed=0, learning_rate=1e-2,
    )
    prompts = Dataset.from_list([{"prompt": f"q{i}="} for i in range(4)])
    return UniGRPOTrainer(str(model_dir), [answer_length], args, prompts, peft_config=peft_config)


def load_without_unigrpo(tmp_path, *folders) -> list[dict]:
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules")}  # where transformers puts the remote code
    out = subprocess.run([sys.executable, "-c", LOAD_WITH_REMOTE_CODE, *map(str, folders)], capture_output=True,
                         text=True, env=env, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def assert_keeps_code(folder):
    assert json.loads((folder / "config.json").read_text())["auto_map"] == AUTO_MAP
    for name in CODE_FILES:
        assert (folder / name).is_file(), f"{folder} lacks {name}"


def test_auto_map_names_its_modules_and_their_relative_imports(code_checkpoint):
    assert auto_map_modules({**AUTO_MAP, "AutoTokenizer": ["tok_slow.T", None], "AutoModelForMaskedLM":
                             "other/repo--modeling_x.M"}) == ["configuration_llada", "modeling_llada", "tok_slow"]
    assert [p.name for p in remote_code_files(code_checkpoint)] == CODE_FILES


def test_full_fine_tune_keeps_the_code_in_the_final_save_and_checkpoints(code_checkpoint, tmp_path):
    trainer = one_step_trainer(code_checkpoint, tmp_path / "out")
    trainer.train()
    trainer.save_model()  # what `unigrpo train` does at the end
    final, checkpoint = tmp_path / "out", tmp_path / "out" / "checkpoint-1"
    for folder in (final, checkpoint):
        assert_keeps_code(folder)
    loaded = load_without_unigrpo(tmp_path, final, checkpoint)
    assert [entry["module"].startswith("transformers_modules") for entry in loaded] == [True, True]
    assert all(entry == {**entry, "problems": {}, "same_keys": True, "equal": True} for entry in loaded), loaded


def test_merged_lora_adapter_keeps_the_code(code_checkpoint, tmp_path):
    from peft import LoraConfig

    trainer = one_step_trainer(code_checkpoint, tmp_path / "lora", LoraConfig(r=4, lora_alpha=8,
                                                                              init_lora_weights=False))
    trainer.train()
    trainer.save_model()
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    merged = load_model(tmp_path / "lora")  # an adapter folder loads as its base with the adapter merged
    merged.save_pretrained(tmp_path / "merged")
    assert_keeps_code(tmp_path / "merged")
    base = load_model(code_checkpoint)
    assert any(not p.equal(q) for p, q in zip(merged.parameters(), base.parameters()))  # the adapter is in it
    (loaded,) = load_without_unigrpo(tmp_path, tmp_path / "merged")
    assert loaded["module"].startswith("transformers_modules") and loaded["problems"] == {}
    assert loaded["same_keys"] and loaded["equal"]


def test_a_folder_without_auto_map_gets_no_code_files(tmp_path):
    folder = init_tiny(tmp_path / "plain", preset="micro")
    (folder / "stray.py").write_text("x = 1\n")  # not named by an auto_map: not the checkpoint's code
    load_model(folder).save_pretrained(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.py"))
