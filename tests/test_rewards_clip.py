"""rewards.clip: a tiny open_clip model from a custom config — call forms, batching, caching, errors, and a trained
tiny CLIP that prefers the text it was trained to match."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from rewards import call_reward, get_reward  # noqa: E402
from rewards import clip  # noqa: E402
from rewards.clip import clear_clip_cache, make_clip_score  # noqa: E402

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

# embed 32; ViT: 32 px image, 8 px patches, width 64, 2 layers; text: 16 tokens, width 64, 2 layers, default BPE vocab
TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
RED, BLUE = (220, 20, 20), (20, 20, 220)


def square(color, size=(40, 40)):
    return Image.new("RGB", size, color)


@pytest.fixture(scope="module")
def random_clip():
    torch.manual_seed(0)
    return make_clip_score(model_config=TINY, device="cpu")


@pytest.fixture(scope="module")
def trained_weights(tmp_path_factory):
    """The tiny CLIP trained (contrastive loss, Adam) on red ↔ "red", blue ↔ "blue"; saved as .pt and .safetensors."""
    import torch.nn.functional as F
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY}))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{folder}", device="cpu").train()
    preprocess = image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False)
    images = torch.stack([preprocess(square(RED)), preprocess(square(BLUE))])  # (2, 3, 32, 32)
    texts = open_clip.get_tokenizer(f"local-dir:{folder}")(["red", "blue"])  # (2, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    target = torch.arange(2)
    for _ in range(20):
        image_emb, text_emb, logit_scale = model(images, texts)
        logits = logit_scale * image_emb @ text_emb.T  # (2 images, 2 texts)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2  # both directions
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, folder / "tiny_clip.pt")
    save_file(state, str(folder / "tiny_clip.safetensors"))
    return folder


def test_import_needs_neither_torch_nor_open_clip():
    code = "import sys, rewards.clip; assert not {'torch', 'open_clip'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="weights_path=.*model_config=.*pretrained=.*allow_download=True"):
        make_clip_score()
    with pytest.raises(ValueError, match="allow_download=True"):
        make_clip_score(pretrained="laion2b_s34b_b79k")
    with pytest.raises(ValueError, match="is not a file"):
        make_clip_score(weights_path=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="not both"):
        make_clip_score(weights_path=__file__, pretrained="openai", allow_download=True)


def test_registered_reward_without_settings_names_the_variables(monkeypatch):
    for name in list(os.environ):
        if name.startswith(clip.ENV_PREFIX):
            monkeypatch.delenv(name)
    with pytest.raises(ValueError, match="UNIGRPO_CLIP_WEIGHTS_PATH"):
        get_reward("clip_score")(prompts=["red"], completions=[square(RED)])


def test_t2i_and_mmu_forms_give_finite_matching_scores(random_clip):
    image = square(RED)
    chat = [
        {"role": "system", "content": "You draw."},
        {"role": "user", "content": [{"type": "text", "text": "a red square"}]},
    ]
    t2i = random_clip(prompts=["a red square", chat], completions=[image] * 2)
    mmu = random_clip(
        prompts=["describe", "describe"],
        completions=["a red square", [{"role": "assistant", "content": "a red square"}]],
        image=[image, image],
    )
    assert all(isinstance(s, float) and math.isfinite(s) and abs(s) <= 100 for s in t2i + mmu)
    assert t2i[0] == pytest.approx(t2i[1], abs=1e-4)  # conversational prompt → its user text
    assert mmu == pytest.approx(t2i, abs=1e-4)  # same (image, text) pair either way round
    other = random_clip(prompts=["a blue circle"], completions=[image])
    assert other[0] != pytest.approx(t2i[0], abs=1e-3)  # the text matters


def test_not_applicable_rows_get_none(random_clip):
    scores = random_clip(
        prompts=["p"] * 4,
        completions=["a caption", "2 + 2 = 4", "no image here", square(BLUE)],
        image=[square(RED), square(RED), None, None],
        task=["mmu", "t2t", "mmu", "t2i"],
    )
    assert scores[1] is None and scores[2] is None
    assert isinstance(scores[0], float) and isinstance(scores[3], float)
    assert random_clip(prompts=["p"], completions=["text only"]) == [None]  # no image column at all
    assert random_clip(prompts=[], completions=[]) == []


def test_batched_equals_unbatched(random_clip):
    shared = square(RED, (48, 32))  # one mmu image shared by several answers, resized/cropped by the transform
    prompts = ["a red square", "q", "q", "a blue square", "q"]
    completions = [square(RED), "red", "blue", square(BLUE), "something long " * 20]
    images = [None, shared, shared, None, square(BLUE)]
    batched = make_clip_score(model_config=TINY, device="cpu", batch_size=2)
    together = batched(prompts=prompts, completions=completions, image=images)
    alone = [random_clip(prompts=[p], completions=[c], image=[i])[0] for p, c, i in zip(prompts, completions, images)]
    assert together == pytest.approx(alone, abs=1e-4)


def test_model_is_loaded_once(monkeypatch):
    clear_clip_cache()
    loads = []
    real_load = clip._load_clip
    monkeypatch.setattr(clip, "_load_clip", lambda *args: loads.append(args) or real_load(*args))
    first = make_clip_score(model_config=TINY, device="cpu")
    second = make_clip_score(model_config=TINY, device="cpu", scale=0.1)  # scale is not a model argument
    a = first(prompts=["red"], completions=[square(RED)])
    b = second(prompts=["red"], completions=[square(RED)])
    first(prompts=["blue"], completions=[square(BLUE)])
    assert len(loads) == 1
    assert first.load() is second.load()
    assert first.load().model is second.load().model
    assert b[0] == pytest.approx(0.1 * a[0], rel=1e-6)


@pytest.mark.parametrize("file_name", ["tiny_clip.pt", "tiny_clip.safetensors"])
def test_trained_clip_prefers_the_matching_text(trained_weights, file_name):
    score = make_clip_score(model_config=TINY, weights_path=trained_weights / file_name, device="cpu")
    red, blue = square(RED, (64, 48)), square(BLUE, (64, 48))
    red_red, red_blue, blue_blue, blue_red = score(
        prompts=["red", "blue", "blue", "red"], completions=[red, red, blue, blue]
    )
    assert red_red > red_blue + 10 and blue_blue > blue_red + 10
    mmu = score(prompts=["what colour?"] * 2, completions=["red", "blue"], image=[red, red])
    assert mmu == pytest.approx([red_red, red_blue], abs=1e-4)


def test_registered_reward_reads_its_settings_from_the_environment(monkeypatch, trained_weights):
    monkeypatch.setenv("UNIGRPO_CLIP_WEIGHTS_PATH", str(trained_weights / "tiny_clip.pt"))
    monkeypatch.setenv("UNIGRPO_CLIP_MODEL_CONFIG", json.dumps(TINY))
    monkeypatch.setenv("UNIGRPO_CLIP_DEVICE", "cpu")
    monkeypatch.setenv("UNIGRPO_CLIP_SCALE", "0.1")
    kwargs = dict(prompts=["red", "p"], completions=[square(RED), "2 + 2"], task=["t2i", "t2t"])
    registered = call_reward(get_reward("clip_score"), **kwargs)
    direct = make_clip_score(model_config=TINY, weights_path=trained_weights / "tiny_clip.pt", device="cpu")
    direct = direct(**kwargs)
    assert registered[1] is None and registered[0] == pytest.approx(0.1 * direct[0], rel=1e-6)


def test_registered_reward_is_built_once_per_setting(monkeypatch, trained_weights):
    """#16 item 15: the env-configured ``clip_score`` builds its reward once, not on every call."""
    import functools

    built = []

    @functools.wraps(make_clip_score)  # the same signature: the variables are read from it
    def counting_factory(**settings):
        built.append(settings)
        return make_clip_score(**settings)

    monkeypatch.setattr(clip, "make_clip_score", counting_factory)
    clip._clip_for.cache_clear()
    monkeypatch.setenv("UNIGRPO_CLIP_WEIGHTS_PATH", str(trained_weights / "tiny_clip.pt"))
    monkeypatch.setenv("UNIGRPO_CLIP_MODEL_CONFIG", json.dumps(TINY))
    monkeypatch.setenv("UNIGRPO_CLIP_DEVICE", "cpu")
    for _ in range(3):
        call_reward(get_reward("clip_score"), prompts=["red"], completions=[square(RED)])
    assert len(built) == 1
    monkeypatch.setenv("UNIGRPO_CLIP_SCALE", "0.5")  # another setting: another reward
    call_reward(get_reward("clip_score"), prompts=["red"], completions=[square(RED)])
    assert len(built) == 2


