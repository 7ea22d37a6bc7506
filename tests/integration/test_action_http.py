"""The http action against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from plait.actions.base import ActionContext, ActionFailed, ActionResult
from plait.actions.http import MAX_BODY_BYTES, HttpAction, HttpInput


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Trace", "abc")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/json":
            echo = {"query": parse_qs(url.query), "auth": self.headers.get("Authorization")}
            self._send(200, json.dumps(echo).encode(), "application/json; charset=utf-8")
        elif url.path == "/missing":
            self._send(404, b"no such thing\nat all")
        elif url.path == "/broken":
            self._send(503, b"try later")
        elif url.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/json")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif url.path == "/big":
            self._send(200, b"x" * (MAX_BODY_BYTES + 1000))
        else:
            self._send(200, b"hello")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        received = self.rfile.read(length)
        echo = {"body": received.decode(), "type": self.headers.get("Content-Type")}
        self._send(201, json.dumps(echo).encode(), "application/json")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
async def action() -> AsyncIterator[HttpAction]:
    action = HttpAction()
    yield action
    await action.aclose()


def make_ctx(lines: list[str] | None = None) -> ActionContext:
    return ActionContext(
        run_id="r",
        workflow="wf",
        step="s",
        attempt=1,
        workdir=Path("."),
        env={},
        log=lambda stream, line: (lines if lines is not None else []).append(line),
        mask=lambda text: text,
    )


async def request(action: HttpAction, **kw: Any) -> ActionResult:
    return await action.execute(make_ctx(), HttpInput.model_validate(kw))


async def test_get_json_with_params_and_headers(action: HttpAction, server: str) -> None:
    result = await request(
        action, url=f"{server}/json", params={"q": "a b", "n": 2}, headers={"Authorization": "x"}
    )
    out = result.outputs
    assert out["status"] == 200
    assert out["json"] == {"query": {"q": ["a b"], "n": ["2"]}, "auth": "x"}
    assert out["headers"]["x-trace"] == "abc"
    assert json.loads(out["body"]) == out["json"]
    assert out["body_truncated"] is False


async def test_plain_text_has_no_json(action: HttpAction, server: str) -> None:
    out = (await request(action, url=f"{server}/")).outputs
    assert (out["body"], out["json"]) == ("hello", None)


async def test_post_json_and_raw_body(action: HttpAction, server: str) -> None:
    out = (await request(action, url=f"{server}/x", method="post", json={"a": 1})).outputs
    assert out["status"] == 201
    assert out["json"] == {"body": '{"a":1}', "type": "application/json"}
    out = (await request(action, url=f"{server}/x", method="POST", body="raw text")).outputs
    assert out["json"]["body"] == "raw text"


async def test_unexpected_status_names_status_and_body(action: HttpAction, server: str) -> None:
    with pytest.raises(ActionFailed) as e:
        await request(action, url=f"{server}/missing")
    assert str(e.value).endswith("unexpected status 404 Not Found: no such thing at all")
    assert e.value.outputs["status"] == 404
    assert e.value.retryable is False
    with pytest.raises(ActionFailed, match="unexpected status 503") as e:
        await request(action, url=f"{server}/broken")
    assert e.value.retryable is True


async def test_expect_status(action: HttpAction, server: str) -> None:
    assert (await request(action, url=f"{server}/missing", expect_status=404)).outputs[
        "status"
    ] == 404
    ok = await request(action, url=f"{server}/missing", expect_status=[200, 404])
    assert ok.outputs["status"] == 404
    with pytest.raises(ActionFailed, match="unexpected status 200"):
        await request(action, url=f"{server}/", expect_status=[201])


async def test_redirects(action: HttpAction, server: str) -> None:
    followed = await request(action, url=f"{server}/redirect")
    assert followed.outputs["status"] == 200
    not_followed = await request(
        action, url=f"{server}/redirect", follow_redirects=False, expect_status=302
    )
    assert not_followed.outputs["headers"]["location"] == "/json"


async def test_a_big_body_is_cut_at_one_mebibyte(action: HttpAction, server: str) -> None:
    lines: list[str] = []
    result = await action.execute(make_ctx(lines), HttpInput(url=f"{server}/big"))
    assert len(result.outputs["body"]) == MAX_BODY_BYTES
    assert result.outputs["body_truncated"] is True
    assert any("cut at" in line for line in lines)


async def test_connection_refused(action: HttpAction) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(
        ActionFailed, match=r"GET http://127\.0\.0\.1:\d+/: ConnectError: .*refused"
    ):
        await request(action, url=f"http://127.0.0.1:{port}/")


async def test_timeout(action: HttpAction) -> None:
    with socket.socket() as sock:  # accepts the connection (backlog) but never answers
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        with pytest.raises(ActionFailed, match=r"timed out after 0\.3s"):
            await request(action, url=f"http://127.0.0.1:{port}/", timeout="300ms")


async def test_bad_input(action: HttpAction) -> None:
    with pytest.raises(ActionFailed, match="ftp://x") as e:
        await request(action, url="ftp://x/")
    assert e.value.retryable is False
    with pytest.raises(ValueError, match="json or body"):
        HttpInput.model_validate({"url": "http://x", "json": {}, "body": "b"})
    with pytest.raises(ValueError, match="not a duration"):
        HttpInput(url="http://x", timeout="soon")
