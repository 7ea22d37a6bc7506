"""A small real LLM provider for tests: OpenAI- and Anthropic-compatible, on 127.0.0.1.

It is a real HTTP server (a thread running :class:`http.server.ThreadingHTTPServer` on
port 0) that speaks

- ``POST /v1/chat/completions`` (OpenAI, vLLM, Ollama, LM Studio; also Azure's
  ``/openai/deployments/<name>/chat/completions?api-version=...``),
- ``POST /v1/embeddings`` (deterministic vectors derived from the text),
- ``GET /v1/models``,
- ``POST /v1/messages`` (Anthropic),

answers from a queue of canned replies (or a function of the request), and records every
request it got. Use::

    from tests.ai.openai_server import OpenAiServer

    with OpenAiServer(api_key="sk-test") as llm:
        llm.reply("positive")                       # the next chat answer (either API)
        llm.reply('{"amount": 12.5}', prompt_tokens=40, completion_tokens=7)
        llm.fail(429, retry_after="1")              # the next request gets a 429 ...
        llm.fail(500)                               # ... then a 500 ...
        llm.reply("ok", delay=2.0)                  # ... then "ok" after two seconds
        llm.garbage()                               # a 200 whose body is not JSON
        llm.respond_with(lambda req: f"echo {req.last_user}")   # default answer
        connection = {"type": "llm", "base_url": llm.base_url, "api_key": "sk-test",
                      "model": "test-model"}
        ...                                         # run the code under test
        assert llm.requests[0].path == "/v1/chat/completions"
        assert llm.requests[0].headers["authorization"] == "Bearer sk-test"
        assert llm.requests[0].body["messages"][0]["role"] == "system"

``llm.base_url`` is ``http://127.0.0.1:PORT/v1`` (what an ``llm`` connection's
``base_url`` takes for both APIs); ``llm.url`` is the root without ``/v1``. Queued items
are consumed in order by whatever request comes next (pass ``path="/v1/embeddings"`` to
aim one at an endpoint). With the queue empty, chat answers with the responder (by
default ``"ok"``), embeddings with hash vectors of ``dimensions`` floats, and models
with ``models``. With ``api_key`` set, a request without that key gets a 401 in the
provider's own error shape, which quotes the key it was given (so a test can check
that the client masks it). Token counts default to the number of words in the prompt
and in the answer, so usage arithmetic is predictable.

Also usable as a pytest fixture: ``from tests.ai.openai_server import openai_server``
(import it into the test module; function-scoped, no API key).
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

__all__ = ["Canned", "OpenAiServer", "RecordedRequest", "openai_server"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    body: Any  # the parsed JSON body, or None

    @property
    def api(self) -> str:
        """``"anthropic"`` for ``/v1/messages``, else ``"openai"``."""
        return "anthropic" if self.path.endswith("/messages") else "openai"

    @property
    def messages(self) -> list[dict[str, Any]]:
        body = self.body if isinstance(self.body, dict) else {}
        return list(body.get("messages") or [])

    @property
    def system(self) -> str:
        """The system prompt, wherever the API puts it."""
        body = self.body if isinstance(self.body, dict) else {}
        if isinstance(body.get("system"), str):
            return str(body["system"])
        return "\n".join(
            str(m.get("content", "")) for m in self.messages if m.get("role") == "system"
        )

    @property
    def last_user(self) -> str:
        users = [m for m in self.messages if m.get("role") == "user"]
        return str(users[-1].get("content", "")) if users else ""


@dataclass
class Canned:
    """One queued answer: a chat reply (``text``), an error (``status`` >= 400), or a
    raw body; optionally after ``delay`` seconds; for one ``path`` suffix or any."""

    text: str | None = None
    status: int = 200
    message: str | None = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    path: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None


Responder = Callable[[RecordedRequest], "str | Canned"]


class OpenAiServer:
    """The fake provider; see the module docstring."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        models: tuple[str, ...] = ("test-model", "test-embed"),
        dimensions: int = 8,
    ) -> None:
        self.api_key = api_key
        self.models = models
        self.dimensions = dimensions
        self.requests: list[RecordedRequest] = []
        self._queue: list[Canned] = []
        self._responder: Responder = lambda request: "ok"
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------------
    def start(self) -> OpenAiServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> OpenAiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- scripting -------------------------------------------------------------------
    def reply(
        self,
        text: str,
        *,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        model: str | None = None,
        finish_reason: str | None = None,
        delay: float = 0.0,
        path: str | None = None,
    ) -> None:
        """Queue a successful chat answer (rendered for whichever API asks)."""
        self.queue(
            Canned(
                text=text,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                model=model,
                finish_reason=finish_reason,
                delay=delay,
                path=path,
            )
        )

    def fail(
        self,
        status: int,
        message: str | None = None,
        *,
        retry_after: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
        path: str | None = None,
    ) -> None:
        """Queue an error answer in the provider's error shape."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = retry_after
        self.queue(
            Canned(
                status=status,
                message=message or f"fake provider error {status}",
                headers=extra,
                delay=delay,
                path=path,
            )
        )

    def garbage(self, body: bytes = b"<html>not json", *, path: str | None = None) -> None:
        """Queue a 200 whose body is not JSON."""
        self.queue(Canned(raw=body, path=path))

    def queue(self, canned: Canned) -> None:
        with self._lock:
            self._queue.append(canned)

    def respond_with(self, responder: Responder) -> None:
        """Answer chat requests with ``responder(request)`` when the queue is empty."""
        self._responder = responder

    @property
    def pending(self) -> int:
        """How many queued answers are still unused."""
        with self._lock:
            return len(self._queue)

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(("/chat/completions", "/messages"))]

    # -- serving (called from handler threads) ---------------------------------------
    def _take(self, path: str) -> Canned | None:
        with self._lock:
            for index, canned in enumerate(self._queue):
                if canned.path is None or path.endswith(canned.path):
                    return self._queue.pop(index)
        return None

    def _answer(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        offered = self._refused_key(request)
        if offered is not None:  # checked first: a refused request uses no queued answer
            return _error(request, 401, f"Incorrect API key provided: {offered}", {})
        canned = self._take(request.path)
        if canned is not None and canned.delay:
            self._stopping.wait(canned.delay)
        if canned is not None and canned.status >= 400:
            return _error(request, canned.status, canned.message or "error", canned.headers)
        if canned is not None and canned.raw is not None:
            return 200, {"Content-Type": "application/json", **canned.headers}, canned.raw
        path = request.path
        if path.endswith("/models") and request.method == "GET":
            return _json(200, {"object": "list", "data": [_model_entry(m) for m in self.models]})
        if path.endswith("/embeddings"):
            return self._embeddings(request)
        if path.endswith(("/chat/completions", "/messages")):
            if canned is None:
                produced = self._responder(request)
                canned = produced if isinstance(produced, Canned) else Canned(text=produced)
                if canned.status >= 400:
                    return _error(request, canned.status, canned.message or "error", canned.headers)
            return _chat(request, canned)
        return _error(request, 404, f"no route {request.method} {path}", {})

    def _refused_key(self, request: RecordedRequest) -> str | None:
        """None when the request may pass, else the key it offered (echoed in the error,
        as providers do, so tests can check that the client masks it)."""
        if self.api_key is None:
            return None
        h = request.headers
        offered = [
            h.get("authorization", "").removeprefix("Bearer "),
            h.get("api-key", ""),
            h.get("x-api-key", ""),
        ]
        if self.api_key in offered:
            return None
        return next((k for k in offered if k), "(none)")

    def _embeddings(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        body = request.body if isinstance(request.body, dict) else {}
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list):
            return _error(request, 400, "'input' must be a string or a list of strings", {})
        data = [
            {"object": "embedding", "index": i, "embedding": hash_vector(str(t), self.dimensions)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(str(t).split()) for t in texts)
        return _json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model") or self.models[-1],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


def hash_vector(text: str, dimensions: int = 8) -> list[float]:
    """A deterministic unit vector for ``text`` (what the fake embeddings return)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "plait-tests"}


