"""``judge``: an LLM/VLM-as-judge reward over an OpenAI-compatible chat endpoint — what ``vllm serve`` exposes
(issue #4 item 6; docs/design.md §6).

Per completion, the rubric template is filled with ``{prompt}``, ``{completion}``, ``{min_score}``,
``{max_score}`` and any dataset column (``{answer}``), sent as one user message to
``POST {base_url}/chat/completions``, and the score is parsed from the reply. Requests run concurrently, at most
``max_concurrency`` at a time, each in a worker thread (``urllib``: the standard library only — no ``openai``,
no ``aiohttp``, no torch).

Score rule (``parse_score``), applied to the reply's content after its last ``</think>`` (a reply with an unclosed
``<think>`` has no score):
  1. the last ``[[N]]`` (MT-Bench style); else
  2. the last ``Score: N`` or ``Rating: N`` (any case, ``:`` or ``=``, markdown bold allowed: ``**Score:** 7``,
     ``Score: 7/10`` → 7); else
  3. the whole reply is one number (``7``, ``7.5``, ``7/10``);
  else ``None`` — not applicable for that sample, counted in ``stats.unparseable``. N is clamped to
  ``score_range`` and, with ``normalise=True``, mapped linearly to [0, 1].

Failures: connection errors, timeouts, HTTP 408/429/5xx and replies that are not JSON are retried with exponential
backoff (``backoff_s`` · 2^k, jittered) up to ``max_retries`` times; other HTTP errors (400 bad request, 401 bad key,
404 unknown model) are not. Then ``on_error="raise"`` (default) raises ``JudgeError`` naming the URL — the trainer's
``reward_errors`` policy decides what happens to the step — and ``on_error="none"`` returns ``None`` for that
sample, counted in ``stats.errors``.

Safety: completions are untrusted. They are substituted as plain values into the (trusted) rubric, whose fields
must be plain names — no attribute or index access, no conversions — and are never formatted or evaluated
themselves. Requests go to ``base_url`` only: http(s) only, proxies from the environment ignored, redirects not
followed. The API key (``api_key`` or ``UNIGRPO_JUDGE_API_KEY``) is sent as a bearer token and never printed.

The registered ``judge`` is built by ``make_judge`` with the recipe's ``reward_kwargs: {judge: {base_url: ...}}``;
without them it takes its arguments from ``UNIGRPO_JUDGE_<ARGUMENT>`` variables (see ``judge_settings_from_env``).
Keep the API key out of recipes: ``UNIGRPO_JUDGE_API_KEY`` is read whenever ``api_key`` is not given. From Python,
pass ``make_judge(...)`` itself as a reward function. See docs/judge.md for pointing it at ``vllm serve``.

A judge says ``preflight = False``: the trainer's pre-flight call (empty answers, before any model work) does not
send it requests that a paid endpoint would bill for, or that fail before step 1 when its server is down.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import math
import os
import re
import string
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from .inputs import is_pil_image, parse_flag, settings_from_env
from .judge_http import JudgeError, JudgeStats, http_json, reply_content, request_with_retries
from .registry import completion_text, register_reward

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
API_KEY_ENV = "UNIGRPO_JUDGE_API_KEY"
ENV_PREFIX = "UNIGRPO_JUDGE_"
ON_ERROR = ("raise", "none")
BUILTIN_FIELDS = ("prompt", "completion", "min_score", "max_score")
IMAGE_PLACEHOLDER = "[the attached image]"

DEFAULT_RUBRIC = """You are an impartial judge. Rate the response to the task below: is it correct, complete and \
clearly written?

[Task]
{prompt}

[Response]
{completion}

Explain briefly, then end your reply with a line "Score: N", where N is an integer from {min_score} (worst) to \
{max_score} (best)."""

REFERENCE_RUBRIC = """You are an impartial judge. Compare the response to the task below with the reference answer: \
is its final answer equivalent to the reference, and is the reasoning sound?

[Task]
{prompt}

[Reference answer]
{answer}

[Response]
{completion}

