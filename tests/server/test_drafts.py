"""``POST /api/v1/drafts`` on a real server, with a real OpenAI-compatible provider on
127.0.0.1: the pinned answer shape, repair, the 4xx cases, 502 when the provider
fails, permissions, and ``plait draft --server``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.server.bootstrap import create_user
from tests.ai.openai_server import OpenAiServer
from tests.ai.test_draft import INVALID, PROMPT, VALID

from .conftest import LiveServer

KEY = "sk-route-77aa88bb99"
ROUTE = "/api/v1/drafts"


@pytest.fixture
def provider() -> Iterator[OpenAiServer]:
    with OpenAiServer(api_key=KEY) as running:
        yield running


def put_connection(
    live: LiveServer,
    name: str,
    config: dict[str, Any],
    *,
    namespace: str = "default",
    type_name: str = "llm",
) -> None:
    with live.client() as c:
        r = c.put(
            f"/api/v1/connections/{namespace}/{name}", json={"type": type_name, "config": config}
        )
    assert r.status_code in (200, 201), r.text


def brain(live: LiveServer, provider: OpenAiServer, **extra: Any) -> None:
    config = {"base_url": provider.base_url, "api_key": KEY, "model": "test-model", **extra}
    put_connection(live, "brain", config)


def test_a_valid_draft_has_the_pinned_shape(server: LiveServer, provider: OpenAiServer) -> None:
    brain(server, provider, price_per_1k_prompt_tokens=2.0)
    provider.reply(VALID, prompt_tokens=1000, completion_tokens=80)
    with server.client() as c:
        r = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "source": VALID,
        "valid": True,
        "errors": [],
        "model": "test-model",
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 80,
            "total_tokens": 1080,
            "cost": 2.0,
        },
    }
    # nothing was deployed
    with server.client() as c:
        assert c.get("/api/v1/workflows/nightly-backup").status_code == 404


def test_a_repaired_and_a_still_invalid_draft(
    sqlite_server: LiveServer, provider: OpenAiServer
) -> None:
    brain(sqlite_server, provider)
    provider.reply(INVALID)
    provider.reply(VALID)
    provider.reply(INVALID)
    provider.reply(INVALID)
    with sqlite_server.client() as c:
        repaired = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain", "model": "big"})
        still = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"})
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["valid"] is True
    assert repaired.json()["model"] == "big"
    assert still.status_code == 200, still.text
    body = still.json()
    assert body["valid"] is False
    assert body["source"] == INVALID
    assert body["errors"] == [
        {
            "line": 1,
            "column": 7,
            "message": body["errors"][0]["message"],
        }
    ]
    assert "'Nightly Backup' is not allowed" in body["errors"][0]["message"]
    assert len(provider.chat_requests()) == 4


def test_a_global_connection_serves_every_namespace(
    sqlite_server: LiveServer, provider: OpenAiServer
) -> None:
    config = {"base_url": provider.base_url, "api_key": KEY, "model": "test-model"}
    put_connection(sqlite_server, "shared", config, namespace="*")
    provider.reply(VALID)
    with sqlite_server.client() as c:
        r = c.post(ROUTE, json={"prompt": PROMPT, "connection": "shared", "namespace": "ops"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "", "connection": "brain"}, "the prompt is empty"),
        ({"prompt": " \n ", "connection": "brain"}, "the prompt is empty"),
        ({"prompt": "x" * 4001, "connection": "brain"}, "at most 4000 are accepted"),
        ({"connection": "brain"}, "prompt"),
        ({"prompt": PROMPT}, "connection"),
        ({"prompt": PROMPT, "connection": "brain", "namespace": "Bad NS"}, "invalid namespace"),
        ({"prompt": PROMPT, "connection": "br\u0000ain"}, "invalid connection name"),
        ({"prompt": PROMPT, "connection": "brain", "extra": 1}, "extra"),
        ({"prompt": 7, "connection": "brain"}, "prompt"),
    ],
)
def test_bad_bodies_are_422(
    sqlite_server: LiveServer, provider: OpenAiServer, body: dict[str, Any], message: str
) -> None:
    brain(sqlite_server, provider)
    with sqlite_server.client() as c:
        r = c.post(ROUTE, json=body)
    assert r.status_code == 422, r.text
    assert message in json.dumps(r.json()["error"])
    assert provider.requests == []


def test_unknown_and_unsuitable_connections(
    sqlite_server: LiveServer, provider: OpenAiServer
) -> None:
    put_connection(sqlite_server, "api", {"base_url": "http://127.0.0.1:9"}, type_name="http")
    put_connection(sqlite_server, "modelless", {"base_url": provider.base_url})
    with sqlite_server.client() as c:
        unknown = c.post(ROUTE, json={"prompt": PROMPT, "connection": "nowhere"})
        http = c.post(ROUTE, json={"prompt": PROMPT, "connection": "api"})
        modelless = c.post(ROUTE, json={"prompt": PROMPT, "connection": "modelless"})
    assert unknown.status_code == 404, unknown.text
    assert "no connection named 'nowhere'" in unknown.json()["error"]["message"]
    assert http.status_code == 400, http.text
    assert "'api' is a http connection, not an llm one" in http.json()["error"]["message"]
    assert modelless.status_code == 400, modelless.text
    assert "has no default model" in modelless.json()["error"]["message"]
    assert provider.requests == []


def test_a_failing_provider_is_502_with_its_message_and_never_the_key(
    server: LiveServer, provider: OpenAiServer
) -> None:
    brain(server, provider, max_retries=0)
    provider.fail(400, f"the key {KEY} has no access to test-model")
    provider.fail(503, "overloaded")
    with server.client() as c:
        refused = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"})
        down = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"})
    assert refused.status_code == 502, refused.text
    error = refused.json()["error"]
    assert error["code"] == "provider_error"
    assert "the model's provider failed" in error["message"]
    assert "has no access to test-model" in error["message"]
    assert KEY not in refused.text
    assert down.status_code == 502, down.text
    assert "503 server error: overloaded (gave up after 1 try)" in down.json()["error"]["message"]


def test_drafting_needs_deploy_rights_in_the_namespace(
    sqlite_server: LiveServer, provider: OpenAiServer
) -> None:
    brain(sqlite_server, provider)
    create_user(sqlite_server.services, "otto", "a-long-operator-password", role="operator")
    create_user(
        sqlite_server.services, "edna", "a-long-editor-password", role="editor", namespace="team"
    )
    operator = sqlite_server.login("otto", "a-long-operator-password")
    editor = sqlite_server.login("edna", "a-long-editor-password")
    provider.reply(VALID)
    with sqlite_server.client(operator) as c:
        assert c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"}).status_code == 403
        assert c.post(ROUTE, json={}).status_code == 403  # refused before the body is read
    with sqlite_server.client(editor) as c:
        elsewhere = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"})
        own = c.post(ROUTE, json={"prompt": PROMPT, "connection": "brain", "namespace": "team"})
    assert elsewhere.status_code == 403
    # the editor's namespace has no connection `brain` (it is in `default`)
    assert own.status_code == 404, own.text
    with sqlite_server.anonymous() as anon:
        assert anon.post(ROUTE, json={"prompt": PROMPT, "connection": "brain"}).status_code == 401
    assert provider.requests == []


def test_the_route_is_in_the_openapi_document(sqlite_server: LiveServer) -> None:
    with sqlite_server.anonymous() as c:
        spec = c.get("/api/v1/openapi.json").json()
    post = spec["paths"][ROUTE]["post"]
    assert post["summary"] == "Draft a workflow from a sentence"
    assert {"200", "400", "404", "422", "502"} <= set(post["responses"])


def test_plait_draft_with_server_uses_the_route(
    sqlite_server: LiveServer, provider: OpenAiServer, tmp_path: Path
) -> None:
    brain(sqlite_server, provider)
    provider.reply(VALID)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAIT_")}
    env |= {"PLAIT_HOME": str(tmp_path / "cli-home"), "PLAIT_TOKEN": sqlite_server.token}

    def draft(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "plait.cli", "draft", "--server", sqlite_server.url]
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    done = draft(PROMPT, "-c", "brain")
    assert done.returncode == 0, done.stderr
    assert done.stdout == VALID
    missing = draft(PROMPT, "-c", "nowhere")
    assert missing.returncode == 2
    assert "no connection named 'nowhere'" in missing.stderr
    assert "Traceback" not in missing.stderr
