"""A small OpenAI-compatible chat server on 127.0.0.1 for tests: it stands in for ``vllm serve``.

It answers ``GET /v1/models`` and ``POST /v1/chat/completions``. What a chat request gets is a deterministic
function of the request, given by the test: ``reply(body, index) -> Reply | str`` (``index`` counts chat requests
from 0; a ``str`` is the assistant's content). Every request is recorded. Handler threads are daemons and a
delayed reply waits on an event that ``stop()`` sets, so the server always stops by itself, at once.

    with FakeOpenAIServer(lambda body, i: "Score: 7") as server:
        make_judge(server.url, model=server.model)(...)
        server.chat_requests[0].body["messages"]
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_REQUEST_BYTES = 16 << 20


@dataclass
class Reply:
    """What the server sends for one chat request."""

    content: str | None = "Score: 5"  # the assistant message of a chat completion
    status: int = 200
    delay_s: float = 0.0  # wait before answering (cut short by stop())
    raw: bytes | None = None  # send this body as-is instead of a chat completion
    headers: dict = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: dict | None
    time: float


def message_text(body: dict) -> str:
    """The text of the last user message of a chat request (text parts joined)."""
    content = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (for 'server down' tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeOpenAIServer:
    def __init__(self, reply=None, model: str = "fake-judge"):
        self.reply = reply or (lambda body, index: Reply())
        self.model = model
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.handle_error = lambda request, address: None  # a client that hung up is not a test failure
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def chat_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, handler, body) -> int:
        with self._lock:
            index = sum(r.path.endswith("/chat/completions") for r in self.requests)
            self.requests.append(Recorded(handler.command, handler.path, dict(handler.headers), body, time.monotonic()))
            return index

    def _answer(self, body: dict, index: int) -> tuple[int, bytes, dict]:
        reply = self.reply(body, index)
        reply = Reply(content=reply) if isinstance(reply, str) else reply
        if reply.delay_s:
            self._stopping.wait(reply.delay_s)
        if reply.raw is not None:
            return reply.status, reply.raw, reply.headers
        if reply.status != 200:
            error = {"error": {"message": f"fake error {reply.status}", "type": "Error", "code": reply.status}}
            return reply.status, json.dumps(error).encode(), reply.headers
        completion = {
            "id": f"chatcmpl-fake-{index}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return 200, json.dumps(completion).encode(), reply.headers


def _handler_for(server: FakeOpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, payload: bytes, headers: dict | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up (timed out) before the reply
                pass
            self.close_connection = True

        def do_GET(self):
            server._record(self, None)
            if self.path.rstrip("/") != "/v1/models":
                return self._send(404, b'{"detail": "Not Found"}')
            models = {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "fake"}]}
            self._send(200, json.dumps(models).encode())

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                return self._send(413, b'{"detail": "too large"}')
            body = json.loads(self.rfile.read(length) or b"null")
            index = server._record(self, body)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._send(404, b'{"detail": "Not Found"}')
            with server._lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._send(*server._answer(body, index))
            finally:
                with server._lock:
                    server.in_flight -= 1

    return Handler
