"""``GET /api/v1/logs?q=``: full-text search of log lines across runs, on SQLite (FTS5)
and PostgreSQL (tsvector), with the caller's namespaces as the limit."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from plait.server.bootstrap import create_user

from .conftest import LiveServer
from .test_runs import ENDED, deploy, start, wait_for

PASSWORD = "a-long-and-unusual-passphrase"

BUILD = """name: build
namespace: ci
steps:
  - id: compile
    run: |
      echo "compiling module alpha"
      echo "Connection refused by db-01.example.com"
      echo "token is ${{ secrets.SEARCH_TOKEN }}"
  - id: test
    run: |
      echo "deployment finished for alpha"
      echo "refused: quota exceeded"
"""

PAYROLL = """name: payroll
namespace: finance
steps:
  - id: pay
    run: echo "payroll finished for alpha team"
"""


@pytest.fixture
def searched(server: LiveServer) -> tuple[LiveServer, dict[str, str]]:
    with server.client() as c:
        body = {"value": "s3cr3t-v4lue-xyz"}
        assert c.put("/api/v1/secrets/ci/SEARCH_TOKEN", json=body).status_code == 204
    deploy(server, BUILD)
    deploy(server, PAYROLL)
    runs = {}
    with server.client() as c:
        for name in ("build", "payroll"):
            run = wait_for(c, start(c, name).json()["id"], ENDED)
            assert run["status"] == "succeeded", run
            runs[name] = run["id"]
    return server, runs


def _search(c: httpx.Client, q: str, **params: Any) -> httpx.Response:
    return c.get("/api/v1/logs", params={"q": q, **params})


def _lines(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [item["line"] for item in r.json()["items"]]


def test_words_phrases_prefixes_or_and_not(searched: tuple[LiveServer, dict[str, str]]) -> None:
    server, runs = searched
    with server.client() as c:
        assert _lines(_search(c, "refused")) == [
            "refused: quota exceeded",
            "Connection refused by db-01.example.com",
        ]  # newest first
        assert _lines(_search(c, '"connection refused"')) == [
            "Connection refused by db-01.example.com"
        ]
        assert _lines(_search(c, '"refused connection"')) == []
        assert _lines(_search(c, "deploy*")) == ["deployment finished for alpha"]
        assert _lines(_search(c, "deploy")) == []  # words are not stemmed
        assert sorted(_lines(_search(c, "quota OR compiling"))) == [
            "compiling module alpha",
            "refused: quota exceeded",
        ]
        assert _lines(_search(c, "alpha -payroll -deployment")) == ["compiling module alpha"]
        assert _lines(_search(c, "db-01.example.com")) == [
            "Connection refused by db-01.example.com"
        ]
        assert _lines(_search(c, "FINISHED alpha", workflow="payroll")) == [
            "payroll finished for alpha team"
        ]

        hit = _search(c, '"connection refused"').json()["items"][0]
        assert hit["run_id"] == runs["build"]
        assert (hit["workflow"], hit["namespace"], hit["step"], hit["attempt"]) == (
            "build",
            "ci",
            "compile",
            1,
        )
        assert hit["stream"] == "stdout"
        start_, end = hit["highlight"][0]
        assert hit["line"][start_:end].lower() == "connection refused"


def test_filters_and_pages(searched: tuple[LiveServer, dict[str, str]]) -> None:
    server, runs = searched
    with server.client() as c:
        assert len(_lines(_search(c, "alpha"))) == 3
        assert len(_lines(_search(c, "alpha", run=runs["build"]))) == 2
        assert _lines(_search(c, "alpha", run=runs["build"], step="test")) == [
            "deployment finished for alpha"
        ]
        assert len(_lines(_search(c, "alpha", since="1h"))) == 3
        assert _lines(_search(c, "alpha", since="2999-01-01T00:00:00Z")) == []
        first = _search(c, "alpha", limit=2).json()
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        rest = _search(c, "alpha", limit=2, cursor=first["next_cursor"]).json()
        assert len(rest["items"]) == 1
        assert rest["next_cursor"] is None
        ids = [i["id"] for i in first["items"] + rest["items"]]
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == 3


def test_secrets_are_masked_before_they_are_indexed(
    searched: tuple[LiveServer, dict[str, str]],
) -> None:
    server, _ = searched
    with server.client() as c:
        assert _lines(_search(c, "s3cr3t")) == []
        assert _lines(_search(c, "s3cr3t*")) == []
        assert _lines(_search(c, "token")) == ["token is ***"]


def test_only_readable_namespaces_are_searched(
    searched: tuple[LiveServer, dict[str, str]],
) -> None:
    server, _ = searched
    create_user(server.services, "fay", PASSWORD, role="viewer", namespace="finance")
    create_user(server.services, "nobody", PASSWORD)
    with server.client(server.login("fay", PASSWORD)) as c:
        found = _search(c, "alpha").json()["items"]
        assert [i["workflow"] for i in found] == ["payroll"]
        assert _lines(_search(c, "refused")) == []
    with server.client(server.login("nobody", PASSWORD)) as c:
        r = _search(c, "alpha")
        assert r.status_code == 403
        assert r.json()["error"]["details"]["permission"] == "logs:read"
    with server.anonymous() as anon:
        assert _search(anon, "alpha").status_code == 401


BAD = [
    ({"q": '"unclosed'}, "not closed"),
    ({"q": "OR alpha"}, "OR"),
    ({"q": "alpha OR"}, "OR"),
    ({"q": "-alpha"}, "nothing to look for"),
    ({"q": "..."}, "no letters or digits"),
    ({"q": "alpha", "since": "yesterday-ish"}, "since"),
    ({"q": "alpha", "cursor": "abc"}, "cursor"),
    ({"q": "alpha", "cursor": "9" * 19}, "cursor"),
    ({"q": "abc\x00def"}, "control character"),
    ({"q": "alpha", "run": "\x00"}, "run contains a control character"),
    ({"q": ""}, "q"),
    ({}, "q"),
    ({"q": "x" * 501}, "q"),
]

ODD = [
    {"q": "alpha", "workflow": "é"},
    {"q": "alpha", "step": "x" * 300},
    {"q": "alpha", "since": "9999-12-31T23:59:59-23:59"},
    {"q": "alpha", "since": "0001-01-01"},
    {"q": "alpha", "since": "99999999999999d"},
    {"q": 'ünïcödé* 日本語 "ß straße"'},
    {"q": "a" * 500},
    {"q": "NEAR(a b) OR col:x AND ^start"},
    {"q": "alpha", "cursor": str(2**63 - 1)},
]


def test_bad_queries_are_422_with_the_reason(sqlite_server: LiveServer) -> None:
    with sqlite_server.client() as c:
        for params, message in BAD:
            r = c.get("/api/v1/logs", params=params)
            assert r.status_code == 422, (params, r.text)
            assert message in r.json()["error"]["message"], params


def test_odd_input_is_never_a_server_error(server: LiveServer) -> None:
    with server.client() as c:
        for params in ODD:
            r = c.get("/api/v1/logs", params=params)
            assert r.status_code in (200, 422), (params, r.text)