Explain briefly, then end your reply with a line "Score: N", where N is an integer from {min_score} (wrong) to \
{max_score} (correct, well argued)."""


# ---- the score --------------------------------------------------------------------------------------------------

_NUMBER = r"([-+]?\d+(?:\.\d+)?)"
_BRACKETED = re.compile(r"\[\[\s*" + _NUMBER + r"\s*\]\]")
_LABELLED = re.compile(r"\b(?:score|rating)\**\s*[:=]\s*(?:\*+\s*)?" + _NUMBER, re.IGNORECASE)
_BARE = re.compile(_NUMBER + r"(?:\s*/\s*\d+(?:\.\d+)?)?\.?")


def parse_score(reply: str | None) -> float | None:
    """The judge's score in its reply (the rule is in the module docstring), or None if there is none."""
    if not reply:
        return None
    if "</think>" in reply:
        reply = reply.rpartition("</think>")[2]
    elif "<think>" in reply:
        return None  # cut off while thinking: any number in there is a draft
    for pattern in (_BRACKETED, _LABELLED):
        match = None
        for match in pattern.finditer(reply):
            pass
        if match is not None:
            return _finite(match.group(1))
    match = _BARE.fullmatch(reply.strip().strip("*").strip())
    return None if match is None else _finite(match.group(1))


def _finite(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None


def scale_score(raw: float, score_range: tuple[float, float], normalise: bool) -> float:
    """Clamp to [lo, hi]; with ``normalise``, (raw − lo) / (hi − lo) ∈ [0, 1]."""
    lo, hi = score_range
    value = min(max(raw, lo), hi)
    return (value - lo) / (hi - lo) if normalise else value


# ---- the rubric -------------------------------------------------------------------------------------------------


def rubric_fields(rubric: str) -> tuple[str, ...]:
    """The ``{name}`` fields of a rubric. Only plain names are allowed, so values are substituted, never formatted."""
    if not isinstance(rubric, str) or not rubric.strip():
        raise ValueError(f"rubric must be a non-empty template string, got {rubric!r}")
    hint = "fields are plain names like {prompt}, {completion} or {answer}; write literal braces as {{ and }}"
    try:
        parsed = list(string.Formatter().parse(rubric))
    except ValueError as error:
        raise ValueError(f"rubric is not a valid template ({error}); {hint}") from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            bad = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
            raise ValueError(f"rubric field {bad} is not allowed: {hint}")
        fields.append(name)
    return tuple(dict.fromkeys(fields))


def prompt_text(prompt) -> str:
    """A prompt as the judge reads it: the text, or a conversation as ``role: content`` paragraphs."""
    if prompt is None or isinstance(prompt, str):
        return prompt or ""
    if isinstance(prompt, dict):
        prompt = [prompt]
    if isinstance(prompt, (list, tuple)) and all(isinstance(m, dict) for m in prompt):
        turns = [(m.get("role", "user"), completion_text([{**m, "role": "assistant"}])) for m in prompt]
        if len(turns) == 1:
            return turns[0][1]
        return "\n\n".join(f"{role}: {text}" for role, text in turns)
    return str(prompt)


def _value_text(value) -> str:
    if value is None:
        return ""
    if is_pil_image(value):
        return IMAGE_PLACEHOLDER
    return value if isinstance(value, str) else str(value)


def _image_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def judge_messages(rubric: str, values: dict[str, str], images: list, system_prompt: str | None) -> list[dict]:
    """The chat messages for one sample: the filled rubric, with any images attached as ``image_url`` parts."""
    text = rubric.format_map(values)  # values are str; fields were checked to be plain names
    content = text if not images else [{"type": "text", "text": text}] + [
        {"type": "image_url", "image_url": {"url": _image_url(image)}} for image in images
    ]
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": content}]


# ---- the reward -------------------------------------------------------------------------------------------------


def _check_base_url(base_url: str) -> str:
    if not isinstance(base_url, str):
        raise ValueError(f"base_url must be a URL string, got {base_url!r}")
    base_url = base_url.strip().rstrip("/")
    base_url = base_url.removesuffix("/chat/completions")
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url!r}")
    return base_url


