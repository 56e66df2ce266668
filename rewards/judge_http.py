"""The judge's HTTP side: one JSON request to an OpenAI-compatible server with the standard library (no proxies, no
redirects, bounded reply size and time), what counts as worth retrying, and the retry loop with jittered backoff.

Used by ``rewards.judge``; imports no torch.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 8 << 20  # a chat reply is a few kB; anything this large is not an OpenAI server


class JudgeError(RuntimeError):
    """The judge server could not be reached, timed out, or refused the request; the message names the URL."""


class _Transient(Exception):
    """A failure worth retrying: connection refused or reset, timeout, HTTP 408/429/5xx, a reply that is not JSON."""


@dataclass
class JudgeStats:
    """Counters of one judge reward, over all its calls (``reward.stats``)."""

    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    scored: int = 0  # samples that got a score
    unparseable: int = 0  # replies without a score → None
    errors: int = 0  # samples that failed after retries → None (on_error="none" only)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx becomes an HTTPError: the judge talks to base_url and nothing else


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_json(url: str, body: dict | None, api_key: str | None, timeout_s: float) -> dict:
    """One blocking request — GET, or POST of ``body`` as JSON — → the JSON reply. Runs in a worker thread.

    Raises ``_Transient`` for what a retry may fix and ``JudgeError`` for what it cannot.
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    request = urllib.request.Request(url, data=data, headers=headers, method="GET" if data is None else "POST")
    deadline = time.monotonic() + timeout_s
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            raw = _read_before(response, deadline)
    except urllib.error.HTTPError as error:
        detail = _error_detail(error)
        if error.code in (408, 429) or error.code >= 500:
            raise _Transient(f"HTTP {error.code}: {detail}") from error
        raise JudgeError(f"judge server {url} refused the request: HTTP {error.code}: {detail}") from error
    except urllib.error.URLError as error:
        reason = error.reason
        raise _Transient(f"timed out after {timeout_s:g} s" if isinstance(reason, TimeoutError)
                         else f"cannot connect: {reason}") from error
    except TimeoutError as error:
        raise _Transient(f"timed out after {timeout_s:g} s") from error
    except (OSError, http.client.HTTPException) as error:
        raise _Transient(f"{type(error).__name__}: {error}") from error
    try:
        return json.loads(raw)
    except ValueError:
        raise _Transient(f"the reply is not JSON: {raw[:200]!r}") from None


def _read_before(response, deadline: float) -> bytes:
    """The body, read in chunks so that a server trickling bytes still times out (and cannot send gigabytes)."""
    chunks, size = [], 0
    while chunk := response.read(1 << 16):
        size += len(chunk)
        if size > MAX_REPLY_BYTES:
            raise JudgeError(f"the reply is larger than {MAX_REPLY_BYTES} bytes: not an OpenAI-compatible server?")
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own message: vLLM and OpenAI send ``{"error": {"message": …}}``, FastAPI ``{"detail": …}``."""
    try:
        raw = error.read(4096)
    except Exception:  # noqa: BLE001 - the status code alone still says enough
        return str(error.reason)
    try:
        body = json.loads(raw)
        message = body.get("error", body) if isinstance(body, dict) else body
        message = message.get("message", message.get("detail", message)) if isinstance(message, dict) else message
    except ValueError:
        message = raw.decode("utf-8", "replace")
    return str(message).strip()[:300] or str(error.reason)


def reply_content(reply, url: str) -> str:
    """``choices[0].message.content`` of a chat completion ("" when the model gave none)."""
    try:
        content = reply["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise JudgeError(f"judge server {url} did not send a chat completion: {str(reply)[:200]}") from None
    return content if isinstance(content, str) else ""


async def request_with_retries(call, url: str, *, max_retries: int, backoff_s: float, semaphore: asyncio.Semaphore,
                               pool: ThreadPoolExecutor, stats: JudgeStats) -> dict:
    """``call()`` in a worker thread, at most ``semaphore`` at a time, retried ``max_retries`` times on
    ``_Transient`` failures with jittered exponential backoff (the semaphore is not held while waiting)."""
    loop = asyncio.get_running_loop()
    reason = None
    for attempt in range(max_retries + 1):
        if attempt:
            stats.retries += 1
            await asyncio.sleep(backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
        async with semaphore:
            stats.requests += 1
            try:
                return await loop.run_in_executor(pool, call)
            except _Transient as error:
                reason = error
                log.debug("judge request to %s failed (attempt %d): %s", url, attempt + 1, error)
    raise JudgeError(f"judge server {url} failed after {max_retries + 1} attempt(s): {reason}")
