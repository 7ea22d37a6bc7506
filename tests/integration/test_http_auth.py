"""The http action's auth, connections, Retry-After and extraction, against real HTTP
servers on 127.0.0.1 (an API and an OAuth2 token endpoint in one, plus a second origin)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from plait.actions.base import ActionContext, ActionFailed, ActionResult
from plait.actions.connections import EnvConnections
from plait.actions.http import HttpAction, HttpConnection, HttpConnectionConfig, HttpInput
from plait.actions.http_auth import TokenCache
from plait.local import LocalSession
from plait.model import load_workflow
from plait.settings import Settings

CLIENT_ID, CLIENT_SECRET = "app", "s3cr3t-client"
DATA = {"data": {"items": [{"id": 41, "name": "first"}, {"id": 42, "name": "second"}]}}


@dataclass
class State:
    """What the server saw and what it will answer."""

    tokens_issued: list[dict[str, Any]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    expires_in: int | None = 3600
    requests: list[tuple[str, dict[str, str], float, str]] = field(default_factory=list)
    limited_calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode() if not isinstance(body, bytes) else body
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length", 0))).decode())
            if urlparse(self.path).path != "/token":
                self._send(404, {})
                return
            client = (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                client = tuple(base64.b64decode(auth[6:]).decode().split(":", 1))  # type: ignore[assignment]
            if client != (CLIENT_ID, CLIENT_SECRET):
                self._send(401, {"error": "invalid_client", "error_description": "bad secret"})
                return
            with state.lock:
                token = f"tok-{len(state.tokens_issued) + 1}-abcdef"
                state.tokens_issued.append(
                    {"form": form, "basic": auth.startswith("Basic "), "token": token}
                )
                state.valid_tokens.add(token)
            answer: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
            if state.expires_in is not None:
                answer["expires_in"] = state.expires_in
            self._send(200, answer)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with state.lock:
                state.requests.append((url.path, headers, time.time(), url.query))
            if url.path == "/echo":
                self._send(200, {"headers": headers, "path": url.path})
            elif url.path == "/protected":
                token = headers.get("authorization", "").removeprefix("Bearer ")
                if token not in state.valid_tokens:
                    self._send(401, {"error": "invalid_token"})
                else:
                    self._send(200, {"ok": True, "auth": headers["authorization"]})
            elif url.path == "/limited":
                with state.lock:
                    state.limited_calls += 1
                    first = state.limited_calls == 1
                if first:
                    self._send(429, {"error": "slow down"}, {"Retry-After": "1"})
                else:
                    self._send(200, {"ok": True})
            elif url.path == "/data":
                self._send(200, DATA)
            elif url.path == "/text-json":
                raw = json.dumps(DATA).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            elif url.path == "/redirect":
                target = parse_qs(url.query)["to"][0]
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif url.path == "/denied":
                self._send(401, {"error": "no"})
            else:
                self._send(404, {})

    return Handler


@dataclass
class Server:
    url: str
    state: State


def _serve(state: State) -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", state)
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def api() -> Iterator[Server]:
    yield from _serve(State())


@pytest.fixture
def elsewhere() -> Iterator[Server]:
    """A second origin (another port), to which credentials must not travel."""
    yield from _serve(State())


@dataclass
class Ctx:
    ctx: ActionContext
    lines: list[str]
    secrets: list[str]


def make_ctx(connections: dict[str, dict[str, Any]] | None = None) -> Ctx:
    lines: list[str] = []
    secrets: list[str] = []
    environ = {
        f"PLAIT_CONNECTION_{k.upper()}": json.dumps(v) for k, v in (connections or {}).items()
    }
    source = EnvConnections(environ)
    ctx = ActionContext(
        run_id="r",
        workflow="wf",
        step="s",
        attempt=1,
        workdir=Path("."),
        env={},
        log=lambda stream, line: lines.append(line),
        mask=lambda text: text,
        connections=lambda name: source.get("default", name),
        secret_sink=secrets.append,
    )
    return Ctx(ctx, lines, secrets)


@pytest.fixture
async def action() -> Any:
    action = HttpAction()
    yield action
    await action.aclose()


async def call(action: HttpAction, c: Ctx | None = None, **kw: Any) -> ActionResult:
    return await action.execute((c or make_ctx()).ctx, HttpInput.model_validate(kw))


def oauth(api: Server, **extra: Any) -> dict[str, Any]:
    return {
        "token_url": f"{api.url}/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }


# ------------------------------------------------------------------ static auth kinds


async def test_bearer_basic_and_api_key(action: HttpAction, api: Server) -> None:
    c = make_ctx()
    out = await call(action, c, url=f"{api.url}/echo", auth={"bearer": "tkn-123"})
    assert out.outputs["json"]["headers"]["authorization"] == "Bearer tkn-123"
    assert "tkn-123" in c.secrets  # added to the run's masking

    out = await call(
        action, url=f"{api.url}/echo", auth={"basic": {"username": "ann", "password": "pw:1"}}
    )
    header = out.outputs["json"]["headers"]["authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "ann:pw:1"

    out = await call(
        action, url=f"{api.url}/echo", auth={"api_key": {"header": "X-Key", "value": "k-99"}}
    )
    assert out.outputs["json"]["headers"]["x-key"] == "k-99"
    out = await call(action, url=f"{api.url}/echo", auth={"api_key": {"value": "k-98"}})
    assert out.outputs["json"]["headers"]["x-api-key"] == "k-98"


def test_auth_takes_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one of bearer, basic, api_key, oauth2"):
        HttpInput.model_validate({"url": "http://x", "auth": {}})
    with pytest.raises(ValueError, match="exactly one"):
        HttpInput.model_validate(
            {"url": "http://x", "auth": {"bearer": "a", "api_key": {"value": "b"}}}
        )
    with pytest.raises(ValueError, match="give a url"):
        HttpInput.model_validate({})


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    action: HttpAction, api: Server, elsewhere: Server
) -> None:
    away = f"{api.url}/redirect?to={elsewhere.url}/echo"
    for auth, header in (
        ({"api_key": {"value": "k-1"}}, "x-api-key"),
        ({"bearer": "b-1"}, "authorization"),
    ):
        out = await call(action, url=away, auth=auth)
        assert out.outputs["json"]["path"] == "/echo"
        assert header not in out.outputs["json"]["headers"]
    home = f"{api.url}/redirect?to=/echo"  # the same origin keeps them
    out = await call(action, url=home, auth={"api_key": {"value": "k-1"}})
    assert out.outputs["json"]["headers"]["x-api-key"] == "k-1"


# ------------------------------------------------------------------ OAuth2


async def test_oauth2_token_is_fetched_once_and_reused(action: HttpAction, api: Server) -> None:
    c = make_ctx()
    for _ in range(3):
        out = await call(action, c, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
        assert out.outputs["json"]["ok"] is True
    assert len(api.state.tokens_issued) == 1
    issued = api.state.tokens_issued[0]
    assert issued["basic"] is True  # client_secret_basic by default
    assert issued["form"]["grant_type"] == ["client_credentials"]
    assert issued["token"] in c.secrets  # the fetched token is masked in the run
    assert CLIENT_SECRET in c.secrets


async def test_oauth2_scope_audience_and_post_client_auth(action: HttpAction, api: Server) -> None:
    spec = oauth(api, scope="read write", audience="https://api", client_auth="post")
    await call(action, url=f"{api.url}/protected", auth={"oauth2": spec})
    form = api.state.tokens_issued[0]["form"]
    assert form["scope"] == ["read write"]
    assert form["audience"] == ["https://api"]
    assert form["client_id"] == [CLIENT_ID]
    assert api.state.tokens_issued[0]["basic"] is False
    # Another scope is another token; the first one stays cached for its own scope.
    await call(action, url=f"{api.url}/protected", auth={"oauth2": oauth(api, scope="read")})
    await call(action, url=f"{api.url}/protected", auth={"oauth2": spec})
    assert len(api.state.tokens_issued) == 2


async def test_oauth2_token_is_renewed_shortly_before_it_expires(
    action: HttpAction, api: Server
) -> None:
    now = [1000.0]
    action._tokens = TokenCache(clock=lambda: now[0])
    api.state.expires_in = 100
    await call(action, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    now[0] += 85  # still well before expiry
    await call(action, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    assert len(api.state.tokens_issued) == 1
    now[0] += 6  # 91 s: inside the margin (10% of 100 s) before expiry
    await call(action, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    assert len(api.state.tokens_issued) == 2


async def test_a_401_with_a_cached_token_fetches_a_new_one_once(
    action: HttpAction, api: Server
) -> None:
    c = make_ctx()
    await call(action, c, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    api.state.valid_tokens.clear()  # the server revoked it
    out = await call(action, c, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    assert out.outputs["json"]["auth"] == "Bearer tok-2-abcdef"
    assert len(api.state.tokens_issued) == 2
    assert any("refused the cached OAuth2 token" in line for line in c.lines)
    # A fresh token that is refused is not fetched again: the API says no.
    with pytest.raises(ActionFailed, match="unexpected status 401") as e:
        await call(action, url=f"{api.url}/denied", auth={"oauth2": oauth(api, scope="other")})
    assert e.value.retryable is False
    assert len(api.state.tokens_issued) == 3


async def test_oauth2_with_a_wrong_secret_fails_clearly_and_shares_no_token(
    action: HttpAction, api: Server
) -> None:
    await call(action, url=f"{api.url}/protected", auth={"oauth2": oauth(api)})
    wrong = oauth(api, client_secret="guess")
    with pytest.raises(ActionFailed) as e:
        await call(action, url=f"{api.url}/protected", auth={"oauth2": wrong})
    assert "oauth2 token request" in str(e.value)
    assert "was refused (401): invalid_client bad secret" in str(e.value)
    assert e.value.retryable is False


# ------------------------------------------------------------------ connections


async def test_a_connection_gives_base_url_headers_and_credentials(
    action: HttpAction, api: Server, elsewhere: Server
) -> None:
    c = make_ctx(
        {
            "api": {
                "type": "http",
                "base_url": f"{api.url}/",
                "headers": {"X-Team": "ops", "X-Over": "conn"},
                "api_key_header": "X-Key",
                "api_key": "conn-key-1",
            },
            "oauth": {"type": "http", "base_url": api.url, **oauth(api)},
        }
    )
    out = await call(action, c, connection="api", url="/echo", headers={"X-Over": "step"})
    headers = out.outputs["json"]["headers"]
    assert (headers["x-key"], headers["x-team"], headers["x-over"]) == ("conn-key-1", "ops", "step")
    assert "conn-key-1" in c.secrets
    out = await call(action, c, connection="oauth", url="protected")
    assert out.outputs["json"]["ok"] is True
    # The step's own auth replaces the connection's.
    out = await call(action, c, connection="api", url="echo", auth={"bearer": "mine"})
    assert out.outputs["json"]["headers"]["authorization"] == "Bearer mine"
    with pytest.raises(ActionFailed, match="not under the base_url of connection 'api'") as e:
        await call(action, c, connection="api", url=f"{elsewhere.url}/echo")
    assert e.value.retryable is False
    assert elsewhere.state.requests == []
    with pytest.raises(ActionFailed, match="no connection named 'nope'"):
        await call(action, c, connection="nope", url="/echo")


def test_connection_config_is_checked() -> None:
    with pytest.raises(ValueError, match="one kind of credential, not bearer_token and api_key"):
        HttpConnectionConfig.model_validate(
            {"base_url": "http://x", "bearer_token": "a", "api_key": "b"}
        )
    with pytest.raises(ValueError, match="needs client_id and client_secret"):
        HttpConnectionConfig.model_validate({"base_url": "http://x", "token_url": "http://t"})
    with pytest.raises(ValueError, match="base_url must be an http"):
        HttpConnectionConfig.model_validate({"base_url": "ftp://x"})
    assert set(HttpConnection.secret_fields()) == {
        "bearer_token",
        "password",
        "api_key",
        "client_secret",
    }


async def test_connection_test_reaches_the_api(api: Server) -> None:
    good = HttpConnectionConfig.model_validate({"base_url": f"{api.url}/protected", **oauth(api)})
    assert await HttpConnection().test(good) == f"GET {api.url}/protected answered 200"
    bad = HttpConnectionConfig.model_validate(
        {"base_url": f"{api.url}/protected", "bearer_token": "wrong"}
    )
    with pytest.raises(ActionFailed, match="credentials were refused \\(401\\)"):
        await HttpConnection().test(bad)


# ------------------------------------------------------------------ extraction


async def test_extract_puts_values_in_outputs(action: HttpAction, api: Server) -> None:
    out = await call(
        action,
        url=f"{api.url}/data",
        extract={"first_id": "$.data.items[0].id", "names": "$..name", "last": "$.data.items[-1]"},
    )
    assert out.outputs["first_id"] == 41
    assert out.outputs["names"] == ["first", "second"]
    assert out.outputs["last"] == {"id": 42, "name": "second"}
    assert out.outputs["status"] == 200
    # A JSON body served as text/plain is still read for extraction.
    out = await call(action, url=f"{api.url}/text-json", extract={"n": "$.data.items[1].id"})
    assert out.outputs["n"] == 42


async def test_extract_that_matches_nothing_fails_unless_optional(
    action: HttpAction, api: Server
) -> None:
    with pytest.raises(
        ActionFailed, match=r"extract\.missing: \$\.data\.nope matched nothing"
    ) as e:
        await call(action, url=f"{api.url}/data", extract={"missing": "$.data.nope"})
    assert e.value.outputs["status"] == 200  # the response is still there to look at
    out = await call(
        action,
        url=f"{api.url}/data",
        extract={"missing": "$.data.nope", "none": "$.data.items[*].nope"},
        extract_optional=True,
    )
    assert (out.outputs["missing"], out.outputs["none"]) == (None, [])


def test_extract_paths_and_names_are_checked_up_front() -> None:
    with pytest.raises(ValueError, match=r"extract\.bad: JSONPath '\$\.a\[': expected"):
        HttpInput.model_validate({"url": "http://x", "extract": {"bad": "$.a["}})
    with pytest.raises(ValueError, match="'status' is already an output"):
        HttpInput.model_validate({"url": "http://x", "extract": {"status": "$.a"}})


# ------------------------------------------------------------------ the real runtime


async def _run_workflow(tmp_path: Path, source: str) -> tuple[Any, list[str]]:
    """The run's result and its log lines (as stored: masked)."""
    home = tmp_path / "home"
    session = LocalSession(Settings(home=home, database_url=f"sqlite:///{home}/plait.db"))
    plan = load_workflow(source, "wf.yaml", session.registry.input_models()).plan
    try:
        result = await session.run(plan, source, {}, workdir=tmp_path)
        lines = [line.line for line in session.store.read_logs(result.run_id)]
    finally:
        await session.close()
    return result, lines


