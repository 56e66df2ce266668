"""``image_reward``: ImageReward in its own environment, behind a worker process (issue #4 item 5).

The environment is the one ``unigrpo rewards setup image-reward`` makes (set up here if missing, as `make test`
does first). The model is ImageReward's real architecture (BLIP ViT-L/16 + BERT text encoder + MLP head) with random
weights, written offline from a BLIP text config and a small BERT vocabulary made here.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image, ImageDraw

from rewards import get_reward
from rewards.environments import (
    SPECS,
    environment_python,
    is_ready,
    requirements_for,
    setup_environment,
    torch_requirements,
)
from rewards.image_reward import (
    WORKER_SCRIPT,
    ImageRewardError,
    close_image_reward_workers,
    image_reward_settings_from_env,
    make_image_reward,
)

CAPTIONS = ["a red circle on blue", "a green square on white", "a red circle on blue"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789.,",
         "red", "green", "blue", "white", "circle", "square", "on", "a", "the", "##s"]
# BLIP's med_config.json keys (bert-base text encoder with cross-attention), made small: 1 layer, short positions.
MED_CONFIG = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 512,
              "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert",
              "num_attention_heads": 12, "num_hidden_layers": 1, "pad_token_id": 0, "type_vocab_size": 2,
              "vocab_size": len(VOCAB) + 2, "encoder_width": 768, "add_cross_attention": True}

# Runs in the image-reward environment: random ImageReward → ImageReward.pt (fp16), then the package's own
# ImageReward.score for each (caption, image) pair of the reloaded weights, printed as JSON.
WRITE_AND_SCORE = """
import importlib.util, json, torch
from PIL import Image
spec = importlib.util.spec_from_file_location("image_reward_worker", {worker_script!r})
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
import ImageReward.models.BLIP.blip_pretrain as blip_pretrain
blip_pretrain.init_tokenizer = lambda: worker.bert_tokenizer({folder!r})
from ImageReward.ImageReward import ImageReward
torch.manual_seed(0)
model = ImageReward(med_config={med_config!r}, device="cpu")
for p in model.mlp.parameters():  # the published init makes the head output ~0 for every input
    torch.nn.init.normal_(p, std=0.2)
state = {{k: v.half() for k, v in model.state_dict().items()}}
torch.save(state, {checkpoint!r})
model = worker.load_image_reward({checkpoint!r}, {med_config!r}, {folder!r}, "cpu")
with torch.no_grad():
    print(json.dumps([model.score(c, Image.open(p)) for c, p in zip({captions!r}, {images!r})]))
