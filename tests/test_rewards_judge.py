"""rewards.judge against a small OpenAI-compatible server on 127.0.0.1 that stands in for ``vllm serve``.

All traffic goes to 127.0.0.1; every delay is under a second and is cut short when the server stops.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import asyncio  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from fake_openai_server import FakeOpenAIServer, Reply, free_port, message_text  # noqa: E402

from rewards import call_reward, call_rewards_concurrently, get_reward  # noqa: E402
from rewards import judge as judge_module  # noqa: E402
from rewards.judge import (  # noqa: E402
    DEFAULT_RUBRIC,
    JudgeError,
    make_judge,
    parse_score,
    rubric_fields,
    scale_score,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RUBRIC = "Task: {prompt}\nReference: {answer}\n<response>{completion}</response>\nScore {min_score}-{max_score}."


def length_score(body, index):
    """The fake judge: score = length of the response text mod 11, stated as MT-Bench would."""
    response = re.search(r"<response>(.*)</response>", message_text(body), re.S).group(1)
    return f"The response has {len(response)} characters.\nRating: [[{len(response) % 11}]]"


@pytest.fixture
def server():
    with FakeOpenAIServer(length_score) as s:
        yield s


def judge_for(server, **kwargs):
    settings = dict(model=server.model, rubric=RUBRIC, backoff_s=0.01, timeout_s=5.0)
    return make_judge(server.url, **{**settings, **kwargs})


def score(judge, completions, prompts=None, **columns):
    prompts = prompts or [f"q{i}" for i in range(len(completions))]
    columns.setdefault("answer", [f"ref{i}" for i in range(len(completions))])
    return call_reward(judge, prompts=prompts, completions=completions, **columns)


# ---- parsing and scaling ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply,expected",
    [
        ("Score: 7", 7.0),
        ("score = 3.5", 3.5),
        ("**Score:** 8", 8.0),
        ("Final rating: **9**/10", 9.0),
        ("Score: 2 at first... after checking, Score: 6", 6.0),  # the last one counts
        ("Rating: [[4]] (Score: 9 was a typo)", 4.0),  # [[N]] wins over Score: N
        ("[[1]] then [[10]]", 10.0),
        ("7", 7.0),
        (" 7/10. ", 7.0),
        ("**6**", 6.0),
        ("Score: -2", -2.0),
        ("<think>Score: 1? no.</think>Score: 9", 9.0),  # thinking is ignored
        ("<think>maybe Score: 8", None),  # cut off while thinking
        ("The response is fine, I give it 7 out of 10", None),  # a number in prose is not a score
        ("Score: high", None),
        ("", None),
        (None, None),
        ("scores: 7", None),  # "scores" is not the label
    ],
)
def test_parse_score(reply, expected):
    assert parse_score(reply) == expected


def test_scale_score_clamps_and_normalises():
    assert scale_score(7, (0, 10), True) == pytest.approx(0.7)
    assert scale_score(15, (0, 10), True) == 1.0
    assert scale_score(-3, (0, 10), True) == 0.0
    assert scale_score(3, (1, 5), True) == pytest.approx(0.5)
    assert scale_score(15, (0, 10), False) == 10.0


def test_parse_score_is_linear_on_hostile_replies():
    start = time.perf_counter()
    for reply in ("score:" + " " * 200_000, "[[" + " " * 200_000, "Score: *" + " " * 200_000 + "x", "1" * 200_000):
        parse_score(reply)
    assert time.perf_counter() - start < 1.0


# ---- the rubric -------------------------------------------------------------------------------------------------


def test_rubric_fields_are_plain_names():
    assert rubric_fields(DEFAULT_RUBRIC) == ("prompt", "completion", "min_score", "max_score")
    assert rubric_fields("{answer} {{literal}} {prompt} {answer}") == ("answer", "prompt")
    for bad in ("{prompt.__class__}", "{answer[0]}", "{completion!r}", "{prompt:>10}", "{}", "{0}", "a } b", ""):
        with pytest.raises(ValueError, match="rubric"):
            rubric_fields(bad)


def test_make_judge_validates_its_arguments():
    for kwargs in (dict(base_url="file:///etc/passwd"), dict(base_url="127.0.0.1:8000"), dict(score_range=(5, 5)),
                   dict(score_range=(0, float("inf"))), dict(on_error="skip"), dict(max_concurrency=0),
                   dict(timeout_s=0), dict(max_retries=-1), dict(rubric="{prompt.__globals__}")):
        with pytest.raises(ValueError):
            make_judge(**kwargs)
    assert make_judge("http://h:1/v1/chat/completions/").url == "http://h:1/v1/chat/completions"


# ---- scoring against the server ---------------------------------------------------------------------------------


def test_scores_follow_the_server_and_the_rubric_is_filled(server):
    judge = judge_for(server, temperature=0.0, max_tokens=64)
    completions = ["abc", "x" * 12, [{"role": "assistant", "content": "{answer} {prompt.__class__} {0}"}], ""]
    values = score(judge, completions, prompts=["What is 2+2?", "p1", [{"role": "user", "content": "chat q"}], "p3"],
                   answer=["4", 5, None, "r3"])
    texts = ["abc", "x" * 12, "{answer} {prompt.__class__} {0}", ""]
    assert values == pytest.approx([len(t) % 11 / 10 for t in texts])
    assert judge.stats.scored == 4 and judge.stats.requests == 4 and judge.stats.unparseable == 0

    sent = {message_text(r.body): r.body for r in server.chat_requests}
    assert len(sent) == 4
    first = sent["Task: What is 2+2?\nReference: 4\n<response>abc</response>\nScore 0-10."]
    assert first["model"] == "fake-judge" and first["temperature"] == 0.0 and first["max_tokens"] == 64
    assert first["messages"] == [{"role": "user", "content": message_text(first)}]
    assert "Task: p1\nReference: 5\n<response>xxxxxxxxxxxx</response>\nScore 0-10." in sent
    # an untrusted completion is substituted verbatim, never formatted itself
    assert "Task: chat q\nReference: \n<response>{answer} {prompt.__class__} {0}</response>\nScore 0-10." in sent
    assert all(r.path == "/v1/chat/completions" and r.method == "POST" for r in server.chat_requests)


def test_raw_scale_clamped_and_unparseable_is_none():
    replies = {"a": "Score: 15", "bb": "[[-2]]", "ccc": "I cannot grade this.", "dddd": "Score: 3.5"}

    def reply(body, index):
        return replies[re.search(r"<response>(.*)</response>", message_text(body)).group(1)]

    with FakeOpenAIServer(reply) as server:
        judge = judge_for(server, normalise=False)
        assert score(judge, list(replies)) == [10.0, 0.0, None, 3.5]
        assert judge.stats.unparseable == 1 and judge.stats.scored == 3 and judge.stats.errors == 0
        assert score(judge_for(server, score_range=(1, 5)), ["dddd"]) == [pytest.approx(0.625)]


def test_requests_run_concurrently_and_bounded():
    delay = 0.4
    with FakeOpenAIServer(lambda body, i: Reply("Score: 5", delay_s=delay)) as server:
        assert score(judge_for(server, max_concurrency=8), ["c"] * 8) == [0.5] * 8
        assert server.max_in_flight == 8  # all eight were in the server at once

    with FakeOpenAIServer(lambda body, i: Reply("Score: 5", delay_s=0.2)) as server:
        start = time.monotonic()
        assert score(judge_for(server, max_concurrency=2), ["c"] * 6) == [0.5] * 6
        assert time.monotonic() - start >= 3 * 0.2  # three waves of two
        assert server.max_in_flight == 2


def test_timeout_then_retry_succeeds():
    # the first request outlives the timeout; the retry is answered at once
    with FakeOpenAIServer(lambda body, i: Reply("Score: 3", delay_s=1.5 if i == 0 else 0.0)) as server:
        judge = judge_for(server, timeout_s=0.25, max_retries=2)
        start = time.monotonic()
        assert score(judge, ["c"]) == [pytest.approx(0.3)]
        assert time.monotonic() - start < 1.2  # did not wait for the slow reply
        assert len(server.chat_requests) == 2
        assert judge.stats.retries == 1 and judge.stats.requests == 2


def test_timeouts_exhaust_the_retries_with_an_error_naming_the_url():
    with FakeOpenAIServer(lambda body, i: Reply("Score: 3", delay_s=0.8)) as server:
        judge = judge_for(server, timeout_s=0.15, max_retries=1)
        with pytest.raises(JudgeError, match=re.escape(server.url + "/chat/completions") + ".*2 attempt.*timed out"):
            score(judge, ["c"])
        assert len(server.chat_requests) == 2


def test_server_errors_are_retried_client_errors_are_not():
    with FakeOpenAIServer(lambda body, i: Reply("Score: 10") if i >= 2 else Reply(status=503)) as server:
        judge = judge_for(server, max_retries=2)
        assert score(judge, ["c"]) == [1.0]
        assert judge.stats.retries == 2

    with FakeOpenAIServer(lambda body, i: Reply(status=404)) as server:
        with pytest.raises(JudgeError, match=re.escape(server.url) + ".*HTTP 404: fake error 404"):
            score(judge_for(server, max_retries=3), ["c"])
        assert len(server.chat_requests) == 1  # retrying cannot fix a bad model name

    with FakeOpenAIServer(lambda body, i: Reply(raw=b"<html>proxy error</html>")) as server:
        with pytest.raises(JudgeError, match="not JSON"):
            score(judge_for(server, max_retries=1), ["c"])
        assert len(server.chat_requests) == 2


def test_redirects_are_not_followed():
    elsewhere = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    with FakeOpenAIServer(lambda body, i: Reply(status=307, raw=b"", headers={"Location": elsewhere})) as server:
        with pytest.raises(JudgeError, match="HTTP 307"):
            score(judge_for(server), ["c"])


def test_server_down_raises_naming_the_url_or_gives_none():
    url = f"http://127.0.0.1:{free_port()}/v1"
    judge = make_judge(url, model="m", rubric=RUBRIC, max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(JudgeError, match=re.escape(url + "/chat/completions") + ".*cannot connect"):
        score(judge, ["a", "b"])

    quiet = make_judge(url, model="m", rubric=RUBRIC, max_retries=1, backoff_s=0.01, on_error="none")
    assert score(quiet, ["a", "b"]) == [None, None]
    assert quiet.stats.errors == 2 and quiet.stats.retries == 2

    unknown = make_judge(url, rubric=RUBRIC, max_retries=0, on_error="none")  # model discovery fails too
    assert score(unknown, ["a", "b", "c"]) == [None, None, None] and unknown.stats.errors == 3


def test_on_error_none_keeps_the_samples_that_succeed():
    def reply(body, index):
        text = message_text(body)
        return Reply(status=500) if "<response>bad</response>" in text else "Score: 8"

    with FakeOpenAIServer(reply) as server:
        judge = judge_for(server, max_retries=1, on_error="none")
        assert score(judge, ["good", "bad", "good"]) == [pytest.approx(0.8), None, pytest.approx(0.8)]
        assert judge.stats.errors == 1 and judge.stats.scored == 2
        with pytest.raises(JudgeError, match="HTTP 500"):
            score(judge_for(server, max_retries=0), ["good", "bad"])


def test_model_is_discovered_once_and_key_is_sent(server, monkeypatch):
    monkeypatch.setenv("UNIGRPO_JUDGE_API_KEY", "s3cret-key")
    judge = judge_for(server, model=None)
    score(judge, ["a", "b"])
    score(judge, ["c"])
    gets = [r for r in server.requests if r.method == "GET"]
    assert [r.path for r in gets] == ["/v1/models"]
    assert all(r.body["model"] == "fake-judge" for r in server.chat_requests)
    assert all(r.headers["Authorization"] == "Bearer s3cret-key" for r in server.requests)


def test_a_missing_rubric_column_fails_before_any_request(server):
    judge = judge_for(server)
    with pytest.raises(ValueError, match=r"\{answer\}.*columns given: \['solution'\]"):
        call_reward(judge, prompts=["q"], completions=["c"], solution=["4"])
    assert server.requests == []
    assert call_reward(judge, prompts=[], completions=[], answer=[]) == []


def test_images_are_attached_for_a_vlm_judge(server):
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.new("RGB", (4, 4), (255, 0, 0))
    judge = judge_for(server, rubric="{prompt}<response>{completion}</response>")
    assert score(judge, [image], prompts=["a red square"]) == [len("[the attached image]") % 11 / 10]
    content = server.chat_requests[0].body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["text", "image_url"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


# ---- the registered reward and the registry ---------------------------------------------------------------------


def test_registered_judge_is_configured_by_the_environment(server, tmp_path, monkeypatch):
    (tmp_path / "rubric.txt").write_text(RUBRIC)
    monkeypatch.setenv("UNIGRPO_JUDGE_BASE_URL", server.url)
    monkeypatch.setenv("UNIGRPO_JUDGE_MODEL", server.model)
    monkeypatch.setenv("UNIGRPO_JUDGE_RUBRIC_FILE", str(tmp_path / "rubric.txt"))
    monkeypatch.setenv("UNIGRPO_JUDGE_SCORE_RANGE", "0,5")
    monkeypatch.setenv("UNIGRPO_JUDGE_NORMALISE", "false")
    judge = get_reward("judge")
    assert judge is judge_module.judge
    assert score(judge, ["abc", "abcdefg"]) == [3.0, 5.0]  # 7 % 11 = 7, clamped to 5
    assert judge_module.judge_from_env().stats.scored == 2


def test_runs_concurrently_with_other_async_rewards():
    with FakeOpenAIServer(lambda body, i: Reply("Score: 4", delay_s=0.4)) as server:
        first, second = judge_for(server), judge_for(server, score_range=(0, 4))
        start = time.monotonic()
        values = call_rewards_concurrently([first, second], prompts=["q"] * 3, completions=["a"] * 3,
                                           answer=["r"] * 3)
        assert values == [[pytest.approx(0.4)] * 3, [1.0] * 3]
        assert time.monotonic() - start < 3 * 0.4  # one by one: 6 × 0.4 s
        assert server.max_in_flight == 6


def test_awaitable_inside_a_running_loop(server):
    async def main():
        return await judge_for(server)(prompts=["q"], completions=["abcd"], answer=["r"])

    assert asyncio.run(main()) == [pytest.approx(0.4)]


def test_imports_neither_torch_nor_openai():
    code = "import sys, rewards.judge; print(sorted({'torch', 'openai', 'aiohttp'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