def _json(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(payload).encode(),
    )


def _error(
    request: RecordedRequest, status: int, message: str, headers: Mapping[str, str]
) -> tuple[int, dict[str, str], bytes]:
    if request.api == "anthropic":
        kind = "rate_limit_error" if status == 429 else "invalid_request_error"
        payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        payload = {"error": {"message": message, "type": "invalid_request_error", "code": None}}
    return _json(status, payload, headers)


def _prompt_words(request: RecordedRequest) -> int:
    words = sum(len(str(m.get("content", "")).split()) for m in request.messages)
    body = request.body if isinstance(request.body, dict) else {}
    if isinstance(body.get("system"), str):
        words += len(body["system"].split())
    return words


def _chat(request: RecordedRequest, canned: Canned) -> tuple[int, dict[str, str], bytes]:
    body = request.body if isinstance(request.body, dict) else {}
    text = canned.text or ""
    model = canned.model or str(body.get("model") or "test-model")
    prompt = canned.prompt_tokens if canned.prompt_tokens is not None else _prompt_words(request)
    completion = (
        canned.completion_tokens if canned.completion_tokens is not None else len(text.split())
    )
    if request.api == "anthropic":
        return _json(
            200,
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": canned.finish_reason or "end_turn",
                "usage": {"input_tokens": prompt, "output_tokens": completion},
            },
        )
    return _json(
        200,
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": canned.finish_reason or "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        },
    )


def _handler_for(server: OpenAiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            parts = urlsplit(self.path)
            request = RecordedRequest(
                method=self.command,
                path=parts.path,
                query={k: v[-1] for k, v in parse_qs(parts.query).items()},
                headers={k.lower(): v for k, v in self.headers.items()},
                raw=raw,
                body=body,
            )
            with server._lock:
                server.requests.append(request)
            status, headers, payload = server._answer(request)
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

    return Handler


@pytest.fixture
def openai_server() -> Iterator[OpenAiServer]:
    """A started :class:`OpenAiServer` without an API key."""
    with OpenAiServer() as server:
        yield server
