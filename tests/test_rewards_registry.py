"""rewards.registry: names, import paths, entry points, sync/async calls and output validation."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import asyncio  # noqa: E402
import importlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import rewards  # noqa: E402
from rewards import (  # noqa: E402
    call_reward,
    call_rewards_concurrently,
    completion_text,
    get_reward,
    list_rewards,
    register_reward,
)
from rewards import registry  # noqa: E402

BUILTIN = {"math_correctness", "think_format", "boxed_format"}
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(source)
    importlib.invalidate_caches()


LENGTH_REWARD = """
def length_reward(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]

NOT_CALLABLE = 3
"""


def test_builtin_rewards_are_registered():
    assert BUILTIN <= set(list_rewards())
    for name in BUILTIN:
        assert callable(get_reward(name))
    assert get_reward("rewards.format:boxed_format") is get_reward("boxed_format")


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown reward 'nope'") as error:
        get_reward("nope")
    assert all(name in str(error.value) for name in BUILTIN)


def test_import_paths(tmp_path, monkeypatch):
    write_module(tmp_path, "unigrpo_test_paths", LENGTH_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    by_colon = get_reward("unigrpo_test_paths:length_reward")
    assert get_reward("unigrpo_test_paths.length_reward") is by_colon
    assert call_reward(by_colon, prompts=["p", "p"], completions=["ab", "abcd"]) == [2.0, 4.0]
    with pytest.raises(ValueError, match="cannot be imported"):
        get_reward("no_such_package_xyz.module:fn")
    with pytest.raises(ValueError, match="cannot be imported"):
        get_reward("unigrpo_test_paths:missing")
    with pytest.raises(ValueError, match="not callable"):
        get_reward("unigrpo_test_paths:NOT_CALLABLE")


def test_entry_points_are_listed_without_loading_and_loaded_by_name(tmp_path, monkeypatch, isolated_registry):
    write_module(tmp_path, "unigrpo_test_ep", LENGTH_REWARD)
    dist = tmp_path / "unigrpo_test_ep-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: unigrpo-test-ep\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[unigrpo.rewards]\nep_length = unigrpo_test_ep:length_reward\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()

    assert "ep_length" in list_rewards()
    assert "unigrpo_test_ep" not in sys.modules  # listing does not import the package
    func = get_reward("ep_length")
    assert call_reward(func, prompts=["p"], completions=["abc"]) == [3.0]
    assert get_reward("ep_length") is func
    assert registry.reward_name(func) == "ep_length"  # the name that errors and metrics show


def test_register_reward(isolated_registry):
    @register_reward("test_const")
    def const(completions, **kwargs):
        return [1.0] * len(completions)

    assert get_reward("test_const") is const and "test_const" in list_rewards()
    register_reward("test_const")(const)  # the same function again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_const")(lambda **kwargs: [])
    replacement = register_reward("test_const", overwrite=True)(lambda completions, **kwargs: [0.0] * len(completions))
    assert get_reward("test_const") is replacement
    for bad in ("", "a:b", None):
        with pytest.raises(ValueError, match="reward name"):
            register_reward(bad)


@pytest.mark.parametrize(
    "output,message",
    [
        ([1.0, 2.0, 3.0], "reward 'bad' returned 3 values for 4 completions"),
        ([1.0, 2.0, float("nan"), 0.0], "reward 'bad' returned nan at index 2"),
        ([1.0, float("inf"), 2.0, 0.0], "returned inf at index 1"),
        (["abc", 1.0, 2.0, 3.0], r"reward 'bad' returned 'abc' \(str\) at index 0"),
        ([1.0, "2.0", 2.0, 3.0], r"returned '2.0' \(str\) at index 1"),
        ([1.0, 2.0, 3.0, [4.0]], r"\(list\) at index 3"),
        ([1.0, 2.0, 3.0, 1j], r"\(complex\) at index 3"),
        (3.0, "reward 'bad' returned float, expected a list of 4"),
        ("abcd", "returned str"),
        (None, "returned NoneType"),
    ],
)
def test_call_reward_validates_the_output(output, message):
    def bad(prompts, completions, **kwargs):
        return output

    with pytest.raises(ValueError, match=message):
        call_reward(bad, prompts=["p"] * 4, completions=["a", "b", "c", "d"])


def test_call_reward_normalises_valid_output():
    def ok(prompts, completions, **kwargs):
        return (1, None, True, 0.25)

    assert call_reward(ok, prompts=["p"] * 4, completions=["a"] * 4) == [1.0, None, 1.0, 0.25]
    with pytest.raises(TypeError, match="completions"):
        call_reward(ok, prompts=["p"])


def test_registered_name_is_used_in_errors(isolated_registry):
    @register_reward("test_named")
    def something_else(completions, **kwargs):
        return []

    with pytest.raises(ValueError, match="reward 'test_named' returned 0 values for 1 completions"):
        call_reward(something_else, prompts=["p"], completions=["c"])


def test_extra_columns_and_completion_ids_reach_the_reward():
    seen = {}

    def spy(prompts, completions, completion_ids, answer, **kwargs):
        seen.update(completion_ids=completion_ids, answer=answer, extra=kwargs)
        return [0.0]

    call_reward(spy, prompts=["p"], completions=["c"], completion_ids=[[1, 2]], answer=["4"], level=[3])
    assert seen == {"completion_ids": [[1, 2]], "answer": ["4"], "extra": {"level": [3]}}


async def slow_reward(prompts, completions, **kwargs):
    await asyncio.sleep(0.3)
    return [1.0] * len(completions)


def test_async_rewards():
    assert call_reward(slow_reward, prompts=["p"], completions=["c"]) == [1.0]

    async def inside_a_running_loop():  # e.g. a notebook: the coroutine runs on a private loop in a thread
        return call_reward(slow_reward, prompts=["p", "q"], completions=["c", "d"])

    assert asyncio.run(inside_a_running_loop()) == [1.0, 1.0]

    async def wrong(prompts, completions, **kwargs):
        return [float("nan")]

    with pytest.raises(ValueError, match="reward 'wrong' returned nan at index 0"):
        call_reward(wrong, prompts=["p"], completions=["c"])


def test_async_rewards_run_concurrently():
    def sync(prompts, completions, **kwargs):
        return [2.0] * len(completions)

    start = time.perf_counter()
    results = call_rewards_concurrently([slow_reward, sync, slow_reward, slow_reward], prompts=["p"], completions=["c"])
    assert results == [[1.0], [2.0], [1.0], [1.0]]
    assert time.perf_counter() - start < 0.8  # three 0.3 s sleeps overlap


def test_completion_text():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "\\boxed{3}"}]) == "\\boxed{3}"
    assert completion_text({"role": "assistant", "content": "x"}) == "x"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"text": "b"}]}]
    assert completion_text(parts) == "ab"
    assert completion_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([]) == ""
    with pytest.raises(TypeError, match="int"):
        completion_text(3)


def test_exports():
    for name in ("register_reward", "get_reward", "list_rewards", "call_reward", "completion_text"):
        assert callable(getattr(rewards, name))


def test_rewards_import_without_torch():
    code = (
        "import sys, rewards\n"
        "r = rewards.get_reward('math_correctness')\n"
        "assert r(prompts=['q'], completions=['\\\\boxed{12}'], answer=['12']) == [2.0]\n"
        "print(sorted(m for m in ('torch', 'sympy', 'math_verify') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"  # no torch; sympy/math-verify live only in the worker process