def test_reward_kwargs_build_clip_score_with_a_config_file(tmp_path, trained_weights):
    """A recipe's ``reward_kwargs: {clip_score: {...}}``: the same scores as ``make_clip_score`` itself, with
    ``model_config`` given as the path of open_clip's JSON config; a missing weights file is one clear error."""
    from unigrpo.rewarding import resolve_reward_funcs, reward_kwargs_problems

    (tmp_path / "config.json").write_text(json.dumps(TINY))
    settings = {"weights_path": str(trained_weights / "tiny_clip.pt"), "model_config": str(tmp_path / "config.json"),
                "device": "cpu"}
    (func,), names = resolve_reward_funcs(["clip_score"], {"clip_score": settings})
    kwargs = dict(prompts=["red", "blue"], completions=[square(RED), square(RED)])
    direct = make_clip_score(model_config=TINY, weights_path=trained_weights / "tiny_clip.pt", device="cpu")
    assert names == ["clip_score"] and call_reward(func, **kwargs) == pytest.approx(direct(**kwargs), abs=1e-5)
    missing = str(tmp_path / "nope.safetensors")
    assert reward_kwargs_problems(["clip_score"], {"clip_score": {"weights_path": missing}}) == [
        f"reward_kwargs: clip_score: make_clip_score: weights_path={missing!r} is not a file"]