"""


def shape_image(colour, background, shape):
    image = Image.new("RGB", (64, 64), background)
    draw = ImageDraw.Draw(image)
    (draw.ellipse if shape == "circle" else draw.rectangle)((16, 16, 48, 48), fill=colour)
    return image


@pytest.fixture(scope="module")
def env_python():
    return setup_environment("image-reward", quiet=True)


@pytest.fixture(scope="module")
def images():
    return [shape_image("red", "blue", "circle"), shape_image("green", "white", "square"),
            shape_image("blue", "red", "square")]


@pytest.fixture(scope="module")
def checkpoint(env_python, images, tmp_path_factory):
    """(path of a random ImageReward.pt with med_config.json and vocab.txt beside it, package scores of CAPTIONS)."""
    folder = tmp_path_factory.mktemp("image_reward")
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (folder / "med_config.json").write_text(json.dumps(MED_CONFIG))
    paths = []
    for i, image in enumerate(images):
        paths.append(str(folder / f"image{i}.png"))
        image.save(paths[-1])
    script = WRITE_AND_SCORE.format(worker_script=str(WORKER_SCRIPT), folder=str(folder),
                                    med_config=str(folder / "med_config.json"),
                                    checkpoint=str(folder / "ImageReward.pt"), captions=CAPTIONS, images=paths)
    result = subprocess.run([str(env_python), "-I", "-c", script], capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    yield folder / "ImageReward.pt", json.loads(result.stdout.strip().splitlines()[-1])
    close_image_reward_workers()


def test_round_trip_matches_the_packages_own_score(checkpoint, env_python, images):
    path, package_scores = checkpoint
    reward = make_image_reward(path, python=env_python, batch_size=2)
    prompts = [[{"role": "user", "content": c}] for c in CAPTIONS] + ["2+2=", "a red circle"]
    completions = [*images, "4", images[0]]
    tasks = ["t2i", "t2i", "t2i", "t2t", "mmu"]
    scores = reward(prompts=prompts, completions=completions, task=tasks)

    assert scores[3] is None and scores[4] is None  # text answer; mmu row: ImageReward only scores t2i images
    assert all(math.isfinite(s) for s in scores[:3])
    assert scores[:3] == pytest.approx(package_scores, abs=1e-4)  # batched worker = ImageReward.score per pair
    assert len({round(s, 4) for s in scores[:3]}) == 3  # different (caption, image) pairs, different scores


def test_one_worker_serves_every_batch_size_and_a_dead_worker_restarts(checkpoint, env_python, images):
    path, package_scores = checkpoint
    one_at_a_time = make_image_reward(path, python=env_python, batch_size=1)
    first = one_at_a_time(prompts=CAPTIONS, completions=images)
    pid = one_at_a_time.worker().process.pid
    assert first == pytest.approx(package_scores, abs=1e-4)
    assert one_at_a_time(prompts=CAPTIONS[:1], completions=images[:1]) == pytest.approx(first[:1], abs=1e-6)
    assert one_at_a_time.worker().process.pid == pid  # reused, not reloaded
    assert make_image_reward(path, python=env_python, batch_size=3).worker() is one_at_a_time.worker()

    one_at_a_time.worker().process.kill()
    one_at_a_time.worker().process.wait()
    assert one_at_a_time(prompts=CAPTIONS, completions=images) == pytest.approx(first, abs=1e-6)
    assert one_at_a_time.worker().process.pid != pid


def test_registered_reward_reads_its_settings_from_the_environment(checkpoint, env_python, images, monkeypatch):
    path, package_scores = checkpoint
    monkeypatch.setenv("UNIGRPO_IMAGE_REWARD_CHECKPOINT", str(path))
    monkeypatch.setenv("UNIGRPO_IMAGE_REWARD_PYTHON", str(env_python))
    monkeypatch.setenv("UNIGRPO_IMAGE_REWARD_SCALE", "0.1")
    assert image_reward_settings_from_env()["scale"] == 0.1
    scores = get_reward("image_reward")(prompts=CAPTIONS[:2], completions=images[:2])
    assert scores == pytest.approx([0.1 * s for s in package_scores[:2]], abs=1e-5)


def test_bad_settings_fail_before_any_process_starts(checkpoint, tmp_path):
    path, _ = checkpoint
    with pytest.raises(ValueError, match="needs checkpoint"):
        make_image_reward(None)
    with pytest.raises(ValueError, match="is not a file"):
        make_image_reward(tmp_path / "missing.pt")
    (tmp_path / "alone.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="med_config.json"):
        make_image_reward(tmp_path / "alone.pt")
    with pytest.raises(ValueError, match="unigrpo rewards setup image-reward"):
        make_image_reward(path, python=tmp_path / "no-python")
    with pytest.raises(ValueError, match="batch_size"):
        make_image_reward(path, python=sys.executable, batch_size=0)


def test_a_worker_that_cannot_start_says_why(checkpoint, env_python, images, tmp_path):
    path, _ = checkpoint
    # The trainer's own interpreter has no ImageReward package: the worker dies at import.
    no_package = make_image_reward(path, python=sys.executable)
    with pytest.raises(ImageRewardError, match="No module named 'ImageReward'"):
        no_package(prompts=CAPTIONS[:1], completions=images[:1])

    corrupt = tmp_path / "ImageReward.pt"
    corrupt.write_text("not a checkpoint")
    for name in ("med_config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((path.parent / name).read_bytes())
    with pytest.raises(ImageRewardError, match="failed to load"):
        make_image_reward(corrupt, python=env_python)(prompts=CAPTIONS[:1], completions=images[:1])

    partial = tmp_path / "partial" / "ImageReward.pt"
    partial.parent.mkdir()
    for name in ("med_config.json", "vocab.txt"):
        (partial.parent / name).write_bytes((path.parent / name).read_bytes())
    torch.save({k: v for k, v in torch.load(path, weights_only=True).items() if k.startswith("mlp.")}, partial)
    with pytest.raises(ImageRewardError, match=r"lacks \d+ ImageReward tensors"):
        make_image_reward(partial, python=env_python)(prompts=CAPTIONS[:1], completions=images[:1])


def test_environment_pins_the_trainers_torch(tmp_path):
    import torchvision

    local = [f"torch=={torch.__version__}", f"torchvision=={torchvision.__version__}"]
    assert torch_requirements() == [pin.split("+")[0] for pin in local]  # the installed wheels, exactly
    requirements = requirements_for("image-reward")
    assert requirements[:2] == torch_requirements()
    assert "image-reward==1.5" in requirements and any(r.startswith("transformers") and "<=4.55.4" in r
                                                       for r in requirements)
    assert set(SPECS["image-reward"].requirements) <= set(requirements)
    assert not is_ready("image-reward", tmp_path / "nothing")
    assert environment_python("image-reward", tmp_path / "x") == tmp_path / "x" / "bin" / "python"
    with pytest.raises(ValueError, match="unknown reward environment"):
        requirements_for("image_reward2")


def test_cli_lists_rewards_and_refuses_unknown_environments(capsys):
    from unigrpo.cli import main

    assert main(["rewards", "list"]) == 0
    assert "image_reward" in capsys.readouterr().out.split()
    assert main(["rewards", "setup", "no-such-env"]) == 2
    assert "unknown reward environment" in capsys.readouterr().err


def test_the_environment_shares_the_trainers_torch_by_links_not_a_copy(tmp_path):
    """The reward environment finds the trainer's torch, torchvision and CUDA libraries through one folder of links
    (no second multi-GB copy), but none of the trainer's other packages (its transformers stays the reward's own);
    removing the environment leaves the trainer's torch alone."""
    import shutil
    import venv

    from rewards.environments import SHARED, share_trainer_torch, shared_distributions

    assert {"torch", "torchvision"} <= set(shared_distributions())
    assert not {"transformers", "numpy", "pillow", "sympy"} & set(shared_distributions())
    root = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / "bin" / "python"
    assert share_trainer_torch(root, python) >= 4  # at least torch, torchvision and their .dist-info
    assert all(p.is_symlink() for p in (root / SHARED).iterdir())
    probe = ("import importlib.metadata as m, importlib.util as u; "
             "print(m.version('torch'), m.version('torchvision'), u.find_spec('torch').origin, "
             "u.find_spec('transformers') is None)")
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    import torchvision

    assert out[:2] == [torch.__version__.split("+")[0], torchvision.__version__.split("+")[0]]
    assert out[2] == str(root / SHARED / "torch" / "__init__.py") and out[3] == "True"
    shutil.rmtree(root)
    assert os.path.exists(torch.__file__)