async def test_the_runtime_honours_retry_after(tmp_path: Path, api: Server) -> None:
    source = f"""
name: limited
steps:
  - id: call
    uses: http
    retries: {{max: 2, backoff: constant, initial: 10ms}}
    with: {{url: "{api.url}/limited"}}
"""
    result, _ = await _run_workflow(tmp_path, source)
    assert result.success, result.error
    assert result.step("call").attempts == 2
    times = [t for path, _, t, _ in api.state.requests if path == "/limited"]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.0  # the policy alone would have waited 10 ms


async def test_a_fetched_token_is_masked_in_later_steps(tmp_path: Path, api: Server) -> None:
    token_url = f"{api.url}/token"
    source = f"""
name: masked
steps:
  - id: call
    uses: http
    with:
      url: "{api.url}/protected"
      auth:
        oauth2: {{token_url: "{token_url}", client_id: {CLIENT_ID}, client_secret: {CLIENT_SECRET}}}
      extract: {{auth: "$.auth"}}
  - id: show
    run: echo "got ${{{{ steps.call.outputs.auth }}}}"
"""
    result, lines = await _run_workflow(tmp_path, source)
    assert result.success, result.error
    token = api.state.tokens_issued[0]["token"]
    assert result.step("call").outputs["auth"] == "Bearer ***"
    # The output that held the token is a secret itself now: all of it is masked.
    assert "got ***" in lines
    assert not any(token in line for line in lines)


async def test_params_add_to_a_query_string_in_the_url(action: HttpAction, api: Server) -> None:
    await call(action, url=f"{api.url}/echo?a=1", params={"b": 2})
    await call(action, url=f"{api.url}/echo?c=3")
    assert [q for p, _, _, q in api.state.requests] == ["a=1&b=2", "c=3"]
    with pytest.raises(ActionFailed, match="Invalid port") as e:
        await call(action, url="http://host:notaport/")
    assert e.value.retryable is False