def _check_settings(score_range, timeout_s, max_retries, backoff_s, max_concurrency, temperature, max_tokens,
                    on_error) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in score_range)
    except (TypeError, ValueError):
        raise ValueError(f"score_range must be two numbers (lo, hi), got {score_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"score_range must be finite with lo < hi, got {score_range!r}")
    number, integer = (int, float), int
    for name, value, least, kind in (("timeout_s", timeout_s, 0, number), ("backoff_s", backoff_s, 0, number),
                                     ("temperature", temperature, 0, number), ("max_retries", max_retries, 0, integer),
                                     ("max_concurrency", max_concurrency, 1, integer),
                                     ("max_tokens", max_tokens, 1, integer)):
        strict = name == "timeout_s"
        if not isinstance(value, kind) or isinstance(value, bool) or not (
                (least < value if strict else least <= value) and value < math.inf):
            what = "an integer" if kind is integer else "a number"
            raise ValueError(f"{name} must be {what} {'>' if strict else '≥'} {least}, got {value!r}")
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error={on_error!r}; valid: {list(ON_ERROR)}")
    return lo, hi


def _number_text(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def make_judge(
    base_url: str = DEFAULT_BASE_URL,
    model: str | None = None,
    api_key: str | None = None,
    rubric: str = DEFAULT_RUBRIC,
    score_range: tuple[float, float] = (0, 10),
    normalise: bool = True,
    timeout_s: float = 30.0,
    max_retries: int = 2,
    max_concurrency: int = 16,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    on_error: str = "raise",
    backoff_s: float = 0.5,
    system_prompt: str | None = None,
    image_column: str = "image",
    extra_body: dict | None = None,
):
    """An ``async def`` judge reward: one chat request per completion, scored by ``parse_score``.

    base_url: the server's OpenAI API root (``vllm serve`` → ``http://HOST:8000/v1``); a URL ending in
        ``/chat/completions`` is accepted too. Nothing else is ever contacted.
    model: the served model name; ``None`` asks ``GET {base_url}/models`` once and takes the first.
    api_key: bearer token (``vllm serve --api-key``); ``None`` → the ``UNIGRPO_JUDGE_API_KEY`` variable, if set.
    rubric: template with ``{prompt}``, ``{completion}``, ``{min_score}``, ``{max_score}`` and dataset columns
        (``{answer}``); literal braces as ``{{ }}``. ``DEFAULT_RUBRIC``; ``REFERENCE_RUBRIC`` uses ``{answer}``.
    score_range: (lo, hi) of the judge's scale; parsed scores are clamped to it.
    normalise: map the clamped score to [0, 1]; else return it on the judge's scale.
    timeout_s: seconds to connect and to receive the whole reply, per attempt.
    max_retries: retries after a connection error, timeout, HTTP 408/429/5xx or non-JSON reply.
    max_concurrency: requests in flight at once (vLLM batches them on the GPU).
    temperature, max_tokens: sampling of the judge (greedy by default; a thinking judge needs more tokens).
    on_error: after the retries, ``"raise"`` a ``JudgeError`` naming the URL, or return ``"none"`` for the sample.
    backoff_s: wait before the first retry; doubled for each further one (×0.5–1 jitter).
    system_prompt: optional system message before the rubric.
    image_column: dataset column whose PIL images (``mmu`` inputs) are attached; PIL-image completions (``t2i``)
        are attached too, and read as ``[the attached image]`` in ``{completion}``. Needs a VLM judge.
    extra_body: further request fields (vLLM: ``{"chat_template_kwargs": {"enable_thinking": False}}``, ``seed``).
    The reward's ``stats`` (``JudgeStats``) count requests, retries, scored, unparseable and failed samples.
    """
    base_url = _check_base_url(base_url)
    score_range = _check_settings(score_range, timeout_s, max_retries, backoff_s, max_concurrency, temperature,
                                  max_tokens, on_error)
    fields = rubric_fields(rubric)
    if extra_body is not None and not isinstance(extra_body, dict):
        raise ValueError(f"extra_body must be a dict of request fields, got {type(extra_body).__name__}")
    api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    chat_url, models_url = base_url + "/chat/completions", base_url + "/models"
    sampling = {"temperature": float(temperature), "max_tokens": max_tokens, **(extra_body or {})}
    served = {"model": model}  # filled by the first GET /models when model is None
    stats = JudgeStats()

    def sample_rows(prompts, completions, kwargs) -> list[tuple[dict[str, str], list]]:
        n = len(completions)
        columns = {k: v for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) == n
                   and k not in ("completion_ids", *BUILTIN_FIELDS)}
        missing = [f for f in fields if f not in BUILTIN_FIELDS and f not in columns]
        if missing:
            raise ValueError(f"the judge rubric uses {', '.join('{' + f + '}' for f in missing)} but the batch has "
                             f"no such column; columns given: {sorted(columns)}")
        prompts = [None] * n if prompts is None else prompts
        images = columns.get(image_column) or [None] * n
        rows = []
        for i, (prompt, completion, image) in enumerate(zip(prompts, completions, images, strict=True)):
            values = {f: _value_text(columns[f][i]) for f in fields if f in columns}
            text = _value_text(completion) if is_pil_image(completion) else completion_text(completion)
            values.update(prompt=prompt_text(prompt), completion=text, min_score=_number_text(score_range[0]),
                          max_score=_number_text(score_range[1]))
            rows.append((values, [x for x in (image, completion) if is_pil_image(x)]))
        return rows

    async def score_one(messages, retry) -> float | None:
        try:
            body = {"model": served["model"], "messages": messages, **sampling}
            reply = await retry(lambda: http_json(chat_url, body, api_key, timeout_s), chat_url)
            text = reply_content(reply, chat_url)
        except JudgeError as error:
            if on_error == "raise":
                raise
            stats.errors += 1
            log.warning("judge: sample scored None: %s", error)
            return None
        raw = parse_score(text)
        if raw is None:
            stats.unparseable += 1
            log.debug("judge: no score in the reply %r", text[-200:])
            return None
        stats.scored += 1
        return scale_score(raw, score_range, normalise)

    async def judge(prompts=None, completions=(), **kwargs) -> list[float | None]:
        n = len(completions)
        if n == 0:
            return []
        rows = sample_rows(prompts, completions, kwargs)  # config errors raise here, before any request
        all_messages = [judge_messages(rubric, values, images, system_prompt) for values, images in rows]
        pool = ThreadPoolExecutor(max_workers=min(max_concurrency, n), thread_name_prefix="judge")
        semaphore = asyncio.Semaphore(max_concurrency)

        def retry(call, url):
            return request_with_retries(call, url, max_retries=max_retries, backoff_s=backoff_s,
                                        semaphore=semaphore, pool=pool, stats=stats)

        try:
            if served["model"] is None:
                try:
                    served["model"] = await discover_model(retry)
                except JudgeError as error:
                    if on_error == "raise":
                        raise
                    stats.errors += n
                    log.warning("judge: %d samples scored None: %s", n, error)
                    return [None] * n
            tasks = [asyncio.ensure_future(score_one(messages, retry)) for messages in all_messages]
            try:
                return list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:  # the first error fails the batch: stop waiting for the rest
                    task.cancel()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    async def discover_model(retry) -> str:
        reply = await retry(lambda: http_json(models_url, None, api_key, timeout_s), models_url)
        try:
            return str(reply["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge server {models_url} lists no model; pass model=… explicitly") from None

    judge.stats = stats
    judge.url = chat_url
    judge.preflight = False  # no requests before training (see the module docstring)
    return judge


# ---- the registered reward, configured by the environment --------------------------------------------------------

_ENV_PARSERS = {"timeout_s": float, "temperature": float, "backoff_s": float, "max_retries": int,
                "max_concurrency": int, "max_tokens": int, "normalise": parse_flag, "extra_body": json.loads,
                "score_range": lambda value: tuple(float(x) for x in value.split(","))}


def judge_settings_from_env(environ=os.environ) -> dict:
    """``make_judge`` arguments from ``UNIGRPO_JUDGE_<ARGUMENT>`` variables (e.g. ``UNIGRPO_JUDGE_BASE_URL``).

    ``SCORE_RANGE`` is ``lo,hi``; ``NORMALISE`` is 1/true/yes or 0/false/no; ``EXTRA_BODY`` is JSON;
    ``RUBRIC_FILE`` is a file holding the rubric (or give it inline as ``RUBRIC``); numbers as numbers.
    """
    settings = settings_from_env(ENV_PREFIX, make_judge, _ENV_PARSERS, environ)
    rubric_file = environ.get(ENV_PREFIX + "RUBRIC_FILE")
    if rubric_file:
        with open(rubric_file, encoding="utf-8") as f:
            settings["rubric"] = f.read()
    return settings


def judge_from_env(environ=os.environ):
    """The judge the ``UNIGRPO_JUDGE_*`` variables describe, built once per distinct setting (stats persist)."""
    return _judge_for(tuple(sorted((k, v) for k, v in environ.items() if k.startswith(ENV_PREFIX))))


@lru_cache(maxsize=8)
def _judge_for(variables: tuple) -> object:
    return make_judge(**judge_settings_from_env(dict(variables)))


@register_reward("judge", factory=make_judge)
async def judge(prompts=None, completions=(), **kwargs) -> list[float | None]:
    """LLM-as-judge score (default in [0, 1]); settings: ``reward_kwargs`` (``make_judge``) or ``UNIGRPO_JUDGE_*``."""
    return await judge_from_env()(prompts=prompts, completions=completions, **kwargs)


judge.preflight = False