def test_setup_prints_one_line_per_stage_and_keeps_pips_output_in_a_log(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from rewards import environments
    from rewards.environments import EnvironmentSpec, RewardEnvironmentError

    monkeypatch.setitem(environments.SPECS, "plain", EnvironmentSpec(requirements=("pip",), with_torch=False,
                                                                     check_import="json"))
    python = setup_environment("plain", tmp_path / "plain")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("]")[0] for line in lines[:-1]] == ["unigrpo: plain [1/3", "unigrpo: plain [2/3",
                                                           "unigrpo: plain [3/3"]
    assert lines[-1] == f"unigrpo: plain ready: {python}" and is_ready("plain", tmp_path / "plain")
    assert "Requirement already satisfied: pip" in (tmp_path / "plain" / "setup.log").read_text()  # pip: in the log
    # a stage that fails: its error names the log and ends with the log's last lines (the same venv, not remade)
    monkeypatch.setitem(environments.SPECS, "broken", EnvironmentSpec(requirements=("pip",), with_torch=False,
                                                                      check_import="no_such_module_here"))
    monkeypatch.setattr(environments.venv, "EnvBuilder", lambda **kwargs: SimpleNamespace(create=lambda root: None))
    with pytest.raises(RewardEnvironmentError, match=r"(?s)importing no_such_module_here failed .*setup\.log.*"
                                                     r"No module named 'no_such_module_here'"):
        setup_environment("broken", tmp_path / "plain", force=True, quiet=True)
    assert capsys.readouterr().out == "" and not is_ready("broken", tmp_path / "plain")


def test_a_torch_index_gives_the_environment_its_own_torch_of_the_trainers_version(tmp_path, monkeypatch, capsys):
    """With ``torch_index_url`` (e.g. CPU wheels) torch and torchvision come from that index, pinned to the trainer's
    versions, before the reward's packages; nothing is linked. (The pip stages are recorded here, not run.)"""
    import venv

    from rewards import environments

    commands = []
    monkeypatch.setattr(environments, "_run_stage", lambda command, log, what: commands.append(command))
    builder = venv.EnvBuilder
    monkeypatch.setattr(environments.venv, "EnvBuilder", lambda **kwargs: builder(with_pip=False))  # no pip needed
    monkeypatch.setenv("UNIGRPO_TORCH_INDEX_URL", "https://download.pytorch.org/whl/cpu")
    setup_environment("image-reward", tmp_path / "env")
    index, install, check = commands
    assert index[-4:] == ["--index-url", "https://download.pytorch.org/whl/cpu", *torch_requirements()]
    assert install[-len(requirements_for("image-reward")):] == requirements_for("image-reward")
    assert check[-2:] == ["-c", "import ImageReward"]
    assert not (tmp_path / "env" / environments.SHARED).exists()
    assert "[2/4] installing torch==" in capsys.readouterr().out
    assert json.loads((tmp_path / "env" / environments.MARKER).read_text())["torch"].endswith("/whl/cpu")
